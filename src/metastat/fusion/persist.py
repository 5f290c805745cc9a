"""Saving and loading late-fusion models without pickle, as a :mod:`metastat.core.bundle` folder.

``manifest.json`` (format ``metastat.fusion.late/2``: modalities, stacker weights per modality
subset, each tabular branch's state from :mod:`metastat.fusion.persist_tabular`),
``arrays.safetensors`` (branch arrays prefixed ``<modality>.``, stacker arrays ``stack.<subset>.``)
and, for a gene-expression branch, a sub-folder named after the modality in the format of
:mod:`metastat.expression.persist`. Folders of format ``late/1`` still load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metastat.core.bundle import MANIFEST, read_bundle, read_manifest, write_bundle
from metastat.core.calibration import Calibrator
from metastat.errors import ModelError
from metastat.expression.persist import load_model, save_model
from metastat.fusion.late import LateFusion, Stacker
from metastat.fusion.persist_tabular import tabular_from_state, tabular_state
from metastat.fusion.unimodal import TabularRiskModel, UnimodalModel

FORMAT = "metastat.fusion.late/2"
FORMATS = (FORMAT, "metastat.fusion.late/1")  # /1: the array checksum as a string


def save_late(model: LateFusion, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """Write a fitted :class:`LateFusion` to bundle folder ``path``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    branches: dict[str, Any] = {}
    for mod, um in model.models_.items():
        if isinstance(um.model_, TabularRiskModel):
            branches[mod], branch_arrays = tabular_state(um.model_, f"{mod}.")
            arrays |= branch_arrays
        else:  # a gene-expression RiskModel: its own bundle folder
            save_model(um.model_, out / mod)
            branches[mod] = {"dir": mod}
    stackers = {}
    for subset, st in model.stackers_.items():
        key = "+".join(subset)
        arrays[f"stack.{key}.coef"] = st.coef_
        if st.kind == "survival":
            arrays[f"stack.{key}.base_times"] = st.calibrator_.base_times
            arrays[f"stack.{key}.base_cumhaz"] = st.calibrator_.base_cumhaz
        stackers[key] = {
            "intercept": st.intercept_,
            "risk_cut": st.risk_cut_,
            "kind": st.kind,
            "horizon": st.horizon,
            "ridge": st.ridge,
        }
    state = {
        "modalities": list(model.models_),
        "branches": branches,
        "center": model.center_,
        "scale": model.scale_,
        "stackers": stackers,
        "weights": model.weights,
    }
    return write_bundle(out, FORMAT, state, arrays, info=info)


def save_fusion(model: Any, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """Save a late or neural fusion model."""
    if isinstance(model, LateFusion):
        return save_late(model, path, info=info)
    from metastat.fusion.persist_neural import save_neural

    return save_neural(model, path, info=info)


def load_fusion(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Load a late or neural fusion model directory; returns the model and its manifest."""
    mf = Path(path) / MANIFEST
    manifest = read_manifest(path)
    if manifest.get("format") in FORMATS:
        return load_late(path)
    from metastat.fusion.persist_neural import FORMAT as NEURAL
    from metastat.fusion.persist_neural import load_neural

    if manifest.get("format") == "metastat.fusion.neural/1":
        raise ModelError(
            f"{mf}: a neural fusion model saved before the modality registry (format /1); "
            "refit it with `metastat fusion fit` (late-fusion models of every version still load)."
        )
    if manifest.get("format") != NEURAL:
        raise ModelError(f"{mf}: unsupported format {manifest.get('format')!r}.")
    return load_neural(path, manifest), manifest


def load_late(path: str | Path) -> tuple[LateFusion, dict[str, Any]]:
    """Load a late-fusion model folder; returns the model and its manifest."""
    bundle = read_bundle(path, FORMATS)
    manifest, a = bundle.manifest, bundle.arrays
    model = LateFusion(tuple(manifest["modalities"]))
    model.models_ = {}
    for mod, state in manifest["branches"].items():
        um = UnimodalModel(mod)
        um.model_ = (
            load_model(bundle.path / state["dir"])[0]
            if "dir" in state
            else tabular_from_state(state, a, f"{mod}.")
        )
        model.models_[mod] = um
    model.center_, model.scale_ = manifest["center"], manifest["scale"]
    model.stackers_ = {}
    for key, s in manifest["stackers"].items():
        subset = tuple(key.split("+"))
        st = Stacker(subset, s["ridge"])
        st.kind, st.horizon, st.intercept_, st.risk_cut_ = (
            s["kind"],
            s["horizon"],
            s["intercept"],
            s["risk_cut"],
        )
        st.coef_ = a[f"stack.{key}.coef"]
        st.calibrator_ = Calibrator(platt=(0.0, 1.0))
        if st.kind == "survival":
            st.calibrator_ = Calibrator(
                None, 1.0, a[f"stack.{key}.base_times"], a[f"stack.{key}.base_cumhaz"]
            )
        model.stackers_[subset] = st
    return model, manifest
