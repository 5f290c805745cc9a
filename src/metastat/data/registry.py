"""Built-in real cohorts, shipped small inside the package with provenance and citation.

Outcome names are uniform across cohorts (``recurrence``, ``dfs``, ``rfs``, ``dmfs``, ``os``) and
defined here, mapped onto each cohort's original (messy) clinical column names.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import anndata as ad
import pandas as pd
from pydantic import BaseModel, ConfigDict

from metastat.data.cohort import make_cohort
from metastat.data.genes import read_annotation
from metastat.data.outcomes import OutcomeSpec
from metastat.data.tables import read_table
from metastat.errors import lookup

FIVE_YEARS_D = 5 * 365.25


class DatasetInfo(BaseModel):
    """Registry entry of a built-in cohort."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str
    cancer: str
    platform: str
    accession: str
    citation: str
    folder: str
    feature_ids: str  # "symbol" (columns are gene symbols) or "probe" (annotated by genes.csv)
    value_scale: str
    patient_col: str | None = None
    outcomes: dict[str, OutcomeSpec]
    notes: str = ""


def _surv(event: str, time: str, unit: str, horizon: float | None, desc: str) -> OutcomeSpec:
    return OutcomeSpec(
        kind="survival",
        event=event,
        time=time,
        time_unit=unit,  # type: ignore[arg-type]
        horizon=horizon,
        description=desc,
    )


def _bin(event: str, time: str | None, unit: str | None, desc: str) -> OutcomeSpec:
    return OutcomeSpec(
        kind="binary",
        event=event,
        time=time,
        time_unit=unit,  # type: ignore[arg-type]
        description=desc,
    )


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo(
            name="gastric_acrg",
            title="ACRG / Samsung gastric cancer cohort",
            cancer="gastric",
            platform="Affymetrix HG-U133 Plus 2 (1,055 genes kept)",
            accession="GEO GSE62254",
            citation="Cristescu R. et al. Molecular analysis of gastric cancer identifies "
            "subtypes associated with distinct clinical outcomes. Nat Med 2015;21:449-56.",
            folder="gastric_acrg",
            feature_ids="symbol",
            value_scale="log10-like (0.7-4.3)",
            outcomes={
                "recurrence": _bin("Recur", "DFS.m", "months", "recurrence (recorded status)"),
                "dfs": _surv("Recur", "DFS.m", "months", 36.0, "disease-free survival"),
                "os": _surv("Death", "OS.m", "months", 60.0, "overall survival"),
            },
        ),
        DatasetInfo(
            name="gastric_yonsei",
            title="Yonsei gastric cancer cohort",
            cancer="gastric",
            platform="Illumina HumanRef-8 (19,236 genes)",
            accession="GEO GSE26901",
            citation="Lee J. et al. Development and validation of a prognostic gene signature "
            "for gastric cancer (Yonsei cohort); Oh S.C. et al. Nat Commun 2018;9:1777.",
            folder="gastric_yonsei",
            feature_ids="symbol",
            value_scale="log2",
            patient_col="Patients_ID",
            outcomes={
                "recurrence": _bin(
                    "Recurrence (1=yes, 0=no)", "RFS.m", "months", "recurrence (recorded status)"
                ),
                "rfs": _surv(
                    "Recurrence (1=yes, 0=no)", "RFS.m", "months", 36.0, "recurrence-free survival"
                ),
                "os": _surv("Death (1=yes, 0=no)", "OS.m", "months", 60.0, "overall survival"),
            },
        ),
        DatasetInfo(
            name="breast_nki",
            title="NKI breast cancer cohort (subset)",
            cancer="breast",
            platform="Agilent Hu25K (922 probes)",
            accession="NKI (van de Vijver 2002)",
            citation="van de Vijver M.J. et al. A gene-expression signature as a predictor of "
            "survival in breast cancer. N Engl J Med 2002;347:1999-2009.",
            folder="breast_nki",
            feature_ids="probe",
            value_scale="log10 ratio (centred)",
            outcomes={
                "dmfs": _surv(
                    "e.dmfs", "t.dmfs", "days", FIVE_YEARS_D, "distant-metastasis-free survival"
                ),
                "rfs": _surv("e.rfs", "t.rfs", "days", FIVE_YEARS_D, "recurrence-free survival"),
                "os": _surv("e.os", "t.os", "days", FIVE_YEARS_D, "overall survival"),
            },
        ),
        DatasetInfo(
            name="breast_vdx",
            title="Rotterdam node-negative breast cancer (VDX)",
            cancer="breast",
            platform="Affymetrix HG-U133A (966 probes)",
            accession="GEO GSE2034",
            citation="Wang Y. et al. Gene-expression profiles to predict distant metastasis of "
            "lymph-node-negative primary breast cancer. Lancet 2005;365:671-9.",
            folder="breast_vdx",
            feature_ids="probe",
            value_scale="log2 (MAS5)",
            outcomes={
                "dmfs": _surv(
                    "e.dmfs", "t.dmfs", "days", FIVE_YEARS_D, "distant-metastasis-free survival"
                ),
                "rfs": _surv("e.rfs", "t.rfs", "days", FIVE_YEARS_D, "recurrence-free survival"),
            },
        ),
        DatasetInfo(
            name="breast_transbig",
            title="TRANSBIG breast cancer validation cohort",
            cancer="breast",
            platform="Affymetrix HG-U133A (76 Rotterdam-signature probes)",
            accession="GEO GSE7390 (via scikit-survival)",
            citation="Desmedt C. et al. Strong time dependence of the 76-gene prognostic "
            "signature for node-negative breast cancer patients in the TRANSBIG "
            "multicenter independent validation series. Clin Cancer Res 2007;13:3207-14.",
            folder="sksurv:breast_cancer",
            feature_ids="probe",
            value_scale="log2",
            outcomes={
                "dmfs": _surv(
                    "e.tdm",
                    "t.tdm",
                    "days",
                    FIVE_YEARS_D,
                    "distant-metastasis-free survival (time to distant metastasis)",
                ),
            },
        ),
        DatasetInfo(
            name="colorectal_primary_met",
            title="Colorectal primaries and matched metastases",
            cancer="colorectal",
            platform="NanoString (819 genes)",
            accession="Genentech procured CRC set (NanoString)",
            citation="Kamal Y. et al. Transcriptomic differences between primary colorectal "
            "adenocarcinomas and distant metastases reveal metastatic colorectal cancer "
            "subtypes. Cancer Res 2019;79:4227-41.",
            folder="colorectal_primary_met",
            feature_ids="symbol",
            value_scale="linear counts",
            patient_col="Patient",
            outcomes={
                "dfs": _surv(
                    "DFS.status.(event=1)", "DFS.(months)", "months", 36.0, "disease-free survival"
                ),
                "os": _surv(
                    "OS.status.(Death=1)2", "OS.(months)", "months", 60.0, "overall survival"
                ),
            },
            notes="312 samples of 182 primaries and 130 metastases (142 matched pairs): always "
            "split by patient. Unnamed columns are NanoString negative controls.",
        ),
    ]
}


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    return lookup(DATASETS, name, "dataset")


def _data_dir() -> Path:
    return Path(str(resources.files("metastat.data") / "datasets"))


@cache
def _load(name: str) -> ad.AnnData:
    info = dataset_info(name)
    meta = {
        "provenance": info.accession,
        "citation": info.citation,
        "value_scale": info.value_scale,
        "platform": info.platform,
    }
    outcomes = {k: v.model_dump(exclude_none=True) for k, v in info.outcomes.items()}
    if info.folder.startswith("sksurv:"):
        expr, clinical, genes = _transbig()
    else:
        folder = _data_dir() / info.folder
        expr = read_table(folder / "expression.csv.gz")
        clinical = read_table(folder / "clinical.csv")
        genes = None
        if info.feature_ids == "probe":
            genes = read_annotation(read_table(folder / "genes.csv"))
    return make_cohort(
        expr,
        clinical,
        name=name,
        genes=genes,
        patient_col=info.patient_col,
        outcomes=outcomes,
        meta=meta,
    )


def load_dataset(name: str) -> ad.AnnData:
    """Load a built-in cohort as an AnnData (a fresh copy each call)."""
    return _load(name).copy()


def _transbig() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from sksurv.datasets import load_breast_cancer

    x, y = load_breast_cancer()
    probes = [c for c in x.columns if c.startswith("X") and c.endswith("_at")]
    expr = x[probes].copy()
    expr.columns = [c[1:] for c in probes]
    ids = pd.Index([f"TRANSBIG_{i:03d}" for i in range(len(x))], name="sample_id")
    expr.index = ids
    clinical = x.drop(columns=probes).copy()
    clinical.index = ids
    clinical["e.tdm"] = y["e.tdm"].astype(int)
    clinical["t.tdm"] = y["t.tdm"]
    for col in clinical.columns:
        if isinstance(clinical[col].dtype, pd.CategoricalDtype):
            clinical[col] = clinical[col].astype(str)
    genes = read_annotation(read_table(_data_dir() / "breast_vdx" / "genes.csv"))
    return expr, clinical, genes
