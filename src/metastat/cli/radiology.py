"""``metastat radiology``: CT / MRI lesion -> IBSI radiomics table (one image or a cohort)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from metastat.errors import InputError

app = typer.Typer(no_args_is_help=True, help="CT / MRI lesions -> IBSI radiomics (mirp).")


@app.callback()
def _group() -> None:
    """CT / MRI lesions -> IBSI radiomics (mirp)."""


@app.command()
def features(
    image: Path | None = typer.Argument(
        None, help="DICOM file, DICOM series folder or NIfTI image (or use --manifest)."
    ),
    mask: Path | None = typer.Option(
        None, "--mask", help="Lesion mask: NIfTI, DICOM-SEG or RTSTRUCT."
    ),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        help="Cohort table with columns patient_id, image, mask (+ label, series).",
    ),
    out: Path = typer.Option(..., "--out", help="Feature table (.csv, .tsv or .parquet)."),
    patient_id: str | None = typer.Option(
        None, "--patient-id", help="Row id for a single image (default: the image name)."
    ),
    label: str | None = typer.Option(
        None, "--label", help="Mask label value, SEG segment number or RTSTRUCT ROI name."
    ),
    series: str | None = typer.Option(
        None, "--series", help="SeriesInstanceUID when the folder holds several series."
    ),
    spacing: float = typer.Option(1.0, "--spacing", help="Isotropic voxel size (mm)."),
    modality: str = typer.Option("auto", "--modality", help="ct, mr or auto (DICOM header)."),
    bin_width: float = typer.Option(25.0, "--bin-width", help="CT: bin width in HU."),
    bins: int = typer.Option(32, "--bins", help="MRI / other: number of grey-level bins."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """IBSI radiomics (shape, first-order, texture) of one lesion or of a cohort manifest."""
    import importlib.util

    for pkg in ("mirp", "SimpleITK", "pydicom", "nibabel"):
        if importlib.util.find_spec(pkg) is None:
            raise InputError(
                f"this command needs the package {pkg!r}: pip install 'metastat[radiology]'"
            )
    from metastat.radiology.cohort import cohort_features, write_feature_table
    from metastat.radiology.features import RadiomicsSettings, lesion_features

    if modality not in ("auto", "ct", "mr"):
        raise InputError(f"--modality must be ct, mr or auto, not {modality!r}.")
    settings = RadiomicsSettings(spacing, modality, bin_width, bins)
    if (image is None) == (manifest is None):
        raise InputError("give either IMAGE --mask MASK, or --manifest TABLE.")
    failures: dict[str, str] = {}
    if manifest is not None:
        result = cohort_features(manifest, out, settings)
        table, failures = result.table, result.failures
    else:
        if image is None or mask is None:
            raise InputError("a single image needs its lesion: --mask MASK.")
        feats = lesion_features(image, mask, label=label, series=series, settings=settings)
        pid = patient_id or image.name.split(".")[0]
        table = feats.to_frame(pid).T.rename_axis("patient_id")
        write_feature_table(table, out)
    summary = {
        "out": str(out),
        "n_patients": len(table),
        "n_features": table.shape[1],
        "failures": failures,
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"wrote {table.shape[1]} features of {len(table)} patient(s) to {out}")
        for pid, why in failures.items():
            typer.echo(f"skipped {pid}: {why}", err=True)
