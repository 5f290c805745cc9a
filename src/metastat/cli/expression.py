"""``metastat expression``: fit, evaluate, predict and report expression risk models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from metastat.cli._cohort_options import cohort_from_options
from metastat.errors import InputError

#: kept in step with metastat.expression.model.MODELS (a test checks), so --help needs no import
MODEL_NAMES = (
    "baseline_coxnet, baseline_logistic, coxnet, ensemble, ensemble_logistic, gbs, library, "
    "library_logistic, logistic, rsf, signature"
)

app = typer.Typer(no_args_is_help=True, help="Gene expression -> recurrence / metastasis.")

DatasetOpt = typer.Option(None, "--dataset", "-d", help="Built-in dataset name or .h5ad path.")
DatasetsOpt = typer.Option(
    None,
    "--dataset",
    "-d",
    help="Built-in dataset name or .h5ad path; "
    "repeat to pool several cohorts (ComBat inside each training fold).",
)
ExprOpt = typer.Option(
    None, "--expression", help="Expression table (samples x genes) or GEO series matrix."
)
ClinOpt = typer.Option(None, "--clinical", help="Clinical table (sample id in first column).")
GenesOpt = typer.Option(None, "--genes", help="Probe annotation table (probe -> symbol/Entrez).")
OutcomeOpt = typer.Option(
    ...,
    "--outcome",
    "-o",
    help="Outcome name (recurrence, dfs, rfs, dmfs, os; or the name you give with --event-col).",
)
EventOpt = typer.Option(None, "--event-col", help="User data: event column (1 = event).")
TimeOpt = typer.Option(None, "--time-col", help="User data: follow-up time column.")
UnitOpt = typer.Option(None, "--time-unit", help="User data: days, months or years.")
PatientOpt = typer.Option(None, "--patient-col", help="User data: patient id column.")
ModelOpt = typer.Option(
    None,
    "--model",
    "-m",
    help=f"One of: {MODEL_NAMES}. Default: the pre-registered default (docs/expression.md).",
)
RepOpt = typer.Option(
    None,
    "--representation",
    help="'rank' (single-sample: each profile by its own within-sample ranks, any platform) or "
    "'standardise' (genes standardised). Default: the pre-registered default.",
)
GeneKeyOpt = typer.Option(
    "symbol", "--gene-key", help="Match genes by 'symbol', 'entrez' or 'probe' id."
)
SeedOpt = typer.Option(0, "--seed", help="Random seed (recorded in outputs).")
HorizonOpt = typer.Option(None, "--horizon", help="Horizon for binary metrics, e.g. 5y, 36m.")
SigOpt = typer.Option(
    None,
    "--signature",
    help="Shipped signature name (see `metastat expression signatures`) or gene-set file "
    "(.gmt / .csv); repeatable.",
)


def _signatures(names: list[str] | None) -> tuple:
    from metastat.expression.signatures import published_signature, read_gene_sets

    out = []
    for n in names or []:
        out.extend(read_gene_sets(n) if Path(n).exists() else [published_signature(n)])
    return tuple(out)


def _fmt(est: Any) -> str:
    """'estimate [low, high]', or the estimate alone where there is no CI (p-values)."""
    import math

    if est is None:
        return ""
    if not (math.isfinite(est.ci_low) and math.isfinite(est.ci_high)):
        return f"{est.estimate:.3g}" if math.isfinite(est.estimate) else "n/a"
    return str(est)


def _print_metrics(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 110))
    m = result.metrics
    table = Table(
        title=f"{result.meta.get('kind')} | outcome {result.outcome.name} | "
        f"{result.model} vs {result.baseline} (95% patient-bootstrap CI)"
    )
    for col in ("metric", result.model, result.baseline, "difference"):
        table.add_column(col)
    for k, v in m.items():
        if k.startswith(("baseline_", "delta_")):
            continue
        b, d = m.get(f"baseline_{k}"), m.get(f"delta_{k}")
        table.add_row(k, _fmt(v), _fmt(b), _fmt(d))
    console.print(table)
    for w in result.meta.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}", markup=True, highlight=False)


def _validate_choice(value: str | None, choices: tuple[str, ...], option: str) -> None:
    from metastat.errors import did_you_mean

    if value is not None and value not in choices:
        raise InputError(
            f"{option} must be one of {list(choices)}, not {value!r}.{did_you_mean(value, choices)}"
        )


def _test_cohort(
    test: str,
    *,
    outcome: str,
    clinical: Path | None,
    genes: Path | None,
    event_col: str | None,
    time_col: str | None,
    time_unit: str | None,
    patient_col: str | None,
) -> Any:
    """The external test cohort: a built-in name, an .h5ad, or user tables."""
    from metastat.data.registry import DATASETS

    if test in DATASETS or Path(test).suffix == ".h5ad" or not Path(test).exists():
        return cohort_from_options(test, None)
    if clinical is None:
        raise InputError(
            f"--test {test}: a test expression table needs its clinical table: add "
            "--test-clinical FILE (outcome columns default to the training ones)."
        )
    if event_col is None:
        raise InputError(
            f"--test {test}: name the test cohort's event column with --test-event-col "
            "(or --event-col for both cohorts)."
        )
    return cohort_from_options(
        None,
        Path(test),
        clinical=clinical,
        genes=genes,
        patient_col=patient_col,
        outcome=outcome,
        event_col=event_col,
        time_col=time_col,
        time_unit=time_unit,
    )


@app.command()
def evaluate(
    outcome: str = OutcomeOpt,
    dataset: list[str] | None = DatasetsOpt,
    expression: Path | None = ExprOpt,
    clinical: Path | None = ClinOpt,
    genes: Path | None = GenesOpt,
    event_col: str | None = EventOpt,
    time_col: str | None = TimeOpt,
    time_unit: str | None = UnitOpt,
    patient_col: str | None = PatientOpt,
    test: str | None = typer.Option(
        None,
        "--test",
        help="External test cohort: built-in dataset name, .h5ad, or an expression table "
        "(with --test-clinical); train on --dataset / --expression, test here.",
    ),
    test_clinical: Path | None = typer.Option(
        None, "--test-clinical", help="Clinical table of a --test expression table."
    ),
    test_genes: Path | None = typer.Option(
        None, "--test-genes", help="Probe annotation of a --test table (default: --genes)."
    ),
    test_event_col: str | None = typer.Option(
        None, "--test-event-col", help="Event column of --test (default: --event-col)."
    ),
    test_time_col: str | None = typer.Option(
        None, "--test-time-col", help="Time column of --test (default: --time-col)."
    ),
    test_time_unit: str | None = typer.Option(
        None, "--test-time-unit", help="Time unit of --test (default: --time-unit)."
    ),
    test_patient_col: str | None = typer.Option(
        None, "--test-patient-col", help="Patient column of --test (default: --patient-col)."
    ),
    test_outcome: str | None = typer.Option(
        None,
        "--test-outcome",
        help="Outcome name in a built-in --test cohort when it differs (e.g. dfs -> rfs).",
    ),
    keep_duplicates: bool = typer.Option(
        False,
        "--keep-duplicates",
        help="Keep test samples that duplicate training samples (same id or r > 0.99).",
    ),
    cv: int = typer.Option(5, "--cv", help="Folds of patient-grouped stratified CV."),
    repeats: int = typer.Option(1, "--repeats", help="CV repeats."),
    model: str | None = ModelOpt,
    representation: str | None = RepOpt,
    baseline: str | None = typer.Option(
        None,
        "--baseline",
        help="Comparator (default: tuned elastic-net Cox for time-to-event outcomes, tuned "
        "elastic-net logistic for binary ones, on standardised genes).",
    ),
    covariates: str | None = typer.Option(
        None,
        "--covariates",
        help="Also cross-validate clinical-only and clinical + expression (late fusion) on the "
        "same split procedure: 'auto' (the dataset's declared covariates) or names, "
        "comma-separated (e.g. age,er,grade,node).",
    ),
    gene_key: str = GeneKeyOpt,
    seed: int = SeedOpt,
    horizon: str | None = HorizonOpt,
    signature: list[str] | None = SigOpt,
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap replicates for CIs."),
    out: Path | None = typer.Option(None, "--out", help="Write predictions, metrics, run info."),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object: metric -> {estimate, ci_low, ci_high}."
    ),
) -> None:
    """Cross-validate (or externally validate) a model side by side with the tuned comparator."""
    from metastat.data.genes import GENE_KEYS
    from metastat.data.pool import pool_cohorts
    from metastat.expression.defaults import REPRESENTATIONS
    from metastat.expression.validate import cross_validate, external_validate

    _validate_choice(gene_key, GENE_KEYS, "--gene-key")
    _validate_choice(representation, REPRESENTATIONS, "--representation")
    batch_key = None
    if dataset and len(dataset) > 1:
        cohort = pool_cohorts([cohort_from_options(d, None) for d in dataset], outcome)
        batch_key = "cohort"
    else:
        cohort = cohort_from_options(
            dataset[0] if dataset else None,
            expression,
            clinical=clinical,
            genes=genes,
            patient_col=patient_col,
            outcome=outcome,
            event_col=event_col,
            time_col=time_col,
            time_unit=time_unit,
        )
    sigs = _signatures(signature)
    common: dict[str, Any] = {
        "model": model,
        "baseline": baseline,
        "seed": seed,
        "horizon": horizon,
        "n_boot": n_boot,
        "signatures": sigs,
        "batch_key": batch_key,
        "representation": representation,
        "gene_key": gene_key,
        "progress": True,  # bars on stderr; --json keeps stdout clean, --quiet silences
    }
    if test is not None:
        test_cohort = _test_cohort(
            test,
            outcome=outcome,
            clinical=test_clinical,
            genes=test_genes or genes,
            event_col=test_event_col or event_col,
            time_col=test_time_col or time_col,
            time_unit=test_time_unit or time_unit,
            patient_col=test_patient_col or patient_col,
        )
        result = external_validate(
            cohort,
            test_cohort,
            outcome,
            test_outcome=test_outcome,
            keep_duplicates=keep_duplicates,
            **common,
        )
    else:
        result = cross_validate(cohort, outcome, n_splits=cv, n_repeats=repeats, **common)
    clinical_result = None
    if covariates is not None:
        from metastat.expression.covariates import clinical_comparison

        clinical_result = clinical_comparison(
            cohort, outcome, covariates, n_splits=cv, seed=seed, n_boot=n_boot, horizon=horizon
        )
    if out is not None:
        result.save(out)
        if clinical_result is not None:
            clinical_result.save(out / "clinical")
    if as_json:
        payload = result.to_json()
        if clinical_result is not None:
            payload["clinical_comparison"] = clinical_result.to_json()  # type: ignore[assignment]
        typer.echo(json.dumps(payload))
    else:
        _print_metrics(result)
        if clinical_result is not None:
            typer.echo(clinical_result.table().to_string())
        if out is not None:
            typer.echo(f"wrote {out}/predictions.csv, metrics.json, run.json")


@app.command()
def select(
    outcome: str = OutcomeOpt,
    dataset: list[str] = typer.Option(
        ..., "--dataset", "-d", help="Training cohorts (repeat); the protocol sees only these."
    ),
    seed: int = SeedOpt,
    gene_key: str = GeneKeyOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the scores and the choice as JSON."),
) -> None:
    """Choose model family and representation by the pre-registered protocol: leave-one-cohort-out
    over the given training cohorts (5-fold CV for one cohort); never a test cohort."""
    from metastat.expression.select import mean_scores, select_default

    sel = select_default(
        [cohort_from_options(d, None) for d in dataset], outcome, seed=seed, gene_key=gene_key
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "metric": sel.metric,
                    "scores": {f"{f}/{r}": row.to_dict() for (f, r), row in sel.scores.iterrows()},
                    "choice": {
                        "family": sel.choice.family,
                        "representation": sel.choice.representation,
                        "reason": sel.choice.reason,
                    },
                }
            )
        )
        return
    table = sel.scores.assign(mean=mean_scores(sel)).sort_values("mean", ascending=False)
    typer.echo(f"held-out {sel.metric} (rows: family / representation)")
    typer.echo(table.round(3).to_string())
    typer.echo(f"choice: {sel.choice.family} / {sel.choice.representation} ({sel.choice.reason})")


@app.command()
def signatures() -> None:
    """List the shipped signature library (names usable with --signature)."""
    from metastat.expression.signatures import library_version, signature_table

    table = signature_table()
    typer.echo(f"signature library {library_version()}")
    for name, row in table.iterrows():
        typer.echo(f"{name:24s} {row['n_genes']:3d} genes  {row['description']}")
        typer.echo(f"{'':24s} {row['citation']}")


@app.command()
def fit(
    outcome: str = OutcomeOpt,
    out: Path = typer.Option(..., "--out", help="Model directory."),
    dataset: str | None = DatasetOpt,
    expression: Path | None = ExprOpt,
    clinical: Path | None = ClinOpt,
    genes: Path | None = GenesOpt,
    event_col: str | None = EventOpt,
    time_col: str | None = TimeOpt,
    time_unit: str | None = UnitOpt,
    patient_col: str | None = PatientOpt,
    model: str | None = ModelOpt,
    representation: str | None = RepOpt,
    gene_key: str = GeneKeyOpt,
    seed: int = SeedOpt,
    horizon: str | None = HorizonOpt,
    signature: list[str] | None = SigOpt,
    scale: str = typer.Option(
        "train",
        "--scale",
        help="'train': standardise profiles with the training statistics (single profiles); "
        "'batch': standardise each scored set by its own statistics (other platforms, >= 10).",
    ),
) -> None:
    """Fit a model on a whole cohort and save it (JSON manifest + safetensors, no pickle)."""
    from metastat.data.genes import GENE_KEYS
    from metastat.expression.defaults import REPRESENTATIONS
    from metastat.expression.persist import save_model
    from metastat.expression.validate import fit_cohort

    _validate_choice(scale, ("train", "batch"), "--scale")
    _validate_choice(gene_key, GENE_KEYS, "--gene-key")
    _validate_choice(representation, REPRESENTATIONS, "--representation")
    cohort = cohort_from_options(
        dataset,
        expression,
        clinical=clinical,
        genes=genes,
        patient_col=patient_col,
        outcome=outcome,
        event_col=event_col,
        time_col=time_col,
        time_unit=time_unit,
    )
    est, info = fit_cohort(
        cohort,
        outcome,
        model=model,
        horizon=horizon,
        seed=seed,
        scale=scale,
        representation=representation,
        gene_key=gene_key,
        signatures=_signatures(signature),
    )
    save_model(est, out, info=info)
    typer.echo(
        f"saved {est.model} model ({est.preprocessor_.representation}, "
        f"{len(est.preprocessor_.genes_)} genes) to {out}"
    )


@app.command()
def predict(
    model_dir: Path = typer.Option(..., "--model", "-m", help="Saved model directory."),
    dataset: str | None = DatasetOpt,
    expression: Path | None = ExprOpt,
    genes: Path | None = GenesOpt,
    gene_key: str | None = typer.Option(
        None,
        "--gene-key",
        help="Match genes by 'symbol', 'entrez' or 'probe' (default: the model's).",
    ),
    top_genes: int = typer.Option(10, "--top-genes", help="Top contributing genes per sample."),
    out: Path | None = typer.Option(None, "--out", help="Write predictions CSV here."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score profiles: risk score, risk group, probability (at the horizon), top genes."""
    import numpy as np

    from metastat.data.cohort import expression_frame
    from metastat.data.genes import GENE_KEYS, collapse_genes
    from metastat.expression.checks import gene_id_warning
    from metastat.expression.persist import load_model

    est, manifest = load_model(model_dir)
    key = gene_key or manifest.get("gene_key", "symbol")
    _validate_choice(key, GENE_KEYS, "--gene-key")
    raw = cohort_from_options(dataset, expression, genes=genes)
    cohort = collapse_genes(raw, key)  # type: ignore[arg-type]
    x = expression_frame(cohort)
    missing = est.preprocessor_.missing_genes(x)
    warnings = est.preprocessor_.check_scale(x)
    id_warning = gene_id_warning(raw.var_names, "profile table", key)
    if id_warning and missing:
        warnings.insert(0, id_warning)
    frame = est.predict_frame(x)
    frame["risk_group"] = np.where(frame["high_risk"], "high", "low")
    explanations = est.explain_genes(x, top=top_genes)
    frame["top_genes"] = [";".join(g["gene"] for g in e["genes"]) for e in explanations]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index_label="sample_id")
    payload = {
        "model": manifest["model"],
        "outcome": manifest.get("outcome"),
        "horizon": manifest.get("horizon"),
        "time_unit": manifest.get("time_unit"),
        "representation": est.preprocessor_.representation,
        "platform_independent": est.platform_independent,
        "interval_method": est.interval_method,
        "genes_imputed": len(missing),
        "genes_used": len(est.preprocessor_.genes_in_),
        "warnings": warnings,
        "predictions": [
            {
                "sample_id": str(sid),
                "risk": float(r.risk),
                "probability": float(r.prob),
                "probability_ci": [
                    None if np.isnan(r.probability_ci_low) else float(r.probability_ci_low),
                    None if np.isnan(r.probability_ci_high) else float(r.probability_ci_high),
                ],
                "risk_group": r.risk_group,
                "risk_percentile": int(r.risk_percentile),
                "top_genes": e["genes"],
            }
            for (sid, r), e in zip(frame.iterrows(), explanations, strict=True)
        ],
    }
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)
    if missing:
        typer.echo(
            f"note: {len(missing)} of {len(est.preprocessor_.genes_in_)} model genes were "
            f"missing and imputed with the training median: {missing[:10]}",
            err=True,
        )
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
    elif out is None:
        typer.echo(frame.drop(columns=["top_genes"]).to_string())


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="Output folder of `evaluate --out`."),
    out: Path | None = typer.Option(None, "--out", help="HTML file (default RUN_DIR/report.html)."),
    pdf: bool = typer.Option(False, "--pdf", help="Also write a PDF of the figures."),
) -> None:
    """HTML report with ROC, Kaplan-Meier, calibration, decision-curve and importance plots."""
    from metastat.report.html import write_report

    if not (run_dir / "predictions.csv").exists():
        raise InputError(
            f"{run_dir}: no predictions.csv; run `metastat expression evaluate "
            "... --out RUN_DIR` first."
        )
    path = write_report(run_dir, out or run_dir / "report.html", pdf=pdf)
    typer.echo(f"wrote {path}")
