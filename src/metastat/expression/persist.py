"""Saving and loading expression models without pickle: JSON manifest + safetensors arrays.

Every model that is linear in genes (signature ensemble, CoxNet, logistic, signature score,
baselines) reduces to preprocessing statistics + one weight per gene + calibration, which is all
that is stored. A directory holds ``manifest.json`` (versions, genes, preprocessing, training
cohort, seed, metrics) and ``arrays.safetensors``; loading validates both.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors.numpy import load_file
from sklearn.base import BaseEstimator

from metastat import __version__
from metastat.atomic import atomic_write, save_arrays
from metastat.errors import ModelError
from metastat.expression.combat import ComBat
from metastat.expression.model import RiskModel
from metastat.expression.preprocess import ExpressionPreprocessor

FORMAT = "metastat.expression.linear/1"
ARRAYS = "arrays.safetensors"
MANIFEST = "manifest.json"


class LinearLearner(BaseEstimator):
    """A learner reduced to gene weights: ``risk = z @ coef_ + offset_``."""

    def __init__(self, coef: np.ndarray | None = None, offset: float = 0.0) -> None:
        self.coef = coef
        self.offset = offset

    @property
    def coef_(self) -> np.ndarray:
        return np.asarray(self.coef)

    def predict(self, z: pd.DataFrame | np.ndarray) -> np.ndarray:
        values = z.to_numpy(dtype=float) if isinstance(z, pd.DataFrame) else np.asarray(z)
        return values @ self.coef_ + self.offset


def _offset(learner: Any) -> float:
    return float(getattr(learner, "offset_", getattr(learner, "intercept_", 0.0)))


def save_model(model: RiskModel, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to directory ``path`` (arrays first, manifest last, both atomically)."""
    coef = getattr(model.learner_, "coef_", None)
    if coef is None:
        raise ModelError(
            f"model {model.model!r} is not linear in genes and cannot be saved "
            "without pickle; save 'ensemble', 'coxnet', 'logistic' or 'signature'."
        )
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    pre = model.preprocessor_
    arrays = {
        "coef": np.asarray(coef, dtype=np.float64),
        "median_in": pre.median_in_,
        "mean": pre.mean_,
        "sd": pre.sd_,
        "risk_quantiles": np.asarray(model.train_risk_quantiles_, dtype=np.float64),
        "interval_draws": np.asarray(
            getattr(model, "interval_draws_", np.empty((0, 2))), dtype=np.float64
        ).reshape(-1, 2),
    }
    if pre.quantile:
        arrays["reference"] = pre.reference_
    combat = getattr(pre, "combat_", None)
    if combat is not None:
        arrays |= {
            "combat_grand": combat.grand,
            "combat_sd": combat.sd,
            "combat_gamma": combat.gamma,
            "combat_delta": combat.delta,
        }
    if model.cox_slope_ is not None:
        arrays["base_times"] = model.base_times_
        arrays["base_cumhaz"] = model.base_cumhaz_
    save_arrays(out / ARRAYS, arrays)
    manifest = {
        "format": FORMAT,
        "metastat": __version__,
        "model": model.model,
        "task": model.task,
        "horizon": model.horizon,
        "seed": model.seed,
        "preprocessing": {
            "representation": pre.representation,
            "log": bool(pre.log_),
            "quantile": pre.quantile,
            "scale": pre.scale,
            "n_genes": model.n_genes,
            "max_missing_genes": pre.max_missing_genes,
        },
        "genes_in": [str(g) for g in pre.genes_in_],
        "genes": [str(g) for g in pre.genes_],
        "offset": _offset(model.learner_),
        "platt": model.platt_,
        "cox_slope": model.cox_slope_,
        "risk_cut": model.risk_cut_,
        "sample_shift_sd": pre.sample_shift_sd_,
        "platform_independent": pre.platform_independent,
        "interval_method": model.interval_method,
        "combat_batches": None if combat is None else combat.levels.tolist(),
        "sha256": hashlib.sha256((out / ARRAYS).read_bytes()).hexdigest(),
        **(info or {}),
    }
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=2, default=str))
    return out


def load_model(path: str | Path) -> tuple[RiskModel, dict[str, Any]]:
    """Load a saved model directory; returns the model and its manifest."""
    path = Path(path)
    mf, arr = path / MANIFEST, path / ARRAYS
    if not mf.exists() or not arr.exists():
        raise ModelError(f"{path}: not a metastat model directory (needs {MANIFEST} and {ARRAYS}).")
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{mf}: corrupt manifest ({exc}).") from exc
    if manifest.get("format") != FORMAT:
        raise ModelError(f"{mf}: unsupported model format {manifest.get('format')!r}.")
    if hashlib.sha256(arr.read_bytes()).hexdigest() != manifest.get("sha256"):
        raise ModelError(f"{arr}: checksum mismatch; the file is corrupt or was changed.")
    a = load_file(str(arr))
    p = manifest["preprocessing"]
    model = RiskModel(
        manifest["model"],
        task=manifest["task"],
        horizon=manifest["horizon"],
        quantile=p["quantile"],
        n_genes=p["n_genes"],
        scale=p["scale"],
        representation=p.get("representation", "standardise"),
        seed=manifest["seed"],
    )
    pre = ExpressionPreprocessor(
        log=p["log"],
        quantile=p["quantile"],
        n_genes=p["n_genes"],
        scale=p["scale"],
        max_missing_genes=p["max_missing_genes"],
        representation=p.get("representation", "standardise"),
    )
    pre.log_ = p["log"]
    pre.genes_in_ = np.asarray(manifest["genes_in"], dtype=object)
    pre.genes_ = np.asarray(manifest["genes"], dtype=object)
    pre.median_in_, pre.mean_, pre.sd_ = a["median_in"], a["mean"], a["sd"]
    pre.sample_shift_sd_ = float(manifest.get("sample_shift_sd", 0.0))
    if p["quantile"]:
        pre.reference_ = a["reference"]
    pre.combat_ = None
    if manifest.get("combat_batches"):
        pre.combat_ = ComBat(
            np.asarray(manifest["combat_batches"]),
            a["combat_grand"],
            a["combat_sd"],
            a["combat_gamma"],
            a["combat_delta"],
        )
    model.preprocessor_ = pre
    model.learner_ = LinearLearner(a["coef"], manifest["offset"])
    model.platt_ = tuple(manifest["platt"]) if manifest["platt"] else None
    model.cox_slope_ = manifest["cox_slope"]
    if model.cox_slope_ is not None:
        model.base_times_, model.base_cumhaz_ = a["base_times"], a["base_cumhaz"]
    model.risk_cut_ = manifest["risk_cut"]
    model.train_risk_quantiles_ = a["risk_quantiles"]
    model.interval_draws_ = a.get("interval_draws", np.empty((0, 2))).reshape(-1, 2)
    return model, manifest
