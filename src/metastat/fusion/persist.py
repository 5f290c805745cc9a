"""Saving and loading late-fusion models without pickle (JSON manifest + safetensors).

Layout of a model directory: ``manifest.json`` (format, modalities, stacker weights per modality
subset, clinical encoder state, calibration), ``arrays.safetensors`` (linear weights, Breslow
baselines, feature scaling) and, for a gene-expression branch, a directory named after the
modality in the format of :mod:`metastat.expression.persist`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

from metastat.atomic import atomic_write, save_arrays
from metastat.clinical.encoder import ClinicalEncoder
from metastat.core.calibration import Calibrator
from metastat.core.provenance import run_provenance, sha256_file, verify_sha256
from metastat.errors import ModelError
from metastat.expression.persist import LinearLearner, load_model, save_model
from metastat.fusion.late import LateFusion, Stacker
from metastat.fusion.unimodal import StandardEncoder, TabularRiskModel, UnimodalModel

FORMAT = "metastat.fusion.late/1"
MANIFEST, ARRAYS = "manifest.json", "arrays.safetensors"


def _tabular_state(m: TabularRiskModel, key: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    arrays[f"{key}.coef"] = np.asarray(m.learner_.coef_, float)
    arrays[f"{key}.risk_quantiles"] = np.asarray(m.train_risk_quantiles_, float)
    if m.cox_slope_ is not None:
        arrays[f"{key}.base_times"], arrays[f"{key}.base_cumhaz"] = m.base_times_, m.base_cumhaz_
    enc: dict[str, Any]
    if isinstance(m.encoder_, ClinicalEncoder):
        enc = {"type": "clinical", **m.encoder_.to_dict()}
    else:
        arrays[f"{key}.mean"], arrays[f"{key}.sd"] = m.encoder_.mean_, m.encoder_.sd_
        enc = {"type": "standard", "columns": m.encoder_.columns_}
    offset = float(getattr(m.learner_, "intercept_", getattr(m.learner_, "offset_", 0.0)))
    return {
        "model": m.model,
        "task": m.task,
        "horizon": m.horizon,
        "seed": m.seed,
        "encoder": enc,
        "offset": offset,
        "platt": m.platt_,
        "cox_slope": m.cox_slope_,
        "risk_cut": m.risk_cut_,
    }


def _tabular(state: dict[str, Any], key: str, a: dict[str, np.ndarray]) -> TabularRiskModel:
    m = TabularRiskModel(
        state["model"], task=state["task"], horizon=state["horizon"], seed=state["seed"]
    )
    enc = state["encoder"]
    if enc["type"] == "clinical":
        m.encoder_ = ClinicalEncoder.from_dict(enc)
        m.variables = m.encoder_.variables
    else:
        m.encoder_ = StandardEncoder()
        m.encoder_.columns_, m.encoder_.mean_, m.encoder_.sd_ = (
            enc["columns"],
            a[f"{key}.mean"],
            a[f"{key}.sd"],
        )
    m.learner_ = LinearLearner(a[f"{key}.coef"], state["offset"])
    m.platt_ = tuple(state["platt"]) if state["platt"] else None
    m.cox_slope_ = state["cox_slope"]
    if m.cox_slope_ is not None:
        m.base_times_, m.base_cumhaz_ = a[f"{key}.base_times"], a[f"{key}.base_cumhaz"]
    m.risk_cut_ = state["risk_cut"]
    m.train_risk_quantiles_ = a[f"{key}.risk_quantiles"]
    return m


def save_late(model: LateFusion, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """Write a fitted :class:`LateFusion` to directory ``path``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    branches: dict[str, Any] = {}
    for mod, um in model.models_.items():
        if isinstance(um.model_, TabularRiskModel):
            branches[mod] = _tabular_state(um.model_, mod, arrays)
        else:  # a gene-expression RiskModel: its own directory and format
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
    save_arrays(out / ARRAYS, arrays)
    manifest = {
        "format": FORMAT,
        **run_provenance(),
        "modalities": list(model.models_),
        "branches": branches,
        "center": model.center_,
        "scale": model.scale_,
        "stackers": stackers,
        "weights": model.weights,
        "sha256": sha256_file(out / ARRAYS),
        **(info or {}),
    }
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=2, default=str))
    return out


def save_fusion(model: Any, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """Save a late or neural fusion model."""
    if isinstance(model, LateFusion):
        return save_late(model, path, info=info)
    from metastat.fusion.persist_neural import save_neural

    return save_neural(model, path, info=info)


def load_fusion(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Load a late or neural fusion model directory; returns the model and its manifest."""
    mf = Path(path) / MANIFEST
    try:
        manifest = json.loads(mf.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not a readable metastat fusion model ({exc}).") from exc
    if manifest.get("format") == FORMAT:
        return load_late(path)
    from metastat.fusion.persist_neural import FORMAT as NEURAL
    from metastat.fusion.persist_neural import load_neural

    if manifest.get("format") == "metastat.fusion.neural/1":
        raise ModelError(
            f"{mf}: a neural fusion model saved before the modality registry (format /1); "
            "refit it with `metastat fusion fit` (the late-fusion format is unchanged)."
        )
    if manifest.get("format") != NEURAL:
        raise ModelError(f"{mf}: unsupported format {manifest.get('format')!r}.")
    return load_neural(path, manifest), manifest


def load_late(path: str | Path) -> tuple[LateFusion, dict[str, Any]]:
    """Load a late-fusion model directory; returns the model and its manifest."""
    path = Path(path)
    mf, arr = path / MANIFEST, path / ARRAYS
    if not mf.exists() or not arr.exists():
        raise ModelError(
            f"{path}: not a metastat fusion model directory (needs {MANIFEST}, {ARRAYS})."
        )
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{mf}: corrupt manifest ({exc}).") from exc
    if manifest.get("format") != FORMAT:
        raise ModelError(
            f"{mf}: unsupported format {manifest.get('format')!r} (expected {FORMAT})."
        )
    if not verify_sha256(arr, manifest.get("sha256")):
        raise ModelError(f"{arr}: checksum mismatch; the file is corrupt or was changed.")
    a = load_file(str(arr))
    model = LateFusion(tuple(manifest["modalities"]))
    model.models_ = {}
    for mod, state in manifest["branches"].items():
        um = UnimodalModel(mod)
        um.model_ = (
            load_model(path / state["dir"])[0] if "dir" in state else _tabular(state, mod, a)
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
