"""Risk portal: a FastAPI web service and browser UI over saved metastat models.

``metastat serve --models DIR`` loads expression models, MIL checkpoints and evaluation runs from
``DIR`` and serves scoring endpoints, background slide jobs, a deep-zoom slide viewer with
attention heatmaps and the cohort report plots. Research use only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metastat.serve.settings import ServeSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ServeSettings", "create_app"]


def create_app(settings: ServeSettings) -> FastAPI:
    """Build the FastAPI application (see :func:`metastat.serve.app.create_app`)."""
    from metastat.serve.app import create_app as _create

    return _create(settings)
