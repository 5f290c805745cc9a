"""metastat: predict whether a cancer will spread, from expression, slides and clinical data."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__`` looked up on first use (importlib.metadata is slow to import)."""
    if name != "__version__":
        raise AttributeError(f"module 'metastat' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("metastat")
    except PackageNotFoundError:  # running from a source tree without installation
        return "0.0.0+local"
