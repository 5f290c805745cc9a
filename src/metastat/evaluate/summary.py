"""Summaries of a predictions table: every metric with its bootstrap CI.

The predictions table is the contract between models of every modality and evaluation. Columns:
``sample_id``, ``patient_id``, ``repeat``, ``fold``, ``risk`` (higher = worse), ``prob`` (event
probability, binary or by the horizon; NaN if the model has none), ``high_risk`` (risk above the
*training-fold* median), ``event``, ``time`` and ``binary`` (truth; NaN where unknown, e.g.
censored before the horizon), and optionally ``surv_0..surv_k`` (survival probabilities at the
times in ``surv_times``). Build it with :func:`metastat.evaluate.predictions.prediction_frame`,
which checks these columns (:func:`~metastat.evaluate.predictions.check_predictions`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sksurv.util import Surv

from metastat.errors import ValidationError
from metastat.evaluate import metrics as M
from metastat.evaluate.bootstrap import Estimate, bootstrap_metrics
from metastat.evaluate.predictions import PREDICTION_COLUMNS, check_predictions

SurvTimes = Sequence[float] | np.ndarray | None

__all__ = ["PREDICTION_COLUMNS", "compare", "metric_function", "metrics_json", "summarise"]


def _binary_metrics(d: pd.DataFrame, threshold: float) -> dict[str, float]:
    d = d[d["binary"].notna()]
    y = d["binary"].to_numpy(dtype=int)
    out = {"auc": M.auc(y, d["risk"].to_numpy())}
    p = d["prob"].to_numpy(dtype=float)
    if np.isfinite(p).all() and len(p):
        out |= {
            "accuracy": M.accuracy(y, p, threshold),
            "balanced_accuracy": M.balanced_accuracy(y, p, threshold),
            "sensitivity": M.sensitivity(y, p, threshold),
            "specificity": M.specificity(y, p, threshold),
            "brier": M.brier(y, p),
            "calibration_slope": M.calibration_slope(y, p),
            "calibration_intercept": M.calibration_intercept(y, p),
        }
    return out


def _survival_metrics(
    d: pd.DataFrame,
    y_ref: np.ndarray,
    horizon: float | None,
    surv_times: SurvTimes,
    p_values: bool = True,
) -> dict[str, float]:
    d = d[d["time"].notna() & d["event"].notna()]
    if d.empty:
        return {}
    y = Surv.from_arrays(d["event"].to_numpy(dtype=bool), d["time"].to_numpy(dtype=float))
    risk = d["risk"].to_numpy(dtype=float)
    high = d["high_risk"].to_numpy(dtype=bool)
    out = {
        "c_index": M.harrell_c(y, risk),
        "uno_c": M.uno_c(y_ref, y, risk, horizon),
        "hazard_ratio": M.hazard_ratio(y, high),
    }
    if p_values:  # a point value only: p-values get no bootstrap CI
        out["logrank_p"] = M.logrank(y, high)[1]
    if horizon is not None:
        out["td_auc"] = M.time_dependent_auc(y_ref, y, risk, horizon)
        p = d["prob"].to_numpy(dtype=float)
        if np.isfinite(p).all():
            out["brier_at_horizon"] = M.brier_at(y_ref, y, 1 - p, horizon)
    if surv_times is not None:
        cols = [f"surv_{i}" for i in range(len(surv_times))]
        if all(c in d.columns for c in cols):
            times = np.asarray(surv_times, dtype=float)
            ok = (times > y["time"].min()) & (times < y["time"].max())
            if ok.sum() >= 2:
                sp = d[cols].to_numpy(dtype=float)[:, ok]
                out["integrated_brier"] = M.integrated_brier(y_ref, y, sp, times[ok])
    return out


def _mean_finite(values: list[float]) -> float:
    """Mean over CV repeats of the values that could be computed (NaN if none)."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def metric_function(
    predictions: pd.DataFrame,
    *,
    horizon: float | None = None,
    threshold: float = 0.5,
    surv_times: SurvTimes = None,
    p_values: bool = True,
) -> Callable[[pd.DataFrame], dict[str, float]]:
    """The function computing every applicable metric on (a resample of) ``predictions``
    (``p_values=False`` for bootstrap replicates: p-values are reported without a CI).

    Binary metrics are computed whenever a binary truth exists (recorded status, or event by the
    horizon), survival metrics whenever follow-up times exist; each is averaged over CV repeats.
    The censoring distribution for IPCW metrics is estimated on all evaluated samples.
    ``predictions`` is checked against the table's contract first.
    """
    check_predictions(predictions)
    has_time = bool(predictions["time"].notna().any())
    has_binary = bool(predictions["binary"].notna().any())
    y_ref = None
    if has_time:
        ref = predictions.drop_duplicates("sample_id")
        ref = ref[ref["time"].notna() & ref["event"].notna()]
        y_ref = Surv.from_arrays(
            ref["event"].to_numpy(dtype=bool), ref["time"].to_numpy(dtype=float)
        )

    def compute(frame: pd.DataFrame) -> dict[str, float]:
        per_repeat = []
        for _, d in frame.groupby("repeat", sort=True):
            values: dict[str, float] = {}
            if has_binary:
                values |= _binary_metrics(d, threshold)
            if y_ref is not None:
                values |= _survival_metrics(d, y_ref, horizon, surv_times, p_values)
            per_repeat.append(values)
        keys = per_repeat[0].keys() if per_repeat else []
        return {k: _mean_finite([r.get(k, np.nan) for r in per_repeat]) for k in keys}

    return compute


def summarise(
    predictions: pd.DataFrame,
    *,
    horizon: float | None = None,
    threshold: float = 0.5,
    surv_times: SurvTimes = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Estimate]:
    """Every applicable metric of one model's predictions, with patient-bootstrap 95 % CIs."""
    kw = {"horizon": horizon, "threshold": threshold, "surv_times": surv_times}
    return bootstrap_metrics(
        predictions,
        metric_function(predictions, **kw),  # type: ignore[arg-type]
        replicate=metric_function(predictions, p_values=False, **kw),  # type: ignore[arg-type]
        n_boot=n_boot,
        seed=seed,
        progress=progress,
    )


def compare(
    predictions: pd.DataFrame,
    *,
    primary: str,
    baseline: str,
    horizon: float | None = None,
    threshold: float = 0.5,
    surv_times: SurvTimes = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Estimate]:
    """Metrics of ``primary`` (bare names), ``baseline_<metric>`` and paired ``delta_<metric>``.

    ``predictions`` holds both models' rows (column ``model``; rows of other models are left
    out) on the same splits; the bootstrap resamples patients once per replicate for both
    models, so the CI of each difference is paired.
    """
    missing = [m for m in (primary, baseline) if not (predictions["model"] == m).any()]
    if missing:
        raise ValidationError(
            f"no predictions of model(s) {missing} to compare; models: "
            f"{sorted(map(str, predictions['model'].unique()))}."
        )
    predictions = predictions[predictions["model"].isin([primary, baseline])]

    def paired(p_values: bool) -> Callable[[pd.DataFrame], dict[str, float]]:
        fns = {
            m: metric_function(
                predictions[predictions["model"] == m],
                horizon=horizon,
                threshold=threshold,
                surv_times=surv_times,
                p_values=p_values,
            )
            for m in (primary, baseline)
        }

        def compute(frame: pd.DataFrame) -> dict[str, float]:
            is_primary = (frame["model"] == primary).to_numpy()
            a = fns[primary](frame[is_primary])
            b = fns[baseline](frame[~is_primary])
            out = dict(a)
            out |= {f"baseline_{k}": v for k, v in b.items()}
            out |= {f"delta_{k}": a[k] - b[k] for k in a if k in b and k not in DELTA_SKIP}
            return out

        return compute

    return bootstrap_metrics(
        predictions,
        paired(True),
        replicate=paired(False),
        n_boot=n_boot,
        seed=seed,
        progress=progress,
    )


#: metrics whose difference between two models means nothing (p-values, ratios)
DELTA_SKIP = frozenset({"logrank_p", "hazard_ratio"})


def metrics_json(estimates: dict[str, Estimate]) -> dict[str, dict[str, float | None]]:
    """``{metric: {"estimate", "ci_low", "ci_high"}}`` (the CLI's ``--json`` shape)."""
    return {k: v.as_dict() for k, v in estimates.items()}
