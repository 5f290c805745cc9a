"""Inference: bags -> logits -> calibrated probabilities / risks, per slide and per patient."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from metastat.core.calibration import Calibrator
from metastat.mil.bags import collate
from metastat.mil.losses import survival_curve, to_bin

log = logging.getLogger(__name__)


@dataclass
class Head:
    """What the output logits mean, plus the calibration fitted on held-out data."""

    task: str  # binary | multiclass | survival
    classes: list[str] = field(default_factory=lambda: ["0", "1"])
    survival_loss: str = "nll"
    edges: list[float] | None = None  # inner time-bin edges (nll)
    horizon: float | None = None
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def n_out(self) -> int:
        if self.task != "survival":
            return len(self.classes)
        return 1 if self.survival_loss == "cox" else len(self.edges or []) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "classes": self.classes,
            "survival_loss": self.survival_loss,
            "edges": self.edges,
            "horizon": self.horizon,
            "calibration": self.calibration,
        }


@torch.no_grad()
def predict_logits(model: nn.Module, bags: Sequence[np.ndarray]) -> np.ndarray:
    """Logits (n_bags, n_out) of whole bags, one bag at a time (no padding, any size)."""
    model.eval()
    out = [model(*collate([b])).logits[0].numpy() for b in bags]
    return np.stack(out).astype(np.float64)


def _score(logits: np.ndarray, head: Head) -> np.ndarray:
    """The scalar risk of each bag (higher = worse)."""
    if head.task == "binary":
        return logits[:, 1] - logits[:, 0]
    if head.task == "survival":
        if head.survival_loss == "cox":
            return logits[:, 0]
        return -survival_curve(torch.from_numpy(logits)).numpy().sum(1)
    p = torch.softmax(torch.from_numpy(logits), 1).numpy()
    return 1.0 - p[:, 0]  # multiclass: probability of any class other than the first


def fit_calibration(
    head: Head,
    logits_val: np.ndarray,
    label_val: np.ndarray | None,
    logits_train: np.ndarray,
    time_train: np.ndarray | None,
    event_train: np.ndarray | None,
) -> dict[str, Any]:
    """Platt scaling on the validation bags (binary), Breslow baseline hazard (Cox), as the JSON
    form of :class:`metastat.core.calibration.Calibrator` (empty: none).

    Platt's smoothed targets keep the fit finite when the validation bags are perfectly
    separated, which small validation splits often are; fewer than 8 bags are not calibrated.
    """
    if head.task == "binary" and label_val is not None:
        cal = Calibrator().fit_platt(
            _score(logits_val, head), label_val, smooth=True, min_samples=8
        )
        if cal.platt is not None:
            return cal.to_dict()
        y = np.asarray(label_val)
        n_pos = int((y == 1).sum())
        why = (
            "needs >= 8 validation bags with both classes"
            if len(y) < 8 or n_pos in (0, len(y))
            else "gave a non-increasing fit"
        )
        log.warning(
            "MIL: Platt scaling %s (%d bags, %d positive); probabilities are the model's "
            "uncalibrated softmax. Raise val_fraction or use more bags",
            why,
            len(y),
            n_pos,
        )
    if head.task == "survival" and head.survival_loss == "cox" and time_train is not None:
        assert event_train is not None
        cal = Calibrator().fit_cox(logits_train[:, 0], time_train, event_train, fit_slope=False)
        return cal.to_dict()
    return {}


def outputs(logits: np.ndarray, head: Head) -> pd.DataFrame:
    """risk, prob (event / positive class, calibrated when fitted) and per-class or survival
    columns for each bag."""
    risk = _score(logits, head)
    out = pd.DataFrame({"risk": risk})
    cal = Calibrator.from_dict(head.calibration) if head.calibration else Calibrator()
    if head.task == "binary":
        p = torch.softmax(torch.from_numpy(logits), 1).numpy()[:, 1]
        out["prob"] = cal.probability(risk) if cal.platt is not None else p
    elif head.task == "multiclass":
        p = torch.softmax(torch.from_numpy(logits), 1).numpy()
        for k, c in enumerate(head.classes):
            out[f"prob_{c}"] = p[:, k]
        out["prob"] = 1.0 - p[:, 0]
        out["pred_class"] = [head.classes[k] for k in p.argmax(1)]
    elif head.survival_loss == "nll":
        surv = survival_curve(torch.from_numpy(logits)).numpy()
        for k in range(surv.shape[1]):
            out[f"surv_{k}"] = surv[:, k]
        if head.horizon is not None and head.edges is not None:
            k = int(to_bin(np.array([head.horizon]), np.asarray(head.edges))[0])
            out["prob"] = 1.0 - surv[:, k]
        else:
            out["prob"] = np.nan
    else:
        out["prob"] = cal.probability(risk, head.horizon) if cal.cox_slope is not None else np.nan
    return out


def aggregate_patients(
    slides: pd.DataFrame,
    how: str = "mean",
    *,
    model: nn.Module | None = None,
    head: Head | None = None,
    bags: Sequence[np.ndarray] | None = None,
) -> pd.DataFrame:
    """Patient-level rows: ``pooled`` runs the model on each patient's tiles of all slides
    together (as patient-unit models were trained); ``mean`` / ``max`` aggregate slide rows."""
    groups = slides.groupby("patient_id", sort=False)
    if how != "pooled":
        agg = groups.agg(risk=("risk", how), prob=("prob", how), n_slides=("slide_id", "size"))
        return agg.reset_index()
    assert model is not None and head is not None and bags is not None
    pooled = [np.concatenate([bags[i] for i in idx]) for idx in groups.indices.values()]
    out = outputs(predict_logits(model, pooled), head)
    out.insert(0, "patient_id", list(groups.indices))
    out["n_slides"] = [len(idx) for idx in groups.indices.values()]
    return out
