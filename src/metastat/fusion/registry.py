"""The open modality registry: everything fusion needs to know about a modality, in one entry.

A modality is a :class:`Modality`: how its per-patient data are stored (a ``table`` indexed by
patient id, or a ``bag`` of instance features per patient), how its file or folder is loaded, its
default single-modality model, and which input encoder the neural fusions use for it. Alignment,
late and intermediate fusion, generation and side-by-side validation read only these entries, so
adding a modality means writing its entry in its own package and adding one line to
:data:`ENTRIES` (or calling :func:`register_modality` from a plug-in).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from metastat.errors import UnknownNameError, did_you_mean

Form = Literal["table", "bag"]
#: input encoders of the neural fusions (:mod:`metastat.fusion.neural_inputs`)
NeuralInput = Literal["clinical", "expression", "table", "bag"]


@dataclass(frozen=True)
class Modality:
    """One registered modality.

    ``load(path)`` reads the user's file or folder into a table (DataFrame indexed by patient id)
    or bags (``{patient id: (n, d) array}``); ``unimodal(learner, task, horizon, variables, seed,
    n_genes)`` builds its default single-modality :class:`~metastat.expression.model.RiskModel`;
    ``neural`` names its neural-fusion input encoder; ``presence(table, variables)`` (tables
    only; default: any non-missing value) says which patients have it.
    """

    name: str
    form: Form
    description: str
    load: Callable[[Path], Any]
    unimodal: Callable[..., Any]
    neural: NeuralInput
    presence: Callable[[pd.DataFrame, list[Any]], np.ndarray] | None = None


#: modality name -> "module:attribute" of its entry (imported on first use); order = column order
ENTRIES: dict[str, str] = {
    "clinical": "metastat.fusion.builtins:CLINICAL",
    "expression": "metastat.fusion.builtins:EXPRESSION",
    "histology": "metastat.fusion.builtins:HISTOLOGY",
    "radiology": "metastat.radiology.modality:RADIOLOGY",
}
_LOADED: dict[str, Modality] = {}


def register_modality(entry: Modality) -> Modality:
    """Add (or replace) a modality at run time, e.g. from a plug-in package."""
    ENTRIES[entry.name] = "<registered at run time>"
    _LOADED[entry.name] = entry
    return entry


def modality_names() -> tuple[str, ...]:
    """Registered modality names, in registry order."""
    return tuple(ENTRIES)


def get_modality(name: str) -> Modality:
    """The registry entry of modality ``name``."""
    if name not in _LOADED:
        if name not in ENTRIES:
            names = list(ENTRIES)
            raise UnknownNameError(
                f"unknown modality {name!r}; modalities: {names}.{did_you_mean(name, names)}"
            )
        module, attr = ENTRIES[name].split(":")
        _LOADED[name] = getattr(importlib.import_module(module), attr)
    return _LOADED[name]
