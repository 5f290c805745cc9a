"""Saving and loading :class:`TabularRiskModel` (clinical, radiomics, pooled tile features).

The state is the table encoder (clinical variables as JSON, or the standard encoder's columns,
means and sds) plus the learner and calibration of :func:`metastat.expression.persist.head_state`.
A model alone is a :mod:`metastat.core.bundle` folder of format ``metastat.tabular.risk/1``;
inside a late-fusion bundle the same state sits in the manifest's ``branches`` with arrays
prefixed by the modality (:mod:`metastat.fusion.persist`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metastat.clinical.encoder import ClinicalEncoder
from metastat.core.bundle import read_bundle, write_bundle
from metastat.expression.persist import head_state, restore_head
from metastat.fusion.unimodal import StandardEncoder, TabularRiskModel

FORMAT = "metastat.tabular.risk/1"


def tabular_state(
    m: TabularRiskModel, prefix: str = ""
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """JSON state and (``prefix``-ed) arrays of a fitted tabular model."""
    state, arrays = head_state(m, prefix)
    if isinstance(m.encoder_, ClinicalEncoder):
        state["encoder"] = {"type": "clinical", **m.encoder_.to_dict()}
    else:
        arrays[f"{prefix}mean"], arrays[f"{prefix}sd"] = m.encoder_.mean_, m.encoder_.sd_
        state["encoder"] = {"type": "standard", "columns": m.encoder_.columns_}
    return state, arrays


def tabular_from_state(
    state: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str = ""
) -> TabularRiskModel:
    """Inverse of :func:`tabular_state`."""
    m = TabularRiskModel(
        state["model"], task=state["task"], horizon=state["horizon"], seed=state["seed"]
    )
    enc = state["encoder"]
    if enc["type"] == "clinical":
        m.encoder_ = ClinicalEncoder.from_dict(enc)
        m.variables = m.encoder_.variables
    else:
        std = StandardEncoder()
        std.columns_, std.mean_, std.sd_ = (
            list(enc["columns"]),
            arrays[f"{prefix}mean"],
            arrays[f"{prefix}sd"],
        )
        m.encoder_ = std
    restore_head(m, state, arrays, prefix)
    return m


def save_tabular(
    m: TabularRiskModel, path: str | Path, *, info: dict[str, Any] | None = None
) -> Path:
    """Write a fitted tabular model to bundle folder ``path``."""
    state, arrays = tabular_state(m)
    return write_bundle(path, FORMAT, state, arrays, info=info)


def load_tabular(path: str | Path) -> TabularRiskModel:
    """Read a folder written by :func:`save_tabular`."""
    bundle = read_bundle(path, (FORMAT,))
    return tabular_from_state(bundle.manifest, bundle.arrays)
