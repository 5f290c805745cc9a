"""The cohort data model: one :class:`anndata.AnnData` per cohort.

Conventions (all aligned by id, never by position):

* ``X``: samples x features (genes or probes), float, values as loaded (log/scale recorded in
  ``uns["metastat"]["value_scale"]``), NaN for missing values.
* ``obs``: one row per sample with clinical variables and outcomes; ``obs["patient_id"]`` groups
  samples of one patient (several samples per patient are allowed).
* ``var``: one row per feature; ``var["symbol"]`` and ``var["entrez"]`` where known.
* ``uns["metastat"]``: ``name``, ``outcomes`` (outcome specs), ``provenance``, ``citation``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from metastat.data.tables import check_unique_ids, to_numeric_matrix
from metastat.errors import InputError, did_you_mean

PATIENT_ID = "patient_id"


def make_cohort(
    expression: pd.DataFrame,
    clinical: pd.DataFrame | None = None,
    *,
    name: str,
    genes: pd.DataFrame | None = None,
    patient_col: str | None = None,
    outcomes: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> ad.AnnData:
    """Build a validated cohort from an expression table (samples x features) and a clinical table.

    Clinical rows are matched to expression rows by sample id; samples missing from the clinical
    table are an error (a silent misalignment would be worse). ``genes`` annotates features by id.
    """
    where = f"cohort {name!r}"
    check_unique_ids(expression.index, f"{where} expression table")
    values = to_numeric_matrix(expression, f"{where} expression table")
    if values.shape[0] == 0:
        raise InputError(f"{where}: the expression table has no samples.")
    obs = pd.DataFrame(index=pd.Index(expression.index.astype(str), name="sample_id"))
    if clinical is not None:
        clinical = clinical.copy()
        clinical.index = clinical.index.astype(str)
        check_unique_ids(clinical.index, f"{where} clinical table")
        missing = obs.index.difference(clinical.index)
        if len(missing):
            raise InputError(
                f"{where}: {len(missing)} expression sample(s) have no clinical row, e.g. "
                f"{list(missing[:5])}; sample ids must match between the two tables."
            )
        obs = clinical.loc[obs.index].copy()
        obs.index.name = "sample_id"
    if patient_col is not None:
        if patient_col not in obs.columns:
            raise InputError(
                f"{where}: no patient column {patient_col!r}."
                f"{did_you_mean(patient_col, list(obs.columns))}"
            )
        obs[PATIENT_ID] = obs[patient_col].astype(str)
    elif PATIENT_ID not in obs.columns:
        obs[PATIENT_ID] = obs.index.astype(str)
    var = pd.DataFrame(index=pd.Index([str(c) for c in expression.columns], name="feature_id"))
    if genes is not None:
        ann = genes[~genes.index.duplicated()].reindex(var.index.unique())
        var = var.join(ann, how="left") if var.index.is_unique else _annotate_dup(var, ann)
    for col in ("symbol", "entrez"):
        if col not in var.columns:
            var[col] = var.index if col == "symbol" else pd.NA
    var["symbol"] = var["symbol"].astype("string")
    var["entrez"] = pd.to_numeric(var["entrez"], errors="coerce").astype("Int64")
    obs = _arrow_safe(obs)
    with warnings.catch_warnings():  # duplicated gene names are kept until genes are collapsed
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        adata = ad.AnnData(X=values, obs=obs, var=_arrow_safe(var))
    adata.uns["metastat"] = {"name": name, "outcomes": dict(outcomes or {}), **dict(meta or {})}
    return adata


def _annotate_dup(var: pd.DataFrame, ann: pd.DataFrame) -> pd.DataFrame:
    out = ann.reindex(var.index)
    out.index = var.index
    return out


def _arrow_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Make object columns writeable to h5ad: numbers stay numbers, the rest become strings."""
    frame = frame.copy()
    for col in frame.columns:
        if frame[col].dtype == object:
            num = pd.to_numeric(frame[col], errors="coerce")
            filled = frame[col].notna() & (frame[col].astype(str).str.strip() != "")
            if filled.any() and num[filled].notna().all():
                frame[col] = num
            else:
                frame[col] = frame[col].where(filled).astype("string")
    return frame


def cohort_name(adata: ad.AnnData) -> str:
    """The cohort's name (``uns['metastat']['name']``)."""
    return str(adata.uns.get("metastat", {}).get("name", "cohort"))


def expression_frame(adata: ad.AnnData) -> pd.DataFrame:
    """``X`` as a samples x features DataFrame (sample ids as index, feature ids as columns)."""
    return pd.DataFrame(
        np.asarray(adata.X, dtype=np.float64), index=adata.obs_names, columns=adata.var_names
    )


def patients(adata: ad.AnnData) -> np.ndarray:
    """Patient id of every sample (the grouping used by every split)."""
    return adata.obs[PATIENT_ID].astype(str).to_numpy()
