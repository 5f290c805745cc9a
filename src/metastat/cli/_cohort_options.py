"""Shared CLI options that select a cohort: a built-in dataset or user files (imports are lazy so
that the CLI starts instantly)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from metastat.errors import InputError

if TYPE_CHECKING:
    import anndata as ad


def cohort_from_options(
    dataset: str | None,
    expression: Path | None,
    *,
    clinical: Path | None = None,
    genes: Path | None = None,
    patient_col: str | None = None,
    outcome: str | None = None,
    event_col: str | None = None,
    time_col: str | None = None,
    time_unit: str | None = None,
) -> ad.AnnData:
    """A built-in dataset by name, an .h5ad path, or user tables with declared outcome columns."""
    from metastat.data.io import load_cohort
    from metastat.data.registry import DATASETS, load_dataset

    if (dataset is None) == (expression is None):
        raise InputError("give exactly one of --dataset NAME or --expression FILE.")
    if dataset is not None:
        if dataset in DATASETS or not Path(dataset).exists():
            return load_dataset(dataset)
        expression = Path(dataset)
    assert expression is not None  # exactly one of dataset / expression was given
    return load_cohort(
        expression,
        clinical=clinical,
        genes=genes,
        patient_col=patient_col,  # type: ignore[arg-type]
        outcome=outcome if event_col else None,
        event_col=event_col,
        time_col=time_col,
        time_unit=time_unit,
    )
