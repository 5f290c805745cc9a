"""The predictions table: one builder for every modality, and its validation.

Columns (:data:`PREDICTION_COLUMNS`, documented in :mod:`metastat.evaluate.summary`):
identity (``sample_id``, ``patient_id``, ``model``, ``repeat``, ``fold``), scores (``risk``,
``prob``, ``high_risk``, optional ``surv_k`` / ``prob_<class>`` / ``pred_class``), truth
(``event``, ``time``, ``binary``, optional ``label``) and any extra columns (``seed``,
``modalities`` ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from metastat.errors import InputError

PREDICTION_COLUMNS = (
    "sample_id",
    "patient_id",
    "repeat",
    "fold",
    "risk",
    "prob",
    "high_risk",
    "event",
    "time",
    "binary",
)


def prediction_frame(
    scores: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    sample_id: Any,
    patient_id: Any,
    model: str,
    repeat: int,
    fold: int,
    **extra: Any,
) -> pd.DataFrame:
    """Rows of the predictions table for one model on one test fold, validated.

    ``scores`` holds ``risk``, ``prob``, ``high_risk`` (and optional score columns), ``truth``
    the truth columns (e.g. :meth:`metastat.data.target.Target.truth`), row-aligned; ``extra``
    adds constant or per-row identity columns after ``fold`` (e.g. ``seed``).
    """
    if len(scores) != len(truth):
        raise InputError(f"model {model!r}: {len(scores)} score rows but {len(truth)} truth rows.")
    ident = pd.DataFrame(
        {
            "sample_id": np.asarray(sample_id),
            "patient_id": np.asarray(patient_id),
            "model": model,
            "repeat": repeat,
            "fold": fold,
            **extra,
        },
        index=range(len(scores)),
    )
    truth = truth.reset_index(drop=True)
    body = scores.reset_index(drop=True).drop(columns=list(truth.columns), errors="ignore")
    out = pd.concat([ident, body, truth], axis=1)
    check_predictions(out, where=f"model {model!r}, repeat {repeat}, fold {fold}")
    return out


def check_predictions(frame: pd.DataFrame, where: str = "predictions") -> None:
    """Raise :class:`InputError` naming the column (and a sample) that breaks the contract."""
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"{where}: the predictions table lacks columns {missing}; "
            f"it needs {list(PREDICTION_COLUMNS)}."
        )

    def bad(mask: np.ndarray, col: str, rule: str) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise InputError(
                f"{where}: column {col!r} must be {rule}; sample "
                f"{frame['sample_id'].iloc[i]!r} has {frame[col].iloc[i]!r}."
            )

    num = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(float) for c in
           ("risk", "prob", "event", "time", "binary")}  # fmt: skip
    for c in num:
        bad(np.isnan(num[c]) & frame[c].notna().to_numpy(), c, "numeric")
    bad(~np.isfinite(num["risk"]), "risk", "finite (higher = worse)")
    p = num["prob"]
    bad(~np.isnan(p) & ((p < 0) | (p > 1)), "prob", "a probability in [0, 1] or NaN")
    for c in ("event", "binary"):
        v = num[c]
        bad(~np.isnan(v) & (v != 0) & (v != 1), c, "0, 1 or NaN")
    bad(num["time"] < 0, "time", "a non-negative follow-up time or NaN")
    hr = frame["high_risk"]
    if hr.dtype != bool:
        bad(~hr.isin([True, False, 0, 1]).to_numpy(), "high_risk", "boolean")
    keys = ["model", "repeat"] if "model" in frame.columns else ["repeat"]
    dup = frame.duplicated([*keys, "sample_id"]).to_numpy()
    bad(dup, "sample_id", f"unique per {' and '.join(keys)}")
