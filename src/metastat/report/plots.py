"""Matplotlib figures of a predictions table: ROC, Kaplan-Meier, calibration, decision curve,
importance. Each function returns a Figure; callers decide where it goes. Figures are built
without pyplot, so nothing is kept in a global registry (a long-running portal leaks none)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from metastat.evaluate import metrics as M
from metastat.report.words import format_p

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
    fig = Figure(figsize=(4.5, 4.2))
    ax = fig.subplots()
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


def _p_eq(p: float) -> str:
    text = format_p(p)
    return text if text.startswith(("<", "n/a")) else f"= {text}"


def _at(t: np.ndarray, s: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Step-function value of the KM curve ``(t, s)`` at ``times`` (1 before the first event)."""
    i = np.searchsorted(t, times, side="right") - 1
    return np.where(i >= 0, s[np.clip(i, 0, None)], 1.0)


def km_figure(pred: pd.DataFrame, model: str, time_unit: str | None = None) -> Figure | None:
    """Kaplan-Meier curves of the model's high- and low-risk groups: censoring marks (|),
    a numbers-at-risk table underneath, log-rank p and hazard ratio in the title."""
    from matplotlib.ticker import MaxNLocator
    from sksurv.nonparametric import kaplan_meier_estimator
    from sksurv.util import Surv

    d = _of(pred, model)
    d = d[d["time"].notna() & d["event"].notna()]
    if d.empty:
        return None
    ev, tm = d["event"].to_numpy(bool), d["time"].to_numpy(float)
    high = d["high_risk"].to_numpy(bool)
    fig = Figure(figsize=(5.4, 5.0))
    gs = fig.add_gridspec(2, 1, height_ratios=(4.2, 1), hspace=0.3)
    ax, tab = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    groups = [
        (g, c, lab)
        for g, c, lab in ((True, COLORS[0], "high risk"), (False, COLORS[1], "low risk"))
        if (high == g).sum() >= 2
    ]
    for grp, color, label in groups:
        m = high == grp
        t, s = kaplan_meier_estimator(ev[m], tm[m])
        ax.step(
            np.r_[0.0, t],
            np.r_[1.0, s],
            where="post",
            color=color,
            lw=2,
            label=f"{label} (n={m.sum()}, {ev[m].sum()} events)",
        )
        cens = tm[m][~ev[m]]
        ax.plot(cens, _at(t, s, cens), "|", color=color, ms=7, mew=1.2)
    ax.plot([], [], "|", color="grey", ms=7, label="censored")
    _, p = M.logrank(Surv.from_arrays(ev, tm), high)
    hr = M.hazard_ratio(Surv.from_arrays(ev, tm), high)
    tmax = float(tm.max())
    ticks = [x for x in MaxNLocator(nbins=6, integer=True).tick_values(0, tmax) if 0 <= x <= tmax]
    for a in (ax, tab):
        a.set_xlim(-0.04 * tmax, tmax * 1.04)
        a.set_xticks(ticks)
    ax.tick_params(labelbottom=False)
    ax.set(
        ylabel="event-free probability",
        ylim=(0, 1.02),
        title=f"{model}: log-rank p {_p_eq(p)}, HR {hr:.2f} (high vs low)",
    )
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(alpha=0.25)
    for row, (grp, color, _) in enumerate(groups):
        m = high == grp
        for x in ticks:
            tab.text(
                x,
                row,
                str(int((tm[m] >= x).sum())),
                ha="center",
                va="center",
                color=color,
                fontsize=8,
            )
    tab.set_yticks(range(len(groups)), [g[2] for g in groups], fontsize=8)
    tab.set_ylim(len(groups) - 0.5, -0.5)
    tab.set_xlabel(f"time ({time_unit or 'as recorded'})")
    tab.set_title("number at risk", fontsize=8, loc="left")
    for side in ("top", "right", "left"):
        tab.spines[side].set_visible(False)
    tab.tick_params(axis="y", length=0)
    fig.subplots_adjust(left=0.2, right=0.97, top=0.92, bottom=0.1)
    return fig


def _smooth(p: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian-kernel (Nadaraya-Watson) smooth of ``y`` on ``p``, bandwidth ~ sd(p) n^-1/5."""
    bw = max(1.06 * float(np.std(p)) * len(p) ** -0.2, 0.02)
    w = np.exp(-0.5 * ((grid[:, None] - p[None, :]) / bw) ** 2)
    return (w @ y) / np.maximum(w.sum(axis=1), 1e-12)


def _span(n: np.ndarray) -> str:
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"


def calibration_figure(pred: pd.DataFrame) -> Figure | None:
    """Observed vs predicted probability: decile bins (patient counts in the legend), a kernel-
    smoothed curve (5th-95th percentile of predictions), slope / intercept per model and the
    distribution of predictions below."""
    if not pred["binary"].notna().any() or pred["prob"].isna().all():
        return None
    fig = Figure(figsize=(5.0, 5.0))
    gs = fig.add_gridspec(2, 1, height_ratios=(4, 1), hspace=0.08)
    ax, hist = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    for color, m in zip(COLORS, _models(pred), strict=False):
        d = _of(pred, m)
        d = d[d["binary"].notna() & d["prob"].notna()]
        y, p = d["binary"].to_numpy(int), d["prob"].to_numpy(float)
        mp, obs, n = M.calibration_curve(y, p)
        ax.plot(
            mp,
            obs,
            "o",
            color=color,
            ms=4,
            label=f"{m}: slope {M.calibration_slope(y, p):.2f},"
            f" intercept {M.calibration_intercept(y, p):.2f}; {len(n)} bins of {_span(n)} patients",
        )
        lo, hi = np.quantile(p, [0.05, 0.95])
        grid = np.linspace(lo, hi, 80)
        ax.plot(grid, _smooth(p, y.astype(float), grid), "-", color=color, lw=1.6, alpha=0.8)
        hist.hist(p, bins=20, range=(0, 1), color=color, alpha=0.45)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="ideal")
    ax.plot([], [], "-", color="grey", label="smoothed (kernel)")
    ax.set(
        ylabel="observed frequency",
        xlim=(0, 1),
        ylim=(0, 1),
        title="Calibration",
    )
    ax.tick_params(labelbottom=False)
    ax.legend(loc="upper left", fontsize=6.5)
    ax.grid(alpha=0.25)
    hist.set(xlim=(0, 1), xlabel="predicted probability", ylabel="patients")
    hist.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.15, right=0.97, top=0.93, bottom=0.1)
    return fig


def decision_curve_figure(pred: pd.DataFrame) -> Figure | None:
    """Net benefit of each model vs treat-all and treat-none across threshold probabilities."""
    if not pred["binary"].notna().any() or pred["prob"].isna().all():
        return None
    thresholds = np.linspace(0.02, 0.8, 60)
    fig = Figure(figsize=(5, 4.2))
    ax = fig.subplots()
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
    fig = Figure(figsize=(5.5, 0.25 * len(d) + 1.2))
    ax = fig.subplots()
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
