"""Matplotlib figures of a predictions table: ROC, Kaplan-Meier, calibration, decision curve,
importance. Each function returns a Figure; callers decide where it goes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from metastat.evaluate import metrics as M

COLORS = ("#b2182b", "#2166ac", "#4d9221", "#762a83")


def _models(pred: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(pred["model"])) if "model" in pred.columns else ["model"]


def _of(pred: pd.DataFrame, model: str) -> pd.DataFrame:
    d = pred[pred["model"] == model] if "model" in pred.columns else pred
    return d[d["repeat"] == d["repeat"].min()]


def roc_figure(pred: pd.DataFrame) -> Figure | None:
    """ROC curves of every model on the binary truth (first CV repeat)."""
    if not pred["binary"].notna().any():
        return None
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for color, m in zip(COLORS, _models(pred), strict=False):
        d = _of(pred, m)
        d = d[d["binary"].notna()]
        fpr, tpr, _ = roc_curve(d["binary"].astype(int), d["risk"])
        ax.plot(
            fpr,
            tpr,
            color=color,
            lw=2,
            label=f"{m} (AUC {M.auc(d['binary'].to_numpy(int), d['risk'].to_numpy()):.3f})",
        )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def km_figure(pred: pd.DataFrame, model: str, time_unit: str | None = None) -> Figure | None:
    """Kaplan-Meier curves of the model's high- and low-risk groups with log-rank p and HR."""
    from sksurv.nonparametric import kaplan_meier_estimator
    from sksurv.util import Surv

    d = _of(pred, model)
    d = d[d["time"].notna() & d["event"].notna()]
    if d.empty:
        return None
    y = Surv.from_arrays(d["event"].astype(bool), d["time"].astype(float))
    high = d["high_risk"].to_numpy(bool)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for grp, color, label in ((True, COLORS[0], "high risk"), (False, COLORS[1], "low risk")):
        m = high == grp
        if m.sum() < 2:
            continue
        t, s = kaplan_meier_estimator(y["event"][m], y["time"][m])
        ax.step(t, s, where="post", color=color, lw=2, label=f"{label} (n={m.sum()})")
    _, p = M.logrank(y, high)
    hr = M.hazard_ratio(y, high)
    ax.set(
        xlabel=f"time ({time_unit or 'as recorded'})",
        ylabel="event-free probability",
        ylim=(0, 1.02),
        title=f"{model}: log-rank p={p:.2g}, HR={hr:.2f}",
    )
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def calibration_figure(pred: pd.DataFrame) -> Figure | None:
    """Observed vs predicted probability (deciles) with slope / intercept per model."""
    if not pred["binary"].notna().any() or pred["prob"].isna().all():
        return None
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for color, m in zip(COLORS, _models(pred), strict=False):
        d = _of(pred, m)
        d = d[d["binary"].notna() & d["prob"].notna()]
        y, p = d["binary"].to_numpy(int), d["prob"].to_numpy(float)
        mp, obs, _ = M.calibration_curve(y, p)
        ax.plot(
            mp,
            obs,
            "o-",
            color=color,
            label=f"{m} (slope {M.calibration_slope(y, p):.2f},"
            f" int. {M.calibration_intercept(y, p):.2f})",
        )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(
        xlabel="predicted probability",
        ylabel="observed frequency",
        xlim=(0, 1),
        ylim=(0, 1),
        title="Calibration",
    )
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return fig


def decision_curve_figure(pred: pd.DataFrame) -> Figure | None:
    """Net benefit of each model vs treat-all and treat-none across threshold probabilities."""
    if not pred["binary"].notna().any() or pred["prob"].isna().all():
        return None
    thresholds = np.linspace(0.02, 0.8, 60)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    first = None
    for color, m in zip(COLORS, _models(pred), strict=False):
        d = _of(pred, m)
        d = d[d["binary"].notna() & d["prob"].notna()]
        y, p = d["binary"].to_numpy(int), d["prob"].to_numpy(float)
        first = y if first is None else first
        ax.plot(thresholds, M.net_benefit(y, p, thresholds), color=color, lw=2, label=m)
    if first is not None:
        ax.plot(
            thresholds,
            M.net_benefit(first, np.ones(len(first)), thresholds),
            color="grey",
            lw=1,
            label="treat all",
        )
    ax.axhline(0, color="black", lw=1, label="treat none")
    prev = float(np.mean(first)) if first is not None else 0.5
    ax.set(
        xlabel="threshold probability",
        ylabel="net benefit",
        ylim=(-0.05, max(prev, 0.05)),
        title="Decision curve",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def importance_figure(importance: pd.DataFrame, top: int = 20) -> Figure:
    """Top genes by mean standardised weight (bars) with the fraction of folds selecting them."""
    d = importance.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.25 * len(d) + 1.2))
    colors = [COLORS[0] if v > 0 else COLORS[1] for v in d["mean_weight"]]
    ax.barh(d.index.astype(str), d["mean_weight"], xerr=d.get("sd_weight"), color=colors)
    ax.axvline(0, color="black", lw=0.8)
    ax.set(
        xlabel="weight on standardised expression (+ = higher risk)",
        title=f"Top {len(d)} genes (mean over folds)",
    )
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig
