"""``metastat fusion``: evaluate, fit and apply models fusing clinical, expression, histology."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from metastat.errors import InputError

app = typer.Typer(no_args_is_help=True, help="Fusion of expression, histology and clinical data.")

DatasetOpt = typer.Option(
    None,
    "--dataset",
    "-d",
    help="Built-in expression cohort (breast_nki, breast_vdx, gastric_yonsei ...), clinical table "
    "(colon_adjuvant, breast_gbsg2, tcga_cdr) or paired_benchmark.",
)
OutcomeOpt = typer.Option(
    ..., "--outcome", "-o", help="Outcome name (dmfs, recurrence, rfs, pfi ...)."
)
ClinOpt = typer.Option(None, "--clinical", help="User clinical table (patient id in first column).")
VarsOpt = typer.Option(None, "--variables", help="JSON list of typed clinical variables.")
ExprOpt = typer.Option(None, "--expression", help="Expression table (patients x genes).")
HistOpt = typer.Option(None, "--histology", help="Folder of tile-feature bags (.h5).")
EventOpt = typer.Option(None, "--event-col", help="User data: event column (1 = event).")
TimeOpt = typer.Option(None, "--time-col", help="User data: follow-up time column.")
HorizonOpt = typer.Option(None, "--horizon", help="Horizon for binary metrics, e.g. 5y, 36m.")
SeedOpt = typer.Option(0, "--seed", help="Random seed (recorded in outputs).")
DropOpt = typer.Option(None, "--drop", help="Modality removed at prediction time; repeatable.")
ModalityOpt = typer.Option(
    None,
    "--modality",
    help="Another registered modality as NAME=PATH, e.g. radiology=radiomics.csv; repeatable.",
)


def _data(
    dataset,
    outcome,
    horizon,
    clinical,
    variables,
    expression,
    histology,
    event_col,
    time_col,
    seed,
    others=None,
):
    from metastat.fusion.inputs import multimodal_from_options, parse_modality_files

    return multimodal_from_options(
        dataset,
        outcome,
        horizon=horizon,
        clinical=clinical,
        variables=variables,
        expression=expression,
        histology=histology,
        event_col=event_col,
        time_col=time_col,
        seed=seed,
        others=parse_modality_files(others),
    )


def _print(result, keys: tuple[str, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.meta['cohort']}: side by side on identical splits (95% CI)")
    table.add_column("model")
    for k in keys:
        table.add_column(k)
    wide = result.table(keys)
    for model, row in wide.iterrows():
        table.add_row(str(model), *[str(row.get(k, "")) for k in keys])
    Console().print(table)


@app.command()
def evaluate(
    outcome: str = OutcomeOpt,
    dataset: str | None = DatasetOpt,
    clinical: Path | None = ClinOpt,
    variables: Path | None = VarsOpt,
    expression: Path | None = ExprOpt,
    histology: Path | None = HistOpt,
    modality: list[str] | None = ModalityOpt,
    event_col: str | None = EventOpt,
    time_col: str | None = TimeOpt,
    model: list[str] | None = typer.Option(
        None, "--model", "-m", help="Model(s) to compare; default: every modality + fusions."
    ),
    drop: list[str] | None = DropOpt,
    generator: list[str] | None = typer.Option(
        None,
        "--generator",
        help="Also score with expression generated from histology (ridge, cvae); repeatable.",
    ),
    baseline: str | None = typer.Option(
        "clinical", "--baseline", help="Paired deltas of every model vs this one ('' for none)."
    ),
    cv: int = typer.Option(5, "--cv", help="Folds of patient-grouped stratified CV."),
    repeats: int = typer.Option(1, "--repeats", help="CV repeats."),
    seed: int = SeedOpt,
    horizon: str | None = HorizonOpt,
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap replicates for CIs."),
    out: Path | None = typer.Option(None, "--out", help="Write predictions, metrics, table."),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: model -> metric -> {estimate, ci_low, ci_high}."
    ),
) -> None:
    """Cross-validate single-modality and fused models side by side on the same splits."""
    from metastat.fusion.validate import primary_metric, side_by_side

    data = _data(
        dataset,
        outcome,
        horizon,
        clinical,
        variables,
        expression,
        histology,
        event_col,
        time_col,
        seed,
        modality,
    )
    models = list(model) if model else None
    if baseline and models is not None and baseline not in models:
        models.insert(0, baseline)
    if baseline and baseline not in (models or []) and baseline not in data.modalities:
        baseline = None
    result = side_by_side(
        data,
        models,
        n_splits=cv,
        n_repeats=repeats,
        seed=seed,
        n_boot=n_boot,
        drop=tuple(drop or ()),
        generators=tuple(generator or ()),
        baseline=baseline or None,
        progress=True,  # stderr: --json output stays clean; --quiet silences it
    )
    if out is not None:
        result.save(out)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    key = primary_metric(data)
    extra = ("td_auc", "brier_at_horizon") if key == "c_index" else ("brier", "balanced_accuracy")
    _print(result, (key, *extra))
    for m, d in result.deltas.items():
        for k, v in d.items():
            typer.echo(f"{m}: {k} = {v}")


@app.command()
def fit(
    outcome: str = OutcomeOpt,
    out: Path = typer.Option(..., "--out", help="Model directory."),
    dataset: str | None = DatasetOpt,
    clinical: Path | None = ClinOpt,
    variables: Path | None = VarsOpt,
    expression: Path | None = ExprOpt,
    histology: Path | None = HistOpt,
    modality: list[str] | None = ModalityOpt,
    event_col: str | None = EventOpt,
    time_col: str | None = TimeOpt,
    model: str = typer.Option(
        "late", "--model", "-m", help="late, concat, gated, kronecker or coattention."
    ),
    generator: bool = typer.Option(
        False,
        "--generator",
        help="Also fit a ridge generator of expression from histology, saved with the model; "
        "predict then fills in missing expression from slides (marked generated).",
    ),
    seed: int = SeedOpt,
    horizon: str | None = HorizonOpt,
) -> None:
    """Fit a fusion model on every patient and save it (JSON + safetensors, no pickle)."""
    from metastat.fusion.inputs import histology_encoder, parse_modality_files
    from metastat.fusion.persist import save_fusion
    from metastat.fusion.validate import UNIMODAL, build_model

    data = _data(
        dataset,
        outcome,
        horizon,
        clinical,
        variables,
        expression,
        histology,
        event_col,
        time_col,
        seed,
        modality,
    )
    if model in UNIMODAL:
        raise InputError(
            f"fit saves fusion models (late, concat, gated, kronecker, coattention), not {model!r}."
        )
    est = build_model(model, seed=seed).fit(data)
    info = {
        "training_cohort": data.name,
        "outcome": outcome,
        "kind": data.kind,
        "horizon": data.horizon,
        "n_train": len(data),
        "present": data.present.sum().astype(int).to_dict(),
        "seed": seed,
    }
    bag_folder = histology or parse_modality_files(modality).get("histology")
    if bag_folder is not None:  # checked against new patients' bags at prediction
        info["histology_encoder"] = histology_encoder(bag_folder)
    if generator:
        from metastat.fusion.generate import RidgeGenerator, save_ridge

        save_ridge(RidgeGenerator(seed=seed).fit_set(data), out / "generator")  # type: ignore[arg-type]
        info["generator"] = "generator"
    save_fusion(est, out, info=info)
    typer.echo(f"saved {model} fusion of {data.modalities} to {out}")


@app.command()
def predict(
    model_dir: Path = typer.Option(..., "--model", "-m", help="Saved fusion model directory."),
    dataset: str | None = DatasetOpt,
    clinical: Path | None = ClinOpt,
    expression: Path | None = ExprOpt,
    histology: Path | None = HistOpt,
    modality: list[str] | None = ModalityOpt,
    drop: list[str] | None = DropOpt,
    generate: bool = typer.Option(
        True,
        "--generate/--no-generate",
        help="Fill in missing expression from histology when the model has a generator.",
    ),
    out: Path | None = typer.Option(None, "--out", help="Write predictions CSV here."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score patients with whatever modalities each has; every row says which modalities it used
    and whether its expression was generated from the slide."""
    import numpy as np

    from metastat.fusion.inputs import (
        histology_encoder,
        multimodal_from_options,
        parse_modality_files,
        prediction_set,
    )
    from metastat.fusion.persist import load_fusion
    from metastat.fusion.predict import clinical_variables, predict_new

    model, manifest = load_fusion(model_dir)
    others = parse_modality_files(modality)
    if "histology" in others and manifest.get("histology_encoder"):
        histology_encoder(others["histology"], manifest["histology_encoder"])
    if dataset is not None:
        data = multimodal_from_options(dataset, manifest["outcome"], others=others)
    else:
        variables = clinical_variables(model)
        if clinical is not None and variables is None:
            raise InputError("this model has no clinical branch; do not pass --clinical.")
        data = prediction_set(
            variables=variables,
            clinical=clinical,
            expression=expression,
            histology=histology,
            kind=manifest["kind"],
            horizon=manifest["horizon"],
            others=others,
            histology_encoder=manifest.get("histology_encoder"),
        )
    if drop:
        data = data.without(*drop)
    frame = predict_new(model, manifest, model_dir, data, generate=generate)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index_label="patient_id")
    if as_json:
        payload = {
            "outcome": manifest.get("outcome"),
            "horizon": manifest.get("horizon"),
            "predictions": [
                {
                    "patient_id": str(pid),
                    "risk": float(r.risk),
                    "probability": None if not np.isfinite(r.prob) else float(r.prob),
                    "risk_group": r.risk_group,
                    "modalities": r.modalities,
                    "generated": r.generated,
                    "expression_generated": bool(r.expression_generated),
                }
                for pid, r in frame.iterrows()
            ],
        }
        typer.echo(json.dumps(payload, indent=2))
    elif out is None:
        typer.echo(frame.to_string())


@app.command()
def generate(
    dataset: str = typer.Option(
        "paired_benchmark", "--dataset", "-d", help="Cohort with histology + expression."
    ),
    outcome: str = typer.Option(
        "recurrence", "--outcome", "-o", help="Outcome (for stratified folds)."
    ),
    expression: Path | None = ExprOpt,
    histology: Path | None = HistOpt,
    generator: list[str] | None = typer.Option(
        None, "--generator", help="ridge, cvae (repeatable)."
    ),
    cv: int = typer.Option(5, "--cv", help="Folds (patient-grouped)."),
    seed: int = SeedOpt,
    out: Path | None = typer.Option(None, "--out", help="Write per-gene correlations CSV here."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON summary."),
) -> None:
    """Held-out per-gene correlation of expression generated from tile features."""
    from metastat.fusion.generate import generation_cv

    data = _data(dataset, outcome, None, None, None, expression, histology, None, None, seed)
    corr = generation_cv(data, tuple(generator or ("ridge", "cvae")), n_splits=cv, seed=seed)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        corr.to_csv(out, index_label="gene")
    summary = {
        g: {
            "median": float(corr[g].median()),
            "q25": float(corr[g].quantile(0.25)),
            "q75": float(corr[g].quantile(0.75)),
            "fraction_above_0.5": float((corr[g] > 0.5).mean()),
            "n_genes": int(corr[g].notna().sum()),
        }
        for g in corr.columns
    }
    typer.echo(json.dumps(summary, indent=None if as_json else 2))
