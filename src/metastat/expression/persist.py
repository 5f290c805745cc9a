"""Saving and loading expression models without pickle, as a :mod:`metastat.core.bundle` folder.

A fitted :class:`RiskModel` reduces to preprocessing statistics, its learner and the calibration:

* models linear in genes (signature ensemble, CoxNet, logistic, signature score, baselines):
  one weight per gene + offset (format ``metastat.expression.linear/2``);
* tree ensembles (``gbs``, ``rsf``): node arrays reproducing the risk exactly
  (:mod:`metastat.expression.trees`; format ``metastat.expression.trees/1``).

``manifest.json`` holds versions, genes, preprocessing, training cohort, seed and metrics; the
arrays are ``arrays.safetensors``. :func:`head_state` / :func:`restore_head` (learner +
calibration + risk groups) are shared with the tabular models (:mod:`metastat.fusion.unimodal`).
Folders of format ``metastat.expression.linear/1`` (checksum as a string) still load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from metastat.core.bundle import ARRAYS, MANIFEST, read_bundle, write_bundle
from metastat.core.calibration import Calibrator
from metastat.errors import ModelError
from metastat.expression.combat import ComBat
from metastat.expression.model import RiskModel
from metastat.expression.preprocess import ExpressionPreprocessor
from metastat.expression.trees import TreeArrays, export_trees

FORMAT = "metastat.expression.linear/2"
TREES_FORMAT = "metastat.expression.trees/1"
LEGACY_FORMAT = "metastat.expression.linear/1"
FORMATS = (FORMAT, TREES_FORMAT, LEGACY_FORMAT)
__all__ = ["ARRAYS", "FORMAT", "MANIFEST", "LinearLearner", "load_model", "save_model"]


class LinearLearner(BaseEstimator):
    """A learner reduced to feature weights: ``risk = z @ coef_ + offset_``."""

    def __init__(self, coef: np.ndarray | None = None, offset: float = 0.0) -> None:
        self.coef = coef
        self.offset = offset

    @property
    def coef_(self) -> np.ndarray:
        return np.asarray(self.coef)

    def predict(self, z: pd.DataFrame | np.ndarray) -> np.ndarray:
        values = z.to_numpy(dtype=float) if isinstance(z, pd.DataFrame) else np.asarray(z)
        return values @ self.coef_ + self.offset


class TreeLearner(BaseEstimator):
    """A tree ensemble reduced to node arrays (:class:`~metastat.expression.trees.TreeArrays`)."""

    def __init__(self, trees: TreeArrays | None = None) -> None:
        self.trees = trees

    def predict(self, z: pd.DataFrame | np.ndarray) -> np.ndarray:
        assert self.trees is not None
        values = z.to_numpy(dtype=float) if isinstance(z, pd.DataFrame) else np.asarray(z)
        return self.trees.predict(values)


def _trees_of(learner: Any) -> TreeArrays | None:
    if isinstance(learner, TreeLearner):
        return learner.trees
    model = getattr(learner, "model_", None)
    if type(model).__name__ in ("GradientBoostingSurvivalAnalysis", "RandomSurvivalForest"):
        return export_trees(model)
    return None


def head_state(model: RiskModel, prefix: str = "") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """JSON state and arrays of a fitted model's learner, calibration and risk groups."""
    learner = model.learner_
    state: dict[str, Any] = {
        "model": model.model,
        "task": model.task,
        "horizon": model.horizon,
        "seed": model.seed,
    }
    arrays: dict[str, np.ndarray] = {}
    coef = getattr(learner, "coef_", None)
    trees = None if coef is not None else _trees_of(learner)
    if coef is not None:
        offset = getattr(learner, "offset_", getattr(learner, "intercept_", 0.0))
        state |= {"learner": "linear", "offset": float(offset)}
        arrays["coef"] = np.asarray(coef, dtype=np.float64)
    elif trees is not None:
        meta, tree_arrays = trees.to_state()
        state |= {"learner": "trees", "trees": meta}
        arrays |= tree_arrays
    else:
        raise ModelError(
            f"model {model.model!r} is neither linear in its features nor a tree ensemble and "
            "cannot be saved without pickle; save 'ensemble', 'coxnet', 'logistic', 'signature', "
            "'gbs' or 'rsf'."
        )
    cal_state, cal_arrays = model.calibrator_.to_state()
    state |= cal_state | {"risk_cut": model.risk_cut_}
    arrays |= cal_arrays | {
        "risk_quantiles": np.asarray(model.train_risk_quantiles_, dtype=np.float64),
        "interval_draws": np.asarray(
            getattr(model, "interval_draws_", np.empty((0, 2))), dtype=np.float64
        ).reshape(-1, 2),
    }
    return state, {f"{prefix}{k}": v for k, v in arrays.items()}


def restore_head(
    model: RiskModel, state: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str = ""
) -> None:
    """Inverse of :func:`head_state` (arrays with ``prefix``)."""
    a = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    if state.get("learner", "linear") == "trees":
        model.learner_ = TreeLearner(TreeArrays.from_state(state["trees"], a))
    else:
        model.learner_ = LinearLearner(a["coef"], state["offset"])
    model.calibrator_ = Calibrator.from_state(state, a)
    model.risk_cut_ = state["risk_cut"]
    model.train_risk_quantiles_ = a["risk_quantiles"]
    model.interval_draws_ = a.get("interval_draws", np.empty((0, 2))).reshape(-1, 2)


def save_model(model: RiskModel, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to folder ``path`` (arrays first, manifest last, both atomically)."""
    state, arrays = head_state(model)
    pre = model.preprocessor_
    arrays |= {"median_in": pre.median_in_, "mean": pre.mean_, "sd": pre.sd_}
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
    state |= {
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
        "sample_shift_sd": pre.sample_shift_sd_,
        "platform_independent": pre.platform_independent,
        "interval_method": model.interval_method,
        "combat_batches": None if combat is None else combat.levels.tolist(),
    }
    fmt = TREES_FORMAT if state["learner"] == "trees" else FORMAT
    return write_bundle(path, fmt, state, arrays, info=info)


def load_model(path: str | Path) -> tuple[RiskModel, dict[str, Any]]:
    """Load a saved model folder; returns the model and its manifest."""
    bundle = read_bundle(path, FORMATS)
    manifest, a = bundle.manifest, bundle.arrays
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
    restore_head(model, manifest, a)
    return model, manifest
