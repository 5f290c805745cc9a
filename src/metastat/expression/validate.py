"""Cross-validation and external validation of expression models, side by side with a baseline.

Every model of a run sees the same patient-grouped splits; preprocessing and tuning happen inside
each training fold; results are a long predictions table (one row per sample, model, repeat) and
metrics with patient-bootstrap CIs from :mod:`metastat.evaluate`.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from metastat import __version__
from metastat.atomic import atomic_write
from metastat.data.cohort import cohort_name, expression_frame, patients
from metastat.data.genes import GeneReport, align_cohorts, collapse_genes
from metastat.data.outcomes import DAYS_PER, Outcome, resolve_outcome
from metastat.errors import ValidationError
from metastat.evaluate.bootstrap import Estimate
from metastat.evaluate.splits import patient_kfold
from metastat.evaluate.summary import compare, metrics_json
from metastat.expression.heads import make_target
from metastat.expression.model import RiskModel
from metastat.expression.signatures import Signature


def default_baseline(outcome: Outcome) -> str:
    """The plain baseline of the issue: L2 logistic for binary outcomes, CoxNet otherwise."""
    return "baseline_logistic" if outcome.kind == "binary" else "baseline_coxnet"


def default_model(outcome: Outcome) -> str:
    """Signature ensemble, stacked with CoxNet when follow-up times exist."""
    return "ensemble" if outcome.time is not None else "ensemble_logistic"


@dataclass
class EvaluationResult:
    """Predictions and metrics of a primary model and its baseline on the same splits."""

    model: str
    baseline: str
    outcome: Outcome
    predictions: pd.DataFrame
    metrics: dict[str, Estimate]
    meta: dict[str, Any] = field(default_factory=dict)
    importance: pd.DataFrame | None = None

    def to_json(self) -> dict[str, dict[str, float | None]]:
        return metrics_json(self.metrics)

    def save(self, out_dir: str | Path) -> Path:
        """Write predictions.csv, metrics.json, run.json (and importance.csv) atomically."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "predictions.csv", self.predictions.to_csv(index=False))
        atomic_write(out / "metrics.json", json.dumps(self.to_json(), indent=2))
        atomic_write(out / "run.json", json.dumps(self.meta, indent=2, default=str))
        if self.importance is not None:
            atomic_write(out / "importance.csv", self.importance.to_csv())
        return out


def _truth(outcome: Outcome, mask: np.ndarray, time_scale: float = 1.0) -> pd.DataFrame:
    time = outcome.time[mask] * time_scale if outcome.time is not None else np.nan
    return pd.DataFrame(
        {"event": outcome.event[mask], "time": time, "binary": outcome.binary[mask]}
    )


def _target(outcome: Outcome, mask: np.ndarray) -> np.ndarray:
    time = outcome.time[mask] if outcome.time is not None else None
    return make_target(outcome.event[mask], time, outcome.binary[mask])


def _surv_times(outcome: Outcome, mask: np.ndarray) -> np.ndarray | None:
    if outcome.time is None:
        return None
    t = outcome.time[mask & outcome.survival_mask]
    return np.quantile(t, np.linspace(0.1, 0.8, 8))


def _usable(outcome: Outcome, cohort: str) -> np.ndarray:
    mask = outcome.usable_mask
    if outcome.kind == "binary":
        mask = mask & (outcome.survival_mask | (outcome.time is None))
    if mask.sum() < 10:
        raise ValidationError(
            f"cohort {cohort!r}: only {int(mask.sum())} samples have outcome {outcome.name!r}."
        )
    return mask


def _meta(kind: str, seed: int, **extra: Any) -> dict[str, Any]:
    import sklearn
    import sksurv

    return {
        "kind": kind,
        "seed": seed,
        "metastat": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "scikit-survival": sksurv.__version__,
        "anndata": version("anndata"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def fit_cohort(
    adata: ad.AnnData,
    outcome_name: str,
    *,
    model: str | None = None,
    horizon: str | float | None = None,
    seed: int = 0,
    **params: Any,
) -> tuple[RiskModel, dict[str, Any]]:
    """Fit ``model`` on every usable sample of a cohort (for saving and serving).

    Returns the fitted model and the training facts stored in its manifest. ``params`` go to
    :class:`RiskModel` (e.g. ``scale``, ``n_genes``, ``signatures``).
    """
    adata = collapse_genes(adata, "symbol")
    outcome = resolve_outcome(adata, outcome_name, horizon=horizon)
    mask = _usable(outcome, cohort_name(adata))
    est = RiskModel(
        model or default_model(outcome),
        task=outcome.kind,
        horizon=outcome.horizon,
        seed=seed,
        **params,
    )
    est.fit(expression_frame(adata)[mask], _target(outcome, mask), patients(adata)[mask])
    info = {
        "training_cohort": cohort_name(adata),
        "outcome": outcome_name,
        "n_train": int(mask.sum()),
        "events": int(np.nansum(outcome.event[mask])),
        "time_unit": outcome.time_unit,
    }
    return est, info


def gene_importance(coefs: list[pd.Series]) -> pd.DataFrame | None:
    """Global gene importance over fitted folds: mean / sd of the standardised weight and the
    fraction of folds in which the gene had a non-zero weight (selection stability)."""
    if not coefs:
        return None
    table = pd.concat(coefs, axis=1).fillna(0.0)
    out = pd.DataFrame(
        {
            "mean_weight": table.mean(axis=1),
            "sd_weight": table.std(axis=1),
            "selected_fraction": (table.abs() > 1e-12).mean(axis=1),
        }
    )
    out.index.name = "gene"
    return out.sort_values("mean_weight", key=np.abs, ascending=False)


def cross_validate(
    adata: ad.AnnData,
    outcome_name: str,
    *,
    model: str | None = None,
    baseline: str | None = None,
    n_splits: int = 5,
    n_repeats: int = 1,
    seed: int = 0,
    horizon: str | float | None = None,
    n_boot: int = 1000,
    signatures: tuple[Signature, ...] = (),
    batch_key: str | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Patient-grouped stratified (repeated) k-fold CV of ``model`` and ``baseline``.

    ``batch_key`` names an ``obs`` column of study labels (e.g. ``"cohort"`` of a pooled cohort):
    ComBat is then fitted on each training fold and applied to its test fold.
    """
    name = cohort_name(adata)
    genes = GeneReport()
    adata = collapse_genes(adata, "symbol", genes)
    outcome = resolve_outcome(adata, outcome_name, horizon=horizon)
    mask = _usable(outcome, name)
    model = model or default_model(outcome)
    baseline = baseline or default_baseline(outcome)
    x = expression_frame(adata)[mask]
    groups = patients(adata)[mask]
    y = _target(outcome, mask)
    batch = adata.obs[batch_key].astype(str).to_numpy()[mask] if batch_key else None
    labels = (
        np.nan_to_num(outcome.binary[mask]) if outcome.kind == "binary" else outcome.event[mask]
    )
    splits = patient_kfold(groups, labels, n_splits=n_splits, n_repeats=n_repeats, seed=seed)
    surv_times = _surv_times(outcome, mask)
    truth = _truth(outcome, mask)
    rows, coefs = [], []
    t0 = time.perf_counter()
    jobs = [(s, m) for s in splits for m in (model, baseline)]
    for split, m in tqdm(
        jobs, desc=f"CV {name}/{outcome_name}", disable=None if progress else True
    ):
        est = RiskModel(
            m, task=outcome.kind, horizon=outcome.horizon, seed=seed, signatures=signatures
        )
        b_tr, b_te = (None, None) if batch is None else (batch[split.train], batch[split.test])
        est.fit(x.iloc[split.train], y[split.train], groups[split.train], batch=b_tr)
        pred = est.predict_frame(x.iloc[split.test], surv_times, batch=b_te)
        if m == model and est.gene_coefficients is not None:
            coefs.append(est.gene_coefficients)
        rows.append(
            _rows(pred, truth.iloc[split.test], groups[split.test], m, split.repeat, split.fold)
        )
    predictions = pd.concat(rows, ignore_index=True)
    fit_s = time.perf_counter() - t0
    metrics = compare(
        predictions,
        primary=model,
        baseline=baseline,
        horizon=outcome.horizon,
        surv_times=surv_times,
        n_boot=n_boot,
        seed=seed,
        progress=progress,
    )
    meta = _meta(
        "cv",
        seed,
        cohort=name,
        outcome=outcome_name,
        model=model,
        baseline=baseline,
        n_splits=n_splits,
        n_repeats=n_repeats,
        n_boot=n_boot,
        horizon=outcome.horizon,
        time_unit=outcome.time_unit,
        n_samples=int(mask.sum()),
        n_patients=len(np.unique(groups)),
        fit_seconds=round(fit_s, 2),
        genes=genes.summary(),
        surv_times=None if surv_times is None else surv_times.tolist(),
    )
    return EvaluationResult(
        model, baseline, outcome, predictions, metrics, meta, gene_importance(coefs)
    )


def _rows(
    pred: pd.DataFrame, truth: pd.DataFrame, groups: np.ndarray, model: str, repeat: int, fold: int
) -> pd.DataFrame:
    out = pred.reset_index(names="sample_id")
    out.insert(1, "patient_id", groups)
    out.insert(2, "model", model)
    out.insert(3, "repeat", repeat)
    out.insert(4, "fold", fold)
    for col in ("event", "time", "binary"):
        out[col] = truth[col].to_numpy()
    return out


def external_validate(
    train: ad.AnnData,
    test: ad.AnnData,
    outcome_name: str,
    *,
    model: str | None = None,
    baseline: str | None = None,
    seed: int = 0,
    horizon: str | float | None = None,
    n_boot: int = 1000,
    scale: str = "batch",
    signatures: tuple[Signature, ...] = (),
    batch_key: str | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Train on one cohort, test on another (genes aligned; each cohort standardised by its own
    statistics when ``scale='batch'``, the default for cross-platform validation). With
    ``batch_key``, the training cohort is a pool of studies harmonised by ComBat."""
    genes = GeneReport()
    train, test = align_cohorts([train, test], "symbol", genes)
    out_tr = resolve_outcome(train, outcome_name, horizon=horizon)
    out_te = resolve_outcome(test, outcome_name, horizon=horizon)
    if out_tr.time_unit and out_te.time_unit and out_tr.time_unit != out_te.time_unit:
        scale_t = DAYS_PER[out_te.time_unit] / DAYS_PER[out_tr.time_unit]
    else:
        scale_t = 1.0
    if out_te.horizon is not None and out_tr.horizon is not None and horizon is None:
        out_te = resolve_outcome(test, outcome_name, horizon=out_tr.horizon / scale_t)
    m_tr, m_te = _usable(out_tr, cohort_name(train)), _usable(out_te, cohort_name(test))
    model = model or default_model(out_tr)
    baseline = baseline or default_baseline(out_tr)
    x_tr, x_te = expression_frame(train)[m_tr], expression_frame(test)[m_te]
    g_tr, g_te = patients(train)[m_tr], patients(test)[m_te]
    overlap = set(g_tr) & set(g_te)
    if overlap:
        raise ValidationError(
            f"{len(overlap)} patient ids are in both cohorts, e.g. {sorted(overlap)[:3]}; "
            "external validation needs disjoint patients."
        )
    y_tr = _target(out_tr, m_tr)
    truth = _truth(out_te, m_te, scale_t)
    surv_times = _surv_times(out_tr, m_tr)
    rows = []
    t0 = time.perf_counter()
    coefs = []
    for m in tqdm(
        (model, baseline), desc=f"train {cohort_name(train)}", disable=None if progress else True
    ):
        est = RiskModel(
            m,
            task=out_tr.kind,
            horizon=out_tr.horizon,
            seed=seed,
            scale=scale,  # type: ignore[arg-type]
            signatures=signatures,
        )
        est.fit(
            x_tr,
            y_tr,
            g_tr,
            batch=train.obs[batch_key].astype(str).to_numpy()[m_tr] if batch_key else None,
        )
        if m == model and est.gene_coefficients is not None:
            coefs.append(est.gene_coefficients)
        rows.append(_rows(est.predict_frame(x_te, surv_times), truth, g_te, m, 0, 0))
    predictions = pd.concat(rows, ignore_index=True)
    fit_s = time.perf_counter() - t0
    metrics = compare(
        predictions,
        primary=model,
        baseline=baseline,
        horizon=out_tr.horizon,
        surv_times=surv_times,
        n_boot=n_boot,
        seed=seed,
        progress=progress,
    )
    meta = _meta(
        "external",
        seed,
        train=cohort_name(train),
        test=cohort_name(test),
        outcome=outcome_name,
        model=model,
        baseline=baseline,
        n_boot=n_boot,
        horizon=out_tr.horizon,
        time_unit=out_tr.time_unit,
        scale=scale,
        n_train=int(m_tr.sum()),
        n_test=int(m_te.sum()),
        n_genes=int(train.n_vars),
        fit_seconds=round(fit_s, 2),
        genes=genes.summary(),
        surv_times=None if surv_times is None else surv_times.tolist(),
    )
    return EvaluationResult(
        model, baseline, out_te, predictions, metrics, meta, gene_importance(coefs)
    )
