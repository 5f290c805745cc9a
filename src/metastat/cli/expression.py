"""``metastat expression``: fit, evaluate, predict and report expression risk models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from metastat.cli._cohort_options import cohort_from_options
from metastat.data.cohort import expression_frame
from metastat.data.genes import collapse_genes
from metastat.errors import InputError
from metastat.expression.model import MODELS

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
    None, "--model", "-m", help=f"One of {sorted(MODELS)}; default: signature ensemble."
)
SeedOpt = typer.Option(0, "--seed", help="Random seed (recorded in outputs).")
HorizonOpt = typer.Option(None, "--horizon", help="Horizon for binary metrics, e.g. 5y, 36m.")
SigOpt = typer.Option(
    None,
    "--signature",
    help="Published signature name (gene70, gene76) or gene-set file (.gmt / .csv); repeatable.",
)


def _signatures(names: list[str] | None) -> tuple:
    from metastat.expression.signatures import published_signature, read_gene_sets

    out = []
    for n in names or []:
        out.extend(read_gene_sets(n) if Path(n).exists() else [published_signature(n)])
    return tuple(out)


def _print_metrics(result, console: Console) -> None:
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
        table.add_row(k, str(v), str(b) if b else "", str(d) if d else "")
    console.print(table)


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
        help="External test cohort: built-in "
        "dataset name or .h5ad path (train on --dataset, test here).",
    ),
    cv: int = typer.Option(5, "--cv", help="Folds of patient-grouped stratified CV."),
    repeats: int = typer.Option(1, "--repeats", help="CV repeats."),
    model: str | None = ModelOpt,
    baseline: str | None = typer.Option(
        None,
        "--baseline",
        help="Baseline model (default: L2 logistic for binary, CoxNet for time-to-event).",
    ),
    seed: int = SeedOpt,
    horizon: str | None = HorizonOpt,
    signature: list[str] | None = SigOpt,
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap replicates for CIs."),
    out: Path | None = typer.Option(None, "--out", help="Write predictions, metrics, run info."),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object: metric -> {estimate, ci_low, ci_high}."
    ),
) -> None:
    """Cross-validate (or externally validate) a model side by side with a plain baseline."""
    from metastat.data.pool import pool_cohorts
    from metastat.expression.validate import cross_validate, external_validate

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
    if test is not None:
        test_cohort = cohort_from_options(test, None)
        result = external_validate(
            cohort,
            test_cohort,
            outcome,
            model=model,
            baseline=baseline,
            seed=seed,
            horizon=horizon,
            n_boot=n_boot,
            signatures=sigs,
            batch_key=batch_key,
            progress=not as_json,
        )
    else:
        result = cross_validate(
            cohort,
            outcome,
            model=model,
            baseline=baseline,
            n_splits=cv,
            n_repeats=repeats,
            seed=seed,
            horizon=horizon,
            n_boot=n_boot,
            signatures=sigs,
            batch_key=batch_key,
            progress=not as_json,
        )
    if out is not None:
        result.save(out)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
    else:
        console = Console(width=max(Console().width, 110))
        _print_metrics(result, console)
        if out is not None:
            console.print(f"wrote {out}/predictions.csv, metrics.json, run.json")


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
    from metastat.expression.persist import save_model
    from metastat.expression.validate import fit_cohort

    if scale not in ("train", "batch"):
        raise InputError(f"--scale must be 'train' or 'batch', not {scale!r}.")
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
        signatures=_signatures(signature),
    )
    save_model(est, out, info=info)
    typer.echo(f"saved {est.model} model ({len(est.preprocessor_.genes_)} genes) to {out}")


@app.command()
def predict(
    model_dir: Path = typer.Option(..., "--model", "-m", help="Saved model directory."),
    dataset: str | None = DatasetOpt,
    expression: Path | None = ExprOpt,
    genes: Path | None = GenesOpt,
    top_genes: int = typer.Option(10, "--top-genes", help="Top contributing genes per sample."),
    out: Path | None = typer.Option(None, "--out", help="Write predictions CSV here."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score profiles: risk score, risk group, probability (at the horizon), top genes."""
    from metastat.expression.persist import load_model

    est, manifest = load_model(model_dir)
    cohort = collapse_genes(cohort_from_options(dataset, expression, genes=genes), "symbol")
    x = expression_frame(cohort)
    missing = est.preprocessor_.missing_genes(x)
    warnings = est.preprocessor_.check_scale(x)
    frame = est.predict_frame(x)
    frame["risk_group"] = np.where(frame["high_risk"], "high", "low")
    explanations = est.explain(x, top=top_genes)
    frame["top_genes"] = [";".join(g["gene"] for g in e["genes"]) for e in explanations]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index_label="sample_id")
    payload = {
        "model": manifest["model"],
        "outcome": manifest.get("outcome"),
        "horizon": manifest.get("horizon"),
        "time_unit": manifest.get("time_unit"),
        "genes_imputed": len(missing),
        "genes_used": len(est.preprocessor_.genes_in_),
        "warnings": warnings,
        "predictions": [
            {
                "sample_id": str(sid),
                "risk": float(r.risk),
                "probability": float(r.prob),
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
