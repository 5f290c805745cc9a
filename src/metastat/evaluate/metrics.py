"""Point metrics for binary and time-to-event predictions.

Binary metrics take ``(y_true, p)`` with ``p`` a probability (or any score for AUC); survival
metrics take sksurv structured arrays and a risk score (higher = worse prognosis). Where a metric
cannot be computed on the given sample (e.g. one class only) it returns NaN rather than raising, so
bootstrap replicates degrade gracefully; the caller reports how many replicates were usable.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import logit

from metastat.stats import cox_1d, logistic_fit

EPS = 1e-6


def _two_classes(y: np.ndarray) -> bool:
    return np.unique(y).size == 2


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks; equals scikit-learn's)."""
    from scipy.stats import rankdata

    y = np.asarray(y)
    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, dtype=float))
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def accuracy(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean((np.asarray(p) >= threshold) == (np.asarray(y) == 1)))


def balanced_accuracy(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    if not _two_classes(y):
        return float("nan")
    return float((sensitivity(y, p, threshold) + specificity(y, p, threshold)) / 2)


def sensitivity(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    pos = y == 1
    return float(np.mean(p[pos] >= threshold)) if pos.any() else float("nan")


def specificity(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    neg = y == 0
    return float(np.mean(p[neg] < threshold)) if neg.any() else float("nan")


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def calibration_slope(y: np.ndarray, p: np.ndarray) -> float:
    """Slope of ``logit P(y=1) = a + b * logit(p)``; 1 is ideal, < 1 means over-fitted."""
    if not _two_classes(y):
        return float("nan")
    lp = logit(np.clip(p, EPS, 1 - EPS))
    return float(logistic_fit(lp, y, np.zeros_like(lp), slope=True)[1])


def calibration_intercept(y: np.ndarray, p: np.ndarray) -> float:
    """Calibration-in-the-large: ``a`` in ``logit P(y=1) = a + logit(p)``; 0 is ideal."""
    if not _two_classes(y):
        return float("nan")
    lp = logit(np.clip(p, EPS, 1 - EPS))
    return float(logistic_fit(lp, y, lp, slope=False)[0])


def calibration_curve(
    y: np.ndarray, p: np.ndarray, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed event rate vs mean predicted probability in quantile bins (for the plot)."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    mean_p, obs, n = [], [], []
    for b in range(len(edges) - 1):
        m = idx == b
        if m.any():
            mean_p.append(p[m].mean())
            obs.append(y[m].mean())
            n.append(m.sum())
    return np.array(mean_p), np.array(obs), np.array(n)


def net_benefit(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Decision-curve net benefit of treating when ``p >= t``: TP/n - FP/n * t/(1-t)."""
    n = len(y)
    out = np.empty(len(thresholds))
    for i, t in enumerate(thresholds):
        treat = p >= t
        tp = np.sum(treat & (y == 1))
        fp = np.sum(treat & (y == 0))
        out[i] = tp / n - fp / n * t / (1 - t)
    return out


# --- time-to-event ------------------------------------------------------------------------------


#: above this many samples the concordance falls back to scikit-survival's loop (O(n) memory)
PAIRWISE_MAX = 4000


def _concordance(
    event: np.ndarray, time: np.ndarray, risk: np.ndarray, weights: np.ndarray, tol: float = 1e-8
) -> float:
    """Weighted concordance exactly as scikit-survival counts it: a pair (i, j) is comparable
    when i has an event and j outlives i (or is censored at i's time); ties in risk count 1/2;
    each comparable pair weighs ``weights[i]``."""
    rows = np.flatnonzero(event & (weights > 0))
    if rows.size == 0:
        return float("nan")
    ti, tj = time[rows, None], time[None, :]
    comparable = (tj > ti) | ((tj == ti) & ~event[None, :])
    diff = risk[rows, None] - risk[None, :]
    score = np.where(np.abs(diff) <= tol, 0.5, (diff > 0).astype(float))
    w = weights[rows, None]
    den = float((w * comparable).sum())
    return float((w * comparable * score).sum() / den) if den > 0 else float("nan")


def harrell_c(y_surv: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index (ties in risk count 1/2; equals scikit-survival's)."""
    ev, tm = _fields(y_surv)
    if not ev.any():
        return float("nan")
    risk = np.asarray(risk, dtype=float)
    if len(tm) > PAIRWISE_MAX:
        from sksurv.metrics import concordance_index_censored

        return float(concordance_index_censored(ev, tm, risk)[0])
    return _concordance(ev, tm, risk, np.ones(len(tm)))


_IPCW_CACHE: dict[bytes, object] = {}


def _censoring(y_train: np.ndarray) -> object:
    """scikit-survival's censoring-distribution estimator fitted on ``y_train`` (cached: the
    bootstrap refits nothing while the reference cohort stays the same)."""
    from sksurv.nonparametric import CensoringDistributionEstimator

    key = y_train.tobytes()
    if key not in _IPCW_CACHE:
        if len(_IPCW_CACHE) > 64:
            _IPCW_CACHE.clear()
        _IPCW_CACHE[key] = CensoringDistributionEstimator().fit(y_train)
    return _IPCW_CACHE[key]


def uno_c(
    y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, tau: float | None = None
) -> float:
    """Uno's IPCW concordance, truncated at ``tau``; censoring distribution from ``y_train``
    (equals scikit-survival's ``concordance_index_ipcw``)."""
    ev, tm = _fields(y_test)
    if not ev.any():
        return float("nan")
    tau = _safe_tau(y_train, y_test, tau)
    risk = np.asarray(risk, dtype=float)
    mask = tm < tau
    try:
        ipcw = np.zeros(len(tm))
        ipcw[mask] = _censoring(y_train).predict_ipcw(y_test[mask])  # type: ignore[attr-defined]
    except ValueError:
        return float("nan")
    if len(tm) > PAIRWISE_MAX:
        from sksurv.metrics import concordance_index_ipcw

        return float(concordance_index_ipcw(y_train, y_test, risk, tau=tau)[0])
    return _concordance(ev, tm, risk, np.square(ipcw))


def time_dependent_auc(
    y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, time: float
) -> float:
    """Cumulative/dynamic AUC at ``time`` (Uno et al.), via scikit-survival."""
    from sksurv.metrics import cumulative_dynamic_auc

    ev, tm = _fields(y_test)
    if not (ev & (tm <= time)).any() or not (tm > time).any():
        return float("nan")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(cumulative_dynamic_auc(y_train, y_test, risk, [time])[0][0])
    except ValueError:
        return float("nan")


def brier_at(y_train: np.ndarray, y_test: np.ndarray, surv_prob: np.ndarray, time: float) -> float:
    """IPCW Brier score at ``time`` given predicted survival probabilities S(time)."""
    from sksurv.metrics import brier_score

    try:
        return float(brier_score(y_train, y_test, surv_prob[:, None], [time])[1][0])
    except ValueError:
        return float("nan")


def integrated_brier(
    y_train: np.ndarray, y_test: np.ndarray, surv_probs: np.ndarray, times: np.ndarray
) -> float:
    """Integrated Brier score over ``times`` (survival probabilities at each time, columns)."""
    from sksurv.metrics import integrated_brier_score

    try:
        return float(integrated_brier_score(y_train, y_test, surv_probs, times))
    except ValueError:
        return float("nan")


def logrank(y_surv: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """Log-rank chi-square and p-value between the high- and low-risk groups."""
    from sksurv.compare import compare_survival

    if high.all() or not high.any():
        return float("nan"), float("nan")
    chisq, p = compare_survival(y_surv, high.astype(int))
    return float(chisq), float(p)


def hazard_ratio(y_surv: np.ndarray, high: np.ndarray) -> float:
    """Cox hazard ratio of the high- vs low-risk group (one binary covariate, Breslow ties)."""
    ev, tm = _fields(y_surv)
    beta = cox_1d(high.astype(float), tm, ev)
    return float(np.exp(beta)) if np.isfinite(beta) else float("nan")


def _fields(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ev_name, tm_name = y.dtype.names  # type: ignore[misc]
    return y[ev_name].astype(bool), y[tm_name].astype(float)


def _safe_tau(y_train: np.ndarray, y_test: np.ndarray, tau: float | None) -> float:
    """A truncation time at which the censoring survival is still positive."""
    _, t_train = _fields(y_train)
    _, t_test = _fields(y_test)
    limit = min(np.max(t_train), np.max(t_test))
    limit = np.nextafter(limit, -np.inf)
    return float(min(tau, limit)) if tau is not None else float(limit)
