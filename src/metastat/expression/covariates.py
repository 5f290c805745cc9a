"""Does expression add to the clinical covariates? Clinical-only, expression-only and clinical +
expression (late fusion) cross-validated side by side, through the fusion package (not a copy):
:func:`metastat.fusion.validate.side_by_side` with the clinical model as the reference."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anndata as ad

from metastat.data.cohort import cohort_name
from metastat.errors import InputError, did_you_mean

if TYPE_CHECKING:
    from metastat.fusion.validate import FusionResult


def covariate_variables(adata: ad.AnnData, covariates: str) -> list:
    """The declared clinical variables of a cohort: all (``'auto'``) or the named ones."""
    from metastat.clinical.datasets import clinical_variables

    declared = clinical_variables(cohort_name(adata))
    if covariates.strip() == "auto":
        return declared
    by_name = {v.name: v for v in declared}
    wanted = [c.strip() for c in covariates.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in by_name]
    if unknown:
        raise InputError(
            f"--covariates: {unknown} are not declared for {cohort_name(adata)!r}; declared: "
            f"{sorted(by_name)}.{did_you_mean(unknown[0], sorted(by_name))}"
        )
    return [by_name[c] for c in wanted]


def clinical_comparison(
    adata: ad.AnnData,
    outcome: str,
    covariates: str,
    *,
    n_splits: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
    horizon: str | float | None = None,
) -> FusionResult:
    """Clinical-only vs expression vs clinical + expression on identical patient-grouped splits,
    with paired differences against clinical-only."""
    from metastat.fusion.modalities import from_cohort
    from metastat.fusion.validate import side_by_side

    data = from_cohort(
        adata, outcome, horizon=horizon, variables=covariate_variables(adata, covariates)
    )
    return side_by_side(
        data,
        ["clinical", "expression", "late"],
        n_splits=n_splits,
        seed=seed,
        n_boot=n_boot,
        baseline="clinical",
        progress=False,
    )
