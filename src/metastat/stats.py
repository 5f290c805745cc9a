"""Small statistical routines shared by models and evaluation (no dependency on either)."""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def _risk_sets(time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order by descending time and the index of the last member of each sample's risk set."""
    order = np.argsort(-time, kind="stable")
    last = np.searchsorted(-time[order], -time[order], side="right") - 1
    return order, last


def cox_1d(x: np.ndarray, time: np.ndarray, event: np.ndarray, max_beta: float = 30.0) -> float:
    """Coefficient of a one-covariate Cox model (Breslow ties), Newton-Raphson; NaN if undefined."""
    x = np.asarray(x, dtype=float)
    event = np.asarray(event, dtype=bool)
    if np.ptp(x) == 0 or not event.any():
        return float("nan")
    order, last = _risk_sets(np.asarray(time, dtype=float))
    x, ev = x[order], event[order]
    beta = 0.0
    for _ in range(100):
        w = np.exp(beta * x - np.max(beta * x))
        s0 = np.cumsum(w)[last][ev]
        s1 = np.cumsum(w * x)[last][ev]
        s2 = np.cumsum(w * x * x)[last][ev]
        mean = s1 / s0
        grad = np.sum(x[ev] - mean)
        info = np.sum(s2 / s0 - mean**2)
        if info <= 1e-12:
            return float("nan")
        step = grad / info
        beta += step
        if abs(step) < 1e-10:
            break
        if abs(beta) > max_beta:
            return float("nan")
    return float(beta)


def breslow_cumhaz(
    lp: np.ndarray, time: np.ndarray, event: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Breslow baseline cumulative hazard at the distinct event times, given linear predictors."""
    lp = np.asarray(lp, dtype=float)
    event = np.asarray(event, dtype=bool)
    event_times = np.unique(time[event])
    w = np.exp(lp - lp.max())
    hazard = np.array([event[time == t].sum() / w[time >= t].sum() for t in event_times])
    return event_times, np.cumsum(hazard) * np.exp(-lp.max())


def cumhaz_at(times: np.ndarray, cumhaz: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Step-function value of a cumulative hazard at time(s) ``t``."""
    idx = np.searchsorted(times, np.atleast_1d(t), side="right") - 1
    return np.where(idx >= 0, cumhaz[np.clip(idx, 0, None)], 0.0)


def logistic_fit(x: np.ndarray, y: np.ndarray, offset: np.ndarray, slope: bool) -> np.ndarray:
    """Unpenalised logistic regression by Newton-Raphson (intercept [+ slope]) with an offset."""
    design = np.column_stack([np.ones_like(x), x]) if slope else np.ones((len(x), 1))
    beta = np.zeros(design.shape[1])
    for _ in range(50):
        mu = expit(design @ beta + offset)
        w = mu * (1 - mu) + 1e-12
        grad = design.T @ (y - mu)
        hess = design.T @ (design * w[:, None])
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return np.full(design.shape[1], np.nan)
        beta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta
