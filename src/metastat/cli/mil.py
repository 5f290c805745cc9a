"""``metastat mil``: train, evaluate, predict and explain attention-MIL models on feature bags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from metastat.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(no_args_is_help=True, help="Attention MIL over tile-feature bags.")

ConfigOpt = typer.Option(None, "--config", "-c", help="Run config (.toml / .json / .yaml).")
ManifestOpt = typer.Option(
    None,
    "--manifest",
    help="CSV with slide_id, patient_id, the outcome column(s) and optionally path "
    "(a feature file, relative to the manifest's folder); without path, "
    "<slide_id>.h5 is looked up in --features.",
)
FeaturesOpt = typer.Option(None, "--features", help="Folder of <slide_id>.h5 feature files.")
OutcomesOpt = typer.Option(None, "--outcomes", help="Optional patient outcome CSV (patient_id).")
ModelOpt = typer.Option(
    None, "--model", "-m", help="A registered MIL model (default abmil); see `metastat mil models`."
)
TaskOpt = typer.Option(None, "--task", help="binary, multiclass or survival.")
LabelOpt = typer.Option(None, "--label-col", help="Label column (binary / multiclass).")
TimeOpt = typer.Option(None, "--time-col", help="Follow-up time column (survival).")
EventOpt = typer.Option(None, "--event-col", help="Event column, 1 = event (survival).")
SeedsOpt = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 0,1,2.")
EpochsOpt = typer.Option(None, "--epochs", help="Maximum epochs.")
FoldsOpt = typer.Option(None, "--folds", help="Number of CV folds.")
OutOpt = typer.Option(..., "--out", "-o", help="Output folder.")


def _config(config: Path | None, **kw: object):
    from metastat.mil.config import load_config

    seeds = kw.pop("seeds", None)
    if seeds is not None:
        try:
            kw["seeds"] = [int(s) for s in str(seeds).split(",") if s.strip()]
        except ValueError as exc:
            raise InputError(f"--seeds must be comma-separated integers, got {seeds!r}") from exc
    kw["features_dir"] = kw.pop("features", None)
    kw["n_splits"] = kw.pop("folds", None)
    kw["label"] = kw.pop("label_col", None)
    kw["time"] = kw.pop("time_col", None)
    kw["event"] = kw.pop("event_col", None)
    return load_config(config, **kw)


def _evaluate(cfg, outcomes: Path | None, out: Path) -> Path:
    from metastat.mil.cohort import load_cohort
    from metastat.mil.report import save_run, write_report
    from metastat.mil.train import cross_validate, run_meta

    data = load_cohort(cfg, outcomes)
    pred, summary = cross_validate(cfg, data, progress=True)
    save_run(out, pred, summary, run_meta(cfg, data))
    report = write_report(out)
    for name, vals in summary["mean_sd"].items():
        shown = {
            k: f"{v['mean']:.3f} ± {v['sd']:.3f}"
            for k, v in vals.items()
            if k in ("auc", "c_index", "brier", "accuracy") or k.endswith("_auc")
        }
        typer.echo(f"{name}: {shown}")
    typer.echo(f"report: {report}")
    return out


@app.command()
def evaluate(
    config: Path = ConfigOpt,
    manifest: Path = ManifestOpt,
    features: Path = FeaturesOpt,
    outcomes: Path = OutcomesOpt,
    model: str = ModelOpt,
    task: str = TaskOpt,
    label_col: str = LabelOpt,
    time_col: str = TimeOpt,
    event_col: str = EventOpt,
    seeds: str = SeedsOpt,
    epochs: int = EpochsOpt,
    folds: int = FoldsOpt,
    out: Path = OutOpt,
) -> None:
    """Patient-grouped k-fold CV of a model vs its baseline over several seeds, with a report."""
    cfg = _config(
        config,
        manifest=manifest,
        features=features,
        model=model,
        task=task,
        label_col=label_col,
        time_col=time_col,
        event_col=event_col,
        seeds=seeds,
        epochs=epochs,
        folds=folds,
    )
    _evaluate(cfg, outcomes, out)


@app.command()
def train(
    config: Path = ConfigOpt,
    manifest: Path = ManifestOpt,
    features: Path = FeaturesOpt,
    outcomes: Path = OutcomesOpt,
    model: str = ModelOpt,
    task: str = TaskOpt,
    label_col: str = LabelOpt,
    time_col: str = TimeOpt,
    event_col: str = EventOpt,
    seeds: str = SeedsOpt,
    epochs: int = EpochsOpt,
    folds: int = FoldsOpt,
    out: Path = OutOpt,
    cv: bool = typer.Option(
        False,
        "--cv/--no-cv",
        help="Also cross-validate first (as `mil evaluate`, into OUT/cv with a report).",
    ),
) -> None:
    """Train the final model on every bag and save it in OUT/model (no CV unless --cv).

    A patient-grouped validation split is held out for early stopping and calibration.

    Saved as safetensors + JSON. For honest metrics use `metastat mil evaluate` (or --cv).
    """
    from metastat.mil.checkpoint import save_checkpoint
    from metastat.mil.cohort import load_cohort
    from metastat.mil.train import train_final

    cfg = _config(
        config,
        manifest=manifest,
        features=features,
        model=model,
        task=task,
        label_col=label_col,
        time_col=time_col,
        event_col=event_col,
        seeds=seeds,
        epochs=epochs,
        folds=folds,
    )
    if cv:
        _evaluate(cfg, outcomes, out / "cv")
    data = load_cohort(cfg, outcomes)
    res = train_final(cfg, data, progress=True)
    encoders = {e for e in getattr(data.source, "encoders", {}).values() if e}
    path = save_checkpoint(
        out / "model",
        name=res.name,
        model=res.model,
        spec=res.spec,
        head=res.head,
        encoder=next(iter(encoders)) if len(encoders) == 1 else None,
        extra={
            "seed": res.seed,
            "best_epoch": res.best_epoch,
            "history": res.history,
            "n_units": len(data),
            "config": cfg.model_dump(mode="json"),
        },
    )
    typer.echo(f"model: {path} ({res.name}, best epoch {res.best_epoch}, {res.seconds:.1f} s)")


def _bags(manifest: Path | None, features: Path | None, bags: list[Path] | None) -> pd.DataFrame:
    import pandas as pd

    from metastat.mil.bags import read_manifest

    if manifest is not None:
        return read_manifest(manifest, features)
    paths = list(bags or [])
    if features is not None:
        from metastat.slides.store import list_bags

        paths += list_bags(features, include_external=True)
    if not paths:
        raise InputError("nothing to score: pass --manifest, --features DIR or bag files")
    # ids come from the bags themselves (each slide is its own patient)
    return pd.DataFrame({"slide_id": None, "patient_id": None, "path": [str(p) for p in paths]})


@app.command()
def predict(
    model: Path = typer.Option(..., "--model", "-m", help="Checkpoint folder (train's OUT/model)."),
    bags: list[Path] = typer.Argument(None, help="Feature .h5 files (metastat, CLAM, TRIDENT)."),
    manifest: Path = ManifestOpt,
    features: Path = FeaturesOpt,
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output CSV (slide level); patient-level rows go to <out>_patients.csv.",
    ),
    aggregate: str = typer.Option(
        None,
        help="Slide -> patient: pooled (model on all the patient's tiles; default for "
        "patient-unit models), mean or max of slide predictions.",
    ),
) -> None:
    """Slide -> calibrated probability / risk; patient -> aggregated probability."""
    from metastat.atomic import atomic_write
    from metastat.mil.bags import check_features
    from metastat.mil.checkpoint import load_checkpoint
    from metastat.mil.infer import aggregate_patients, outputs, predict_logits
    from metastat.slides.store import load_bag

    ckpt = load_checkpoint(model)
    if aggregate is None:
        unit = ckpt.meta.get("config", {}).get("unit", "patient")
        aggregate = "pooled" if unit == "patient" else "mean"
    if aggregate not in {"pooled", "mean", "max"}:
        raise InputError(f"--aggregate must be pooled, mean or max, got {aggregate!r}")
    table = _bags(manifest, features, bags)
    feats = []
    for i, path in enumerate(table["path"]):
        bag = load_bag(path)
        if table.loc[i, "slide_id"] is None:
            table.loc[i, ["slide_id", "patient_id"]] = bag.slide_id
        sid = str(table.loc[i, "slide_id"])
        x = check_features(bag.features, sid, str(path))
        ckpt.check_bag(sid, x.shape[1], bag.encoder, str(path))
        feats.append(x)
    res = outputs(predict_logits(ckpt.model, feats), ckpt.head)
    res.insert(0, "slide_id", table["slide_id"].to_numpy())
    res.insert(1, "patient_id", table["patient_id"].to_numpy())
    res["n_tiles"] = [len(f) for f in feats]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, res.to_csv(index=False))
    pat = aggregate_patients(res, aggregate, model=ckpt.model, head=ckpt.head, bags=feats)
    pat_path = out.with_name(out.stem + "_patients.csv")
    atomic_write(pat_path, pat.to_csv(index=False))
    typer.echo(res[["slide_id", "patient_id", "prob", "risk", "n_tiles"]].to_string(index=False))
    typer.echo(f"slides: {out}\npatients: {pat_path}")


@app.command()
def heatmap(
    model: Path = typer.Option(..., "--model", "-m", help="Checkpoint folder."),
    bag: Path = typer.Option(..., "--bag", help="Feature .h5 file of one slide."),
    slide: Path = typer.Option(None, "--slide", help="The slide image (thumbnail + tile crops)."),
    out: Path = OutOpt,
    method: str = typer.Option("attention", help="attention or attention_x_grad."),
    top_k: int = typer.Option(8, "--top-k", help="Top and bottom tiles exported as crops."),
) -> None:
    """Attention heatmap PNG (with colour bar), QuPath GeoJSON and top/bottom-k tiles."""
    from metastat.mil.checkpoint import load_checkpoint
    from metastat.mil.heatmap import Method, slide_heatmap
    from metastat.slides.store import load_bag

    if method not in {"attention", "attention_x_grad"}:
        raise InputError(f"--method must be attention or attention_x_grad, got {method!r}")
    ckpt = load_checkpoint(model)
    b = load_bag(bag)
    res = slide_heatmap(
        ckpt,
        slide_id=b.slide_id,
        features=b.features,
        coords=b.coords_px0,
        tile_size_px0=b.tile_size_px0,
        out_dir=out,
        slide_path=slide,
        method=cast(Method, method),  # checked above
        k=top_k,
        encoder=b.encoder,
        where=str(bag),
    )
    typer.echo(
        json.dumps(
            {
                "slide_id": res.slide_id,
                "prob": res.prob,
                "png": str(res.png),
                "geojson": str(res.geojson),
                "tiles": str(res.tiles_csv),
                "crops": len(res.crops),
                "seconds": round(res.seconds, 2),
            },
            indent=2,
        )
    )


@app.command()
def models() -> None:
    """The registered MIL models and their hyper-parameters (defaults in brackets)."""
    from metastat.mil.models import MODELS

    for name, entry in MODELS.items():
        params = ", ".join(f"{k} [{f.default}]" for k, f in entry.params.model_fields.items())
        typer.echo(f"{name}: {entry.description}\n    params: {params}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="Folder written by 'metastat mil evaluate'."),
    out: Path = typer.Option(None, "--out", "-o", help="HTML file (default RUN_DIR/report.html)."),
    heatmaps: list[Path] = typer.Option(None, "--heatmap", help="Heatmap PNGs to include."),
) -> None:
    """HTML report: metrics with CIs, ROC / KM / calibration, mean ± sd over seeds, heatmaps."""
    from metastat.mil.report import write_report

    typer.echo(f"report: {write_report(run_dir, out, heatmaps or None)}")


@app.command()
def planted(
    out: Path = OutOpt,
    held_out: str = typer.Option(
        "site:hgsc", "--held-out", help="site:hgsc, site:carcinoma_skin or spatial."
    ),
    stain: str = typer.Option("none", "--stain", help="none, macenko or reinhard embeddings."),
    patients: int = typer.Option(
        20, "--patients", min=4, help="Patients per side (3 slides each)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bag draw."),
) -> None:
    """Write a small labelled MIL cohort of real H&E tile embeddings (shipped with metastat):
    OUT/manifest.csv (training slides) and OUT/heldout.csv (slides from sources never seen in
    training), feature files in OUT/features. For trying the MIL commands; it validates the
    machinery, not lymph-node metastasis prediction."""
    from metastat.mil.planted import BagDesign, load_tiles, make_bags, split_tiles, write_cohort

    tiles = load_tiles()
    design = BagDesign(n_patients=patients, seed=seed)
    train_tiles, test_tiles = split_tiles(tiles, held_out)
    tiles.variant(stain)  # a clear error before anything is written
    written = {}
    for name, pool, prefix in (("manifest", train_tiles, "train"), ("heldout", test_tiles, "test")):
        bags = make_bags(tiles, pool, design, f"{held_out.replace(':', '_')}-{prefix}")
        written[name] = write_cohort(tiles, bags, out, stain, name)
    typer.echo(json.dumps({k: str(v) for k, v in written.items()}, indent=2))
