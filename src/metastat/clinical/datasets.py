"""Typed clinical variables of the real cohorts, and the clinical-only recurrence tables.

``CLINICAL_VARIABLES[name]`` maps each built-in expression cohort with clinical data, and each
clinical-only table, onto :class:`~metastat.clinical.encoder.Variable` s (original column names,
parsed by kind). :func:`load_clinical_table` returns a clinical-only table as an AnnData with no
genes, so outcomes resolve exactly as for expression cohorts (:func:`resolve_outcome`).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from metastat.clinical.encoder import Variable
from metastat.data.cohort import PATIENT_ID, _arrow_safe
from metastat.data.outcomes import OutcomeSpec, TimeUnit
from metastat.data.tables import read_table
from metastat.errors import UnknownNameError, did_you_mean


def _v(name: str, column: str, kind: str, **kw: object) -> Variable:
    return Variable(name=name, column=column, kind=kind, **kw)  # type: ignore[arg-type]


CLINICAL_VARIABLES: dict[str, list[Variable]] = {
    "breast_nki": [
        _v("age", "age", "numeric"),
        _v("er", "er", "status"),
        _v("grade", "grade", "grade"),
        _v("node", "node", "status"),
        _v("size_cm", "size", "numeric"),
    ],
    "breast_vdx": [  # node-negative by design: node carries no information
        _v("age", "age", "numeric"),
        _v("er", "er", "status"),
        _v("grade", "grade", "grade"),
        _v("size_cm", "size", "numeric"),
    ],
    "gastric_yonsei": [
        _v("age", "Age", "numeric"),
        _v("sex", "Sex", "sex"),
        _v("stage", "AJCC.stage", "stage"),
        _v("m", "M.stage", "m"),
    ],
    "colon_adjuvant": [
        _v("age", "age", "numeric"),
        _v("sex", "sex", "sex", recode={"1": "male", "0": "female"}),
        _v("t", "extent", "t"),
        _v("nodes", "nodes", "numeric", log1p=True),
        _v("node4", "node4", "status"),
        _v("grade", "differ", "grade"),
        _v("obstruct", "obstruct", "status"),
        _v("perfor", "perfor", "status"),
        _v("adhere", "adhere", "status"),
        _v("treatment", "rx", "categorical"),
    ],
    "breast_gbsg2": [
        _v("age", "age", "numeric"),
        _v("postmenopausal", "menopause", "status", recode={"2": "yes", "1": "no"}),
        _v("tamoxifen", "hormone", "status", recode={"2": "yes", "1": "no"}),
        _v("size_mm", "size", "numeric"),
        _v("grade", "grade", "grade"),
        _v("nodes", "nodes", "numeric", log1p=True),
        _v("pr_fmol", "prog_recp", "numeric", log1p=True),
        _v("er_fmol", "estrg_recp", "numeric", log1p=True),
    ],
    "tcga_cdr": [
        _v("age", "age_at_initial_pathologic_diagnosis", "numeric"),
        _v("sex", "gender", "sex"),
        _v(
            "stage",
            "ajcc_pathologic_tumor_stage",
            "stage",
            recode={"I/II NOS": "", "Stage X": ""},
        ),
        _v("grade", "histological_grade", "grade", recode={"GB": ""}),
        _v("cancer_type", "type", "categorical"),
    ],
}

_DAYS: TimeUnit = "days"

#: clinical-only table -> (file, patient id column or None, outcomes, description)
CLINICAL_TABLES: dict[str, tuple[str, str | None, dict[str, OutcomeSpec], str]] = {
    "colon_adjuvant": (
        "colon_adjuvant_trial.csv",
        None,
        {
            "recurrence": OutcomeSpec(
                kind="survival",
                event="event1",
                time="time1",
                time_unit=_DAYS,
                horizon=5 * 365.25,
                description="recurrence (or death) after stage B/C colon cancer surgery",
            ),
            "os": OutcomeSpec(
                kind="survival", event="event", time="Stime", time_unit=_DAYS, horizon=5 * 365.25
            ),
        },
        "colon cancer adjuvant chemotherapy trial (R survival::colon), 929 patients",
    ),
    "breast_gbsg2": (
        "breast_gbsg2.csv",
        "id",
        {
            "rfs": OutcomeSpec(
                kind="survival",
                event="censrec",
                time="rectime",
                time_unit=_DAYS,
                horizon=5 * 365.25,
                description="recurrence-free survival",
            ),
        },
        "German Breast Cancer Study Group 2, 686 node-positive patients",
    ),
    "tcga_cdr": (
        "tcga_cdr.csv.gz",
        "bcr_patient_barcode",
        {
            "pfi": OutcomeSpec(
                kind="survival",
                event="PFI",
                time="PFI.time",
                time_unit=_DAYS,
                horizon=3 * 365.25,
                description="progression-free interval",
            ),
            "dfi": OutcomeSpec(
                kind="survival",
                event="DFI",
                time="DFI.time",
                time_unit=_DAYS,
                horizon=3 * 365.25,
                description="disease-free interval",
            ),
            "os": OutcomeSpec(
                kind="survival", event="OS", time="OS.time", time_unit=_DAYS, horizon=5 * 365.25
            ),
        },
        "TCGA Pan-Cancer Clinical Data Resource, 11,160 patients of 33 cancer types",
    ),
}


def clinical_variables(name: str) -> list[Variable]:
    """Typed clinical variables of a built-in cohort or clinical table."""
    if name not in CLINICAL_VARIABLES:
        names = sorted(CLINICAL_VARIABLES)
        raise UnknownNameError(
            f"no clinical variables declared for {name!r}; known: {names}."
            f"{did_you_mean(name, names)} Pass your own list of Variable(name, column, kind)."
        )
    return list(CLINICAL_VARIABLES[name])


def _folder() -> Path:
    return Path(str(resources.files("metastat.data") / "datasets" / "clinical"))


@cache
def _load_table(name: str) -> ad.AnnData:
    if name not in CLINICAL_TABLES:
        names = sorted(CLINICAL_TABLES)
        raise UnknownNameError(
            f"unknown clinical table {name!r}; tables: {names}.{did_you_mean(name, names)}"
        )
    file, id_col, outcomes, desc = CLINICAL_TABLES[name]
    frame = pd.read_csv(_folder() / file, low_memory=False)
    frame = frame.drop(columns=[c for c in frame.columns if str(c).startswith("Unnamed")])
    ids = (
        frame[id_col].astype(str) if id_col else pd.Series([f"{name}_{i + 1}" for i in frame.index])
    )
    frame.index = pd.Index(ids.to_numpy(), name="sample_id")
    frame[PATIENT_ID] = frame.index.astype(str)
    adata = ad.AnnData(X=np.zeros((len(frame), 0)), obs=_arrow_safe(frame))
    adata.uns["metastat"] = {
        "name": name,
        "outcomes": {k: v.model_dump(exclude_none=True) for k, v in outcomes.items()},
        "provenance": desc,
    }
    return adata


def load_clinical_table(name: str) -> ad.AnnData:
    """A clinical-only table (``colon_adjuvant``, ``breast_gbsg2``, ``tcga_cdr``), no genes."""
    return _load_table(name).copy()


def read_clinical(path: str | Path) -> pd.DataFrame:
    """A user clinical table (first column = id) read with metastat's table reader."""
    return read_table(Path(path))
