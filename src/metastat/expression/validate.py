"""Cross-validation and external validation of expression models, side by side with a baseline.

Every model of a run sees the same patient-grouped splits; preprocessing and tuning happen inside
each training fold; results are a long predictions table (one row per sample, model, repeat) and
metrics with patient-bootstrap CIs from :mod:`metastat.evaluate`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from metastat.atomic import atomic_write
from metastat.core.provenance import run_provenance
from metastat.data.cohort import cohort_name, expression_frame, patients
from metastat.data.genes import GeneReport, align_cohorts, collapse_genes
from metastat.data.outcomes import DAYS_PER, Outcome, resolve_outcome
from metastat.data.target import make_target
from metastat.errors import ValidationError
from metastat.evaluate.bootstrap import Estimate
from metastat.evaluate.predictions import prediction_frame
from metastat.evaluate.splits import patient_kfold
from metastat.evaluate.summary import compare, metrics_json
from metastat.expression import checks
from metastat.expression.defaults import DEFAULT, model_for
from metastat.expression.model import RiskModel
from metastat.expression.overlap import find_duplicates
from metastat.expression.signatures import Signature, library_version
from metastat.progress import progress as progress_bar
from metastat.progress import status


def default_baseline(outcome: Outcome) -> str:
    """The tuned comparator: elastic-net Cox with (l1_ratio, alpha) by inner patient-grouped CV
    for time-to-event outcomes; tuned elastic-net logistic for binary ones."""
    return "logistic" if outcome.kind == "binary" else "coxnet"


def default_model(outcome: Outcome) -> str:
    """The pre-registered default model family (:mod:`metastat.expression.defaults`), with a
    Cox head when follow-up times exist and a logistic head otherwise."""
    return model_for(DEFAULT.family, survival=outcome.time is not None)


def default_representation() -> str:
    """The pre-registered default representation (``rank`` = single-sample)."""
    return DEFAULT.representation


#: the comparator's representation: genes standardised (per cohort in external validation)
COMPARATOR_REPRESENTATION = "standardise"


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


def _usable(adata: ad.AnnData, outcome: Outcome, notes: list[str]) -> np.ndarray:
    """Samples usable for ``outcome``; dropped ones are reported by id in ``notes``."""
    cohort = cohort_name(adata)
    mask = outcome.usable_mask
    if outcome.kind == "binary":
        mask = mask & (outcome.survival_mask | (outcome.time is None))
    else:
        keep, msgs = checks.dropped_samples(
            adata.obs_names.to_numpy(), outcome.time, outcome.event, f"cohort {cohort!r}"
        )
        mask = mask & keep
        notes += checks.emit(msgs)
    if mask.sum() < 10:
        raise ValidationError(
            f"cohort {cohort!r}: only {int(mask.sum())} samples have outcome {outcome.name!r}."
        )
    return mask


def _events(outcome: Outcome, mask: np.ndarray) -> int:
    """Events among ``mask``: recurrences for binary outcomes, events for time-to-event ones."""
    values = outcome.binary if outcome.kind == "binary" else outcome.event
    return int(np.nansum(values[mask]))


def _meta(kind: str, seed: int, **extra: Any) -> dict[str, Any]:
    return run_provenance(
        kind=kind,
        seed=seed,
        signature_library=library_version(),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    )


def _estimator(
    name: str, outcome: Outcome, representation: str, seed: int, **params: Any
) -> RiskModel:
    return RiskModel(
        name,
        task=outcome.kind,
        horizon=outcome.horizon,
        representation=representation,  # type: ignore[arg-type]
        seed=seed,
        **params,
    )


def _selected(est: RiskModel) -> int:
    """Variables the learner estimated a non-zero weight for (signatures for an ensemble)."""
    learner = getattr(est.learner_, "head_", est.learner_)
    coef = getattr(learner, "coef_", None)
    return 0 if coef is None else int((np.abs(np.asarray(coef)) > 1e-12).sum())


def fit_cohort(
    adata: ad.AnnData,
    outcome_name: str,
    *,
    model: str | None = None,
    horizon: str | float | None = None,
    seed: int = 0,
    representation: str | None = None,
    gene_key: str = "symbol",
    **params: Any,
) -> tuple[RiskModel, dict[str, Any]]:
    """Fit ``model`` on every usable sample of a cohort (for saving and serving).

    Returns the fitted model and the training facts stored in its manifest. ``params`` go to
    :class:`RiskModel` (e.g. ``scale``, ``n_genes``, ``signatures``).
    """
    notes: list[str] = []
    adata = collapse_genes(adata, gene_key)  # type: ignore[arg-type]
    outcome = resolve_outcome(adata, outcome_name, horizon=horizon)
    mask = _usable(adata, outcome, notes)
    representation = representation or default_representation()
    est = _estimator(model or default_model(outcome), outcome, representation, seed, **params)
    est.fit(expression_frame(adata)[mask], _target(outcome, mask), patients(adata)[mask])
    events = _events(outcome, mask)
    notes += checks.emit(
        checks.events_per_variable(events, _selected(est), f"cohort {cohort_name(adata)!r}")
    )
    info = {
        "training_cohort": cohort_name(adata),
        "outcome": outcome_name,
        "outcome_description": _describe(adata, outcome_name),
        "gene_key": gene_key,
        "n_train": int(mask.sum()),
        "events": events,
        "time_unit": outcome.time_unit,
        "signature_library": library_version(),
        "warnings": notes,
    }
    return est, info


def _describe(adata: ad.AnnData, outcome_name: str) -> str:
    spec = adata.uns.get("metastat", {}).get("outcomes", {}).get(outcome_name, {})
    desc = spec.get("description") if isinstance(spec, dict) else getattr(spec, "description", "")
    return str(desc or outcome_name)


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


def _fit_predict(
    job: tuple[str, Any],
    x: pd.DataFrame,
    y: np.ndarray,
    patient_ids: np.ndarray,
    ctx: dict[str, Any],
) -> tuple[pd.DataFrame, pd.Series | None, int]:
    """Fit one model on one training fold and predict its test fold (one CV job)."""
    m, split = job
    name = ctx["baseline"] if m != ctx["model"] else m
    batch = ctx["batch"]
    b_tr, b_te = (None, None) if batch is None else (batch[split.train], batch[split.test])
    rep = ctx["representation"] if m == ctx["model"] else ctx["baseline_representation"]
    est = _estimator(name, ctx["outcome"], rep, ctx["seed"], **ctx["params"])
    est.fit(x.iloc[split.train], y[split.train], patient_ids[split.train], batch=b_tr)
    pred = est.predict_frame(x.iloc[split.test], ctx["surv_times"], batch=b_te, strict=False)
    rows = _rows(
        pred, ctx["truth"].iloc[split.test], patient_ids[split.test], m, split.repeat, split.fold
    )
    return rows, est.gene_coefficients, _selected(est)


def _run_jobs(jobs: list, fn: Any, desc: str, n_jobs: int, show: bool = True) -> list:
    """Run CV jobs, on ``n_jobs`` processes when > 1 (results in job order)."""
    if n_jobs == 1 or len(jobs) == 1:
        return [fn(j) for j in (progress_bar(jobs, desc, unit="fit") if show else jobs)]
    from joblib import Parallel, delayed

    status(f"{desc}: {len(jobs)} fits on {n_jobs} processes")
    return list(Parallel(n_jobs=n_jobs)(delayed(fn)(j) for j in jobs))


def _n_jobs(n_jobs: int | None) -> int:
    import os

    return max(1, min(n_jobs or (os.cpu_count() or 1), 4))


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
    representation: str | None = None,
    baseline_representation: str | None = None,
    gene_key: str = "symbol",
    n_jobs: int | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Patient-grouped stratified (repeated) k-fold CV of ``model`` and ``baseline``.

    ``batch_key`` names an ``obs`` column of study labels (e.g. ``"cohort"`` of a pooled cohort):
    ComBat is then fitted on each training fold and applied to its test fold (``standardise``
    representation only; ``rank`` needs no batch correction).
    """
    from functools import partial

    name = cohort_name(adata)
    notes: list[str] = []
    genes = GeneReport()
    adata = collapse_genes(adata, gene_key, genes)  # type: ignore[arg-type]
    notes += checks.emit(_id_warnings([adata], gene_key))
    outcome = resolve_outcome(adata, outcome_name, horizon=horizon)
    mask = _usable(adata, outcome, notes)
    model = model or default_model(outcome)
    baseline = baseline or default_baseline(outcome)
    representation = representation or default_representation()
    label = _comparator_label(model, baseline)
    x = expression_frame(adata)[mask]
    patient_ids = patients(adata)[mask]
    y = _target(outcome, mask)
    labels = (
        np.nan_to_num(outcome.binary[mask]) if outcome.kind == "binary" else outcome.event[mask]
    )
    splits = patient_kfold(patient_ids, labels, n_splits=n_splits, n_repeats=n_repeats, seed=seed)
    notes += checks.emit(
        checks.few_events(
            [int(np.nansum(labels[s.test])) for s in splits if s.repeat == 0],
            f"cohort {name!r}, {n_splits}-fold CV",
        )
    )
    ctx = {
        "batch": adata.obs[batch_key].astype(str).to_numpy()[mask] if batch_key else None,
        "outcome": outcome,
        "representation": representation,
        "baseline_representation": baseline_representation or COMPARATOR_REPRESENTATION,
        "model": model,
        "baseline": baseline,
        "seed": seed,
        "surv_times": _surv_times(outcome, mask),
        "truth": _truth(outcome, mask),
        "params": {"signatures": signatures, "n_interval": 0},
    }
    t0 = time.perf_counter()
    same = (model, representation) == (baseline, ctx["baseline_representation"])
    jobs = [(m, s) for s in splits for m in ((model,) if same else (model, label))]
    fn = partial(_fit_predict, x=x, y=y, patient_ids=patient_ids, ctx=ctx)
    results = _run_jobs(jobs, fn, f"CV {name}/{outcome_name}", _n_jobs(n_jobs), progress)
    if same:  # the default is the comparator: one fit serves both rows
        jobs = [j for job in jobs for j in (job, (label, job[1]))]
        results = [r for res in results for r in (res, (res[0].assign(model=label), *res[1:]))]
    predictions = pd.concat([r[0] for r in results], ignore_index=True)
    mine = [r for r, (m, _) in zip(results, jobs, strict=True) if m == model]
    coefs = [r[1] for r in mine if r[1] is not None]
    selected = max((r[2] for r in mine), default=0)
    notes += checks.emit(
        checks.events_per_variable(
            int(np.nansum(labels)) * (n_splits - 1) // n_splits, selected, f"{model} on {name!r}"
        )
    )
    fit_s = time.perf_counter() - t0
    metrics = _compare(
        predictions, model, label, outcome, ctx["surv_times"], n_boot, seed, progress
    )
    notes += checks.emit(_metric_notes(metrics, outcome))
    meta = _meta(
        "cv",
        seed,
        cohort=name,
        outcome=outcome_name,
        outcome_description=_describe(adata, outcome_name),
        model=model,
        baseline=label,
        comparator_model=baseline,
        representation=representation,
        baseline_representation=ctx["baseline_representation"],
        gene_key=gene_key,
        n_splits=n_splits,
        n_repeats=n_repeats,
        n_boot=n_boot,
        horizon=outcome.horizon,
        time_unit=outcome.time_unit,
        n_samples=int(mask.sum()),
        n_patients=len(np.unique(patient_ids)),
        n_events=_events(outcome, mask),
        fit_seconds=round(fit_s, 2),
        genes=genes.summary(),
        surv_times=None if ctx["surv_times"] is None else ctx["surv_times"].tolist(),
        warnings=notes,
    )
    return EvaluationResult(
        model, label, outcome, predictions, metrics, meta, gene_importance(coefs)
    )


def _compare(
    predictions: pd.DataFrame,
    model: str,
    label: str,
    outcome: Outcome,
    surv_times: np.ndarray | None,
    n_boot: int,
    seed: int,
    progress: bool,
) -> dict[str, Estimate]:
    """The model's metrics, the comparator's and their paired differences, with bootstrap CIs."""
    status(f"bootstrap CIs ({n_boot} patient resamples)")
    return compare(
        predictions,
        primary=model,
        baseline=label,
        horizon=outcome.horizon,
        surv_times=surv_times,
        n_boot=n_boot,
        seed=seed,
        progress=progress,
    )


def _comparator_label(model: str, baseline: str) -> str:
    """The comparator's name in the predictions table (distinct from the model's)."""
    return baseline if baseline != model else f"{baseline}_comparator"


def _id_warnings(cohorts: list[ad.AnnData], gene_key: str) -> list[str]:
    """Gene ids (after mapping by ``gene_key``) that look like probes / accessions."""
    out = []
    for c in cohorts:
        w = checks.gene_id_warning(c.var_names, f"cohort {cohort_name(c)!r}", gene_key)
        out += [w] if w else []
    return out


def _metric_notes(metrics: dict[str, Estimate], outcome: Outcome) -> list[str]:
    """Say why a metric that should exist could not be computed."""
    out = []
    if outcome.horizon is not None and outcome.time is not None:
        td = metrics.get("td_auc")
        if td is None or not np.isfinite(td.estimate):
            out.append(
                f"time-dependent AUC at the horizon {outcome.horizon:g} {outcome.time_unit} "
                "could not be computed: the horizon lies outside the test follow-up (no event "
                "before it, or nobody still at risk after it); choose a horizon inside the "
                "follow-up with --horizon."
            )
    return out


def _rows(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    patient_ids: np.ndarray,
    model: str,
    repeat: int,
    fold: int,
) -> pd.DataFrame:
    """Validated rows of the predictions table for one model on one test fold."""
    return prediction_frame(
        pred,
        truth[["event", "time", "binary"]],
        sample_id=pred.index,
        patient_id=patient_ids,
        model=model,
        repeat=repeat,
        fold=fold,
    )


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
    representation: str | None = None,
    baseline_representation: str | None = None,
    gene_key: str = "symbol",
    test_outcome: str | None = None,
    keep_duplicates: bool = False,
    n_jobs: int | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Train on one cohort, test on another (genes aligned).

    With the ``standardise`` representation each cohort is standardised by its own statistics when
    ``scale='batch'`` (per-cohort standardisation); ``rank`` scores every test profile alone.
    Test samples duplicating training samples (same id, or profiles correlating > 0.99) are
    reported and excluded unless ``keep_duplicates``. With ``batch_key``, the training cohort is a
    pool of studies harmonised by ComBat.
    """
    notes: list[str] = []
    genes = GeneReport()
    train, test = align_cohorts([train, test], gene_key, genes)  # type: ignore[arg-type]
    notes += checks.emit(_id_warnings([train], gene_key))
    status(f"genes: {genes.summary()}".replace("\n", "; "))
    out_tr = resolve_outcome(train, outcome_name, horizon=horizon)
    out_te = resolve_outcome(test, test_outcome or outcome_name, horizon=horizon)
    if out_tr.kind != out_te.kind:
        raise ValidationError(
            f"outcome {outcome_name!r} is {out_tr.kind} in the training cohort "
            f"{cohort_name(train)!r} but {out_te.kind} in the test cohort {cohort_name(test)!r}; "
            "test on the same kind of outcome (or give --test-time-col / --test-event-col)."
        )
    if out_tr.time_unit and out_te.time_unit and out_tr.time_unit != out_te.time_unit:
        scale_t = DAYS_PER[out_te.time_unit] / DAYS_PER[out_tr.time_unit]
    else:
        scale_t = 1.0
    if out_te.horizon is not None and out_tr.horizon is not None and horizon is None:
        out_te = resolve_outcome(
            test, test_outcome or outcome_name, horizon=out_tr.horizon / scale_t
        )
    m_tr, m_te = _usable(train, out_tr, notes), _usable(test, out_te, notes)
    model = model or default_model(out_tr)
    baseline = baseline or default_baseline(out_tr)
    representation = representation or default_representation()
    x_tr, x_te = expression_frame(train)[m_tr], expression_frame(test)[m_te]
    g_tr, g_te = patients(train)[m_tr], patients(test)[m_te]
    dups = find_duplicates(x_tr, x_te, g_tr, g_te)
    if len(dups):
        ids = ", ".join(dups["sample_id"].head(8))
        notes += checks.emit(
            [
                f"{len(dups)} test sample(s) of {cohort_name(test)!r} duplicate training samples "
                f"(same id or profile r > 0.99), e.g. {ids}; "
                + ("kept (--keep-duplicates)." if keep_duplicates else "excluded from the metrics.")
            ]
        )
        if not keep_duplicates:
            drop = x_te.index.isin(dups["sample_id"])
            if drop.all():
                raise ValidationError(
                    f"every test sample of {cohort_name(test)!r} duplicates a training sample "
                    f"(e.g. {ids}); external validation needs disjoint patients."
                )
            keep_rows = np.flatnonzero(m_te)[~drop]
            m_te = np.zeros_like(m_te)
            m_te[keep_rows] = True
            x_te, g_te = expression_frame(test)[m_te], patients(test)[m_te]
    events_te = _events(out_te, m_te)
    notes += checks.emit(checks.few_events([events_te], f"test cohort {cohort_name(test)!r}"))
    y_tr = _target(out_tr, m_tr)
    truth = _truth(out_te, m_te, scale_t)
    surv_times = _surv_times(out_tr, m_tr)
    batch = train.obs[batch_key].astype(str).to_numpy()[m_tr] if batch_key else None
    t0 = time.perf_counter()

    label = _comparator_label(model, baseline)
    jobs = {
        model: (model, representation),
        label: (baseline, baseline_representation or COMPARATOR_REPRESENTATION),
    }

    def one(m: str) -> tuple[pd.DataFrame, pd.Series | None, int]:
        name, rep = jobs[m]
        est = _estimator(name, out_tr, rep, seed, scale=scale, signatures=signatures, n_interval=0)
        est.fit(x_tr, y_tr, g_tr, batch=batch)
        rows = _rows(est.predict_frame(x_te, surv_times, strict=False), truth, g_te, m, 0, 0)
        return rows, est.gene_coefficients, _selected(est)

    # the default is the comparator: one fit serves both rows
    models = (model,) if jobs[model] == jobs[label] else (model, label)
    results = [
        one(m)
        for m in (progress_bar(models, f"train {cohort_name(train)}") if progress else models)
    ]
    if len(results) == 1:
        results.append((results[0][0].assign(model=label), *results[0][1:]))
    predictions = pd.concat([r[0] for r in results], ignore_index=True)
    coefs = [results[0][1]] if results[0][1] is not None else []
    notes += checks.emit(
        checks.events_per_variable(
            _events(out_tr, m_tr), results[0][2], f"{model} on {cohort_name(train)!r}"
        )
    )
    fit_s = time.perf_counter() - t0
    metrics = _compare(predictions, model, label, out_tr, surv_times, n_boot, seed, progress)
    notes += checks.emit(_metric_notes(metrics, out_tr))
    meta = _meta(
        "external",
        seed,
        train=cohort_name(train),
        test=cohort_name(test),
        outcome=outcome_name,
        outcome_description=_describe(train, outcome_name),
        model=model,
        baseline=label,
        comparator_model=baseline,
        representation=representation,
        baseline_representation=jobs[label][1],
        gene_key=gene_key,
        n_boot=n_boot,
        horizon=out_tr.horizon,
        time_unit=out_tr.time_unit,
        scale=scale,
        n_train=int(m_tr.sum()),
        n_test=int(m_te.sum()),
        n_events=events_te,
        n_train_events=_events(out_tr, m_tr),
        n_genes=int(train.n_vars),
        duplicates_excluded=0 if keep_duplicates else len(dups),
        fit_seconds=round(fit_s, 2),
        genes=genes.summary(),
        surv_times=None if surv_times is None else surv_times.tolist(),
        warnings=notes,
    )
    return EvaluationResult(
        model, label, out_te, predictions, metrics, meta, gene_importance(coefs)
    )
