"""Tree ensembles as plain arrays: saved without pickle, scored by numpy alone.

A fitted scikit-survival ensemble is reduced to its node arrays (``left``, ``right``,
``feature``, ``threshold``, ``missing_left``) and one value per node, chosen so the risk is
reproduced exactly:

* gradient-boosted survival (``GradientBoostingSurvivalAnalysis``, Cox loss, ``init="zero"``):
  ``risk = Σ_trees learning_rate × leaf value``, summed tree by tree as scikit-learn does;
* random survival forest (``RandomSurvivalForest``): scikit-survival's risk is the ensemble
  cumulative hazard summed over the training event times, so each node stores its cumulative
  hazard summed over ``is_event_time_`` and the risk is the mean over trees.

Inputs are compared in float32, as scikit-learn's trees do; a NaN follows ``missing_left``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from metastat.errors import ModelError

#: node arrays stored per ensemble (all trees concatenated, children indices global)
NODE_ARRAYS = ("left", "right", "feature", "threshold", "missing_left", "value")


@dataclass
class TreeArrays:
    """All trees of one ensemble, nodes concatenated; ``roots[t]`` is tree ``t``'s first node."""

    kind: str  # "gbs" (sum × learning_rate) or "rsf" (mean)
    roots: np.ndarray
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    value: np.ndarray
    learning_rate: float = 1.0
    n_features: int = 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Risk of every row of ``x`` (samples x features)."""
        x32 = np.asarray(x, dtype=np.float32)
        if x32.ndim != 2 or x32.shape[1] != self.n_features:
            raise ModelError(
                f"the tree ensemble was fitted on {self.n_features} features; got {x32.shape}."
            )
        rows = np.arange(len(x32))[:, None]
        node = np.broadcast_to(self.roots, (len(x32), len(self.roots))).copy()
        while True:
            inner = self.left[node] >= 0
            if not inner.any():
                break
            xv = x32[rows, self.feature[node]].astype(np.float64)
            go_left = np.where(np.isnan(xv), self.missing_left[node], xv <= self.threshold[node])
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        leaf = self.value[node]
        out = np.zeros(len(x32))
        if self.kind == "gbs":  # tree by tree, as sklearn's predict_stages
            for t in range(leaf.shape[1]):
                out += self.learning_rate * leaf[:, t]
            return out
        for t in range(leaf.shape[1]):  # as sksurv's forest _predict
            out += leaf[:, t]
        out /= leaf.shape[1]
        return out

    # -- state ----------------------------------------------------------------------------------
    def to_state(self, prefix: str = "trees.") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "kind": self.kind,
            "learning_rate": self.learning_rate,
            "n_features": self.n_features,
            "n_trees": len(self.roots),
        }
        arrays = {f"{prefix}{k}": np.asarray(getattr(self, k), float) for k in NODE_ARRAYS}
        arrays[f"{prefix}roots"] = np.asarray(self.roots, float)
        return meta, arrays

    @classmethod
    def from_state(
        cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str = "trees."
    ) -> TreeArrays:
        def ints(k: str) -> np.ndarray:
            return np.asarray(arrays[f"{prefix}{k}"]).astype(np.int64)

        return cls(
            kind=str(meta["kind"]),
            roots=ints("roots"),
            left=ints("left"),
            right=ints("right"),
            feature=ints("feature"),
            threshold=np.asarray(arrays[f"{prefix}threshold"], float),
            missing_left=np.asarray(arrays[f"{prefix}missing_left"]) > 0,
            value=np.asarray(arrays[f"{prefix}value"], float),
            learning_rate=float(meta["learning_rate"]),
            n_features=int(meta["n_features"]),
        )


def _concat(
    kind: str,
    trees: list[Any],
    values: list[np.ndarray],
    n_features: int,
    learning_rate: float = 1.0,
) -> TreeArrays:
    """Concatenate sklearn ``Tree`` objects' node arrays, children shifted to global indices."""
    sizes = np.array([t.node_count for t in trees])
    roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    def shift(a: np.ndarray, start: int) -> np.ndarray:
        return np.where(a >= 0, a + start, -1)

    missing = [getattr(t, "missing_go_to_left", np.zeros(t.node_count)) for t in trees]
    return TreeArrays(
        kind,
        roots=roots,
        left=np.concatenate([shift(t.children_left, s) for t, s in zip(trees, roots, strict=True)]),
        right=np.concatenate(
            [shift(t.children_right, s) for t, s in zip(trees, roots, strict=True)]
        ),
        feature=np.concatenate([np.maximum(t.feature, 0) for t in trees]),
        threshold=np.concatenate([t.threshold for t in trees]),
        missing_left=np.concatenate(missing).astype(bool),
        value=np.concatenate(values),
        learning_rate=learning_rate,
        n_features=int(n_features),
    )


def export_trees(model: Any) -> TreeArrays:
    """The :class:`TreeArrays` of a fitted ``GradientBoostingSurvivalAnalysis`` (Cox loss, no
    dropout) or ``RandomSurvivalForest``; other ensembles are refused with the reason."""
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest

    name = type(model).__name__
    if isinstance(model, GradientBoostingSurvivalAnalysis):
        if model.loss != "coxph" or model.dropout_rate > 0 or model.init_ != "zero":
            raise ModelError(
                f"{name} with loss={model.loss!r}, dropout_rate={model.dropout_rate} cannot be "
                "saved as arrays (only the Cox loss without dropout reproduces exactly)."
            )
        trees = [e.tree_ for e in np.asarray(model.estimators_).ravel()]
        values = [t.value[:, 0, 0] for t in trees]
        return _concat("gbs", trees, values, model.n_features_in_, float(model.learning_rate))
    if isinstance(model, RandomSurvivalForest):
        if model.low_memory:
            raise ModelError(f"{name} fitted with low_memory=True stores no hazard per node.")
        trees = [e.tree_ for e in model.estimators_]
        ev = np.asarray(model.is_event_time_, bool)
        return _concat(
            "rsf", trees, [t.value[:, ev, 0].sum(1) for t in trees], model.n_features_in_
        )
    raise ModelError(f"{name} is not a tree ensemble metastat can save as arrays.")
