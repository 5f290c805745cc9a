"""Patient-level (cluster) bootstrap confidence intervals for any set of metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metastat import progress as prog


@dataclass(frozen=True)
class Estimate:
    """A metric with its percentile bootstrap confidence interval."""

    estimate: float
    ci_low: float
    ci_high: float
    n_boot: int = 0  # replicates on which the metric was computable

    def as_dict(self) -> dict[str, float | None]:
        def clean(v: float) -> float | None:
            return None if v is None or not np.isfinite(v) else round(float(v), 6)

        return {
            "estimate": clean(self.estimate),
            "ci_low": clean(self.ci_low),
            "ci_high": clean(self.ci_high),
        }

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}]"


def bootstrap_metrics(
    frame: pd.DataFrame,
    compute: Callable[[pd.DataFrame], dict[str, float]],
    *,
    cluster: str = "patient_id",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    progress: bool = False,
    replicate: Callable[[pd.DataFrame], dict[str, float]] | None = None,
) -> dict[str, Estimate]:
    """Point estimates of ``compute(frame)`` with percentile CIs from resampling ``cluster``s.

    Patients (not samples) are resampled with replacement, so correlated samples of one patient
    stay together, as they do in the splits. ``replicate`` (default ``compute``) computes the
    resampled values; a metric it leaves out (a p-value) gets no CI.
    """
    point = compute(frame)
    replicate = replicate or compute
    if n_boot <= 0:
        return {k: Estimate(v, float("nan"), float("nan"), 0) for k, v in point.items()}
    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(frame[cluster])
    rows_of = [np.flatnonzero(codes == i) for i in range(len(uniques))]
    plans = [
        np.concatenate([rows_of[c] for c in rng.integers(0, len(uniques), len(uniques))])
        for _ in range(n_boot)
    ]
    reps: dict[str, list[float]] = {k: [] for k in point}
    for values in _replicates(frame, replicate, plans, progress):
        for k in point:
            reps[k].append(values.get(k, np.nan))
    out = {}
    for k, v in point.items():
        arr = np.asarray(reps[k], dtype=float)
        arr = arr[np.isfinite(arr)]
        if len(arr) < max(10, n_boot // 10):
            out[k] = Estimate(v, float("nan"), float("nan"), len(arr))
        else:
            lo, hi = np.quantile(arr, [alpha / 2, 1 - alpha / 2])
            out[k] = Estimate(v, float(lo), float(hi), len(arr))
    return out


#: replicates from which the bootstrap is spread over processes (results are identical)
PARALLEL_MIN = 200


def _chunk(
    frame: pd.DataFrame, fn: Callable[[pd.DataFrame], dict[str, float]], plans: list[np.ndarray]
) -> list[dict[str, float]]:
    return [fn(frame.iloc[idx]) for idx in plans]


def _replicates(
    frame: pd.DataFrame,
    fn: Callable[[pd.DataFrame], dict[str, float]],
    plans: list[np.ndarray],
    progress: bool,
) -> list[dict[str, float]]:
    """Metric values of every resample; on up to 2 processes for many replicates (the resamples
    are drawn beforehand, so the result does not depend on the number of processes)."""
    import os

    n_jobs = min(2, os.cpu_count() or 1)
    if n_jobs == 1 or len(plans) < PARALLEL_MIN:
        it = prog.progress(plans, "bootstrap CIs", unit="rep", enabled=progress)
        return [fn(frame.iloc[idx]) for idx in it]
    from joblib import Parallel, delayed

    chunks = np.array_split(np.arange(len(plans)), 4 * n_jobs)
    parts = Parallel(n_jobs=n_jobs)(
        delayed(_chunk)(frame, fn, [plans[i] for i in c]) for c in chunks
    )
    return [v for part in parts for v in part]
