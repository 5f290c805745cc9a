"""The risk-model contract: what every model of every modality does, checked by one common test.

A *risk model* (expression ``RiskModel``, the clinical / radiology tabular model, the MIL model,
late and neural fusion) is fitted on a cohort-like input ``x`` and a
:class:`~metastat.data.target.Target`, and then gives, per sample of ``x``:

==========================  =================================================================
``predict_risk(x)``         ``risk``: one score, higher = worse (Cox models: log hazard ratio)
``predict_probability(x)``  ``prob``: calibrated event probability (binary status, or event
                            by the model's ``horizon`` for survival outcomes)
``predict_survival(x, t)``  S(t) per sample (rows) and time (columns); survival models only
``explain(x, top)``         per sample, the ``top`` input features (genes, clinical variables,
                            radiomics, tiles, modalities) by absolute contribution to its risk
``save(path)`` / ``load``   a :mod:`metastat.core.bundle` folder (JSON + safetensors, no pickle)
==========================  =================================================================

``x`` is the modality's own input: a samples x features ``DataFrame`` (expression, clinical,
radiology), a list of tile-feature bags (MIL) or a ``MultimodalSet`` (fusion). ``kind`` is
``"binary"`` or ``"survival"`` (docs/architecture.md, "Vocabulary").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, TypedDict, runtime_checkable

import numpy as np

from metastat.errors import ModelError


class Contribution(TypedDict):
    """One feature's share of one sample's risk."""

    feature: str
    contribution: float


class Explanation(TypedDict):
    """The features driving one sample's risk, largest absolute contribution first."""

    sample_id: str
    features: list[Contribution]


@runtime_checkable
class RiskPredictor(Protocol):
    """fit -> risk -> probability at a horizon -> survival curve -> explanation -> bundle."""

    @property
    def kind(self) -> str:
        """``"binary"`` or ``"survival"``."""
        ...

    @property
    def horizon(self) -> float | None:
        """Time of ``prob`` for survival outcomes (the outcome's time unit)."""
        ...

    def fit(self, x: Any, target: Any) -> Any:
        """Fit on input ``x`` and a :class:`~metastat.data.target.Target`; returns self."""
        ...

    def predict_risk(self, x: Any) -> np.ndarray: ...

    def predict_probability(self, x: Any) -> np.ndarray: ...

    def predict_survival(self, x: Any, times: np.ndarray) -> np.ndarray: ...

    def explain(self, x: Any, top: int = 10) -> list[Explanation]: ...

    def save(self, path: str | Path, *, info: dict[str, Any] | None = None) -> Path: ...

    @classmethod
    def load(cls, path: str | Path) -> Any: ...


def no_survival(model: object) -> ModelError:
    """The error of ``predict_survival`` on a model fitted without follow-up times."""
    return ModelError(
        f"{type(model).__name__} was fitted on a binary outcome; survival curves need a model "
        "fitted with follow-up times (outcome kind 'survival')."
    )


def top_contributions(
    sample_ids: Any, names: Any, contributions: np.ndarray, top: int
) -> list[Explanation]:
    """Per row of ``contributions`` (samples x features), the ``top`` features by |value|; NaN
    means the feature does not apply to that sample (e.g. a modality it lacks) and is left out."""
    c = np.asarray(contributions, dtype=float)
    out: list[Explanation] = []
    for i, sid in enumerate(sample_ids):
        order = np.argsort(-np.abs(np.nan_to_num(c[i])), kind="stable")
        order = order[np.isfinite(c[i, order])][:top]
        feats: list[Contribution] = [
            {"feature": str(names[j]), "contribution": float(c[i, j])} for j in order
        ]
        out.append({"sample_id": str(sid), "features": feats})
    return out
