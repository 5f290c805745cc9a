"""Loading user cohorts from files: CSV / TSV / Parquet / h5ad / GEO series matrix.

User data works the same way as built-in cohorts: give the files and name the outcome columns.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad

from metastat.data.cohort import make_cohort
from metastat.data.genes import read_annotation
from metastat.data.geo import read_series_matrix
from metastat.data.outcomes import OutcomeSpec
from metastat.data.tables import read_table
from metastat.errors import InputError


def is_series_matrix(path: Path) -> bool:
    return "_series_matrix" in path.name


def read_h5ad(path: str | Path) -> ad.AnnData:
    """Read a cohort saved as h5ad, with a clear error for anything that is not one."""
    path = Path(path)
    try:
        adata = ad.read_h5ad(path)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: cannot be read as an h5ad cohort ({exc}).") from exc
    adata.uns.setdefault("metastat", {}).setdefault("name", path.stem)
    if "patient_id" not in adata.obs.columns:
        adata.obs["patient_id"] = adata.obs_names.astype(str)
    return adata


def load_cohort(
    expression: str | Path,
    *,
    clinical: str | Path | None = None,
    genes: str | Path | None = None,
    name: str | None = None,
    patient_col: str | None = None,
    outcome: str | None = None,
    event_col: str | None = None,
    time_col: str | None = None,
    time_unit: str | None = None,
    kind: str | None = None,
    horizon: float | None = None,
    transpose: bool = False,
) -> ad.AnnData:
    """Build a cohort from user files.

    ``expression`` is samples x genes (first column = sample id; ``transpose=True`` for genes x
    samples), or an h5ad, or a GEO ``*_series_matrix.txt[.gz]`` (probes x samples, with sample
    characteristics as the clinical table). ``outcome`` names the outcome declared by
    ``event_col`` [+ ``time_col``, ``time_unit``]: ``kind`` defaults to "survival" when a time
    column is given, else "binary".
    """
    path = Path(expression)
    name = name or path.name.split(".")[0]
    if path.suffix == ".h5ad":
        adata = read_h5ad(path)
    else:
        if is_series_matrix(path):
            expr, clin = read_series_matrix(path)
        else:
            expr = read_table(path)
            if transpose:
                expr = expr.T
            clin = None
        if clinical is not None:
            clin = read_table(clinical)
        ann = read_annotation(read_table(genes)) if genes is not None else None
        adata = make_cohort(expr, clin, name=name, genes=ann, patient_col=patient_col)
    if outcome is not None:
        if event_col is None:
            raise InputError(f"outcome {outcome!r} needs an event column (--event-col).")
        spec = OutcomeSpec(
            kind=kind or ("survival" if time_col else "binary"),  # type: ignore[arg-type]
            event=event_col,
            time=time_col,
            time_unit=time_unit,  # type: ignore[arg-type]
            horizon=horizon,
        )
        adata.uns["metastat"].setdefault("outcomes", {})[outcome] = spec.model_dump(
            exclude_none=True
        )
        from metastat.data.outcomes import resolve_outcome

        resolve_outcome(adata, outcome)  # validate columns and values now, not mid-run
    return adata
