"""Pool several cohorts into one for training on more than one study.

Genes are aligned (collapsed, shared genes kept); the outcome is resolved in each cohort from its
own column names and written to uniform ``event`` / ``time`` columns (times converted to the first
cohort's unit); ``obs["cohort"]`` records the study (the batch for ComBat); patient ids are
prefixed with the cohort name so that ids from two studies never collide.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from metastat.data.cohort import PATIENT_ID, cohort_name
from metastat.data.genes import GeneReport, align_cohorts
from metastat.data.outcomes import DAYS_PER, resolve_outcome
from metastat.errors import InputError


def pool_cohorts(
    cohorts: list[ad.AnnData], outcome: str, report: GeneReport | None = None
) -> ad.AnnData:
    """One cohort of all samples with outcome ``outcome`` and ``obs['cohort']`` as batch."""
    if len(cohorts) < 2:
        raise InputError("pooling needs at least two cohorts.")
    aligned = align_cohorts(cohorts, "symbol", report)
    first = resolve_outcome(aligned[0], outcome)
    parts = []
    for adata in aligned:
        name = cohort_name(adata)
        r = resolve_outcome(adata, outcome)
        if r.kind != first.kind:
            raise InputError(
                f"outcome {outcome!r} is {r.kind} in {name!r} but {first.kind} in "
                f"{cohort_name(aligned[0])!r}."
            )
        scale = 1.0
        if r.time_unit and first.time_unit:
            scale = DAYS_PER[r.time_unit] / DAYS_PER[first.time_unit]
        obs = pd.DataFrame(
            {
                "cohort": name,
                "event": r.event,
                "time": r.time * scale if r.time is not None else np.nan,
                PATIENT_ID: [f"{name}:{p}" for p in adata.obs[PATIENT_ID].astype(str)],
            },
            index=[f"{name}:{s}" for s in adata.obs_names],
        )
        if first.kind == "binary":
            obs["status"] = r.binary
        parts.append(ad.AnnData(np.asarray(adata.X, dtype=float), obs=obs, var=adata.var.copy()))
    pooled = ad.concat(parts, join="inner", merge="first")
    spec = {
        "kind": first.kind,
        "event": "status" if first.kind == "binary" else "event",
        "time": "time",
        "time_unit": first.time_unit,
        "horizon": first.horizon,
    }
    pooled.uns["metastat"] = {
        "name": "+".join(cohort_name(c) for c in aligned),
        "outcomes": {outcome: {k: v for k, v in spec.items() if v is not None}},
        "gene_key": "symbol",
    }
    return pooled
