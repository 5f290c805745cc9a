"""Contract cases of the tabular families: expression ``RiskModel`` and ``TabularRiskModel``.

Real built-in cohorts, kept small for speed: breast NKI (distant metastasis-free survival, 5-year
horizon) and gastric ACRG (recurrence, binary) with the 150 most variable genes; the colon
adjuvant trial's clinical table (150 patients). No labelled radiology cohort ships (or exists
offline), so the radiology case is a radiomics-like table planted on 120 real GBSG-2 patients:
IBSI-named columns whose values follow the patients' martingale residual plus noise (a format
test of the model, not evidence that radiomics predicts anything).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from metastat.clinical.datasets import clinical_variables, load_clinical_table
from metastat.data.cohort import expression_frame
from metastat.data.outcomes import resolve_outcome
from metastat.data.registry import load_dataset
from metastat.data.target import Target
from metastat.expression.model import RiskModel
from metastat.fusion.unimodal import TabularRiskModel
from metastat.radiology.planted import martingale_score
from tests.contract_cases import ContractData, case, rows

N_GENES = 150


def _split(x: pd.DataFrame, target: Target, n_new: int = 30) -> ContractData:
    """The last ``n_new`` samples are scored, the others fitted on."""
    fit = np.arange(len(x) - n_new)
    new = np.arange(len(x) - n_new, len(x))
    return ContractData(x.iloc[fit], target.subset(fit), x.iloc[new], list(x.index[new]), rows)


@cache
def _expression(name: str, outcome: str) -> tuple[pd.DataFrame, Target]:
    adata = load_dataset(name)
    out = resolve_outcome(adata, outcome)
    keep = out.usable_mask & (out.survival_mask if out.kind == "survival" else True)
    x = expression_frame(adata)[keep]
    x = x[x.var().sort_values(ascending=False).index[:N_GENES]]
    return x, Target.from_outcome(out, keep)


def _nki() -> ContractData:
    return _split(*_expression("breast_nki", "dmfs"))


def _acrg() -> ContractData:
    return _split(*_expression("gastric_acrg", "recurrence"))


def _horizon() -> float:
    h = _expression("breast_nki", "dmfs")[1].horizon
    assert h is not None
    return h


def _expression_model(name: str, kind: str = "survival") -> Any:
    horizon = _horizon() if kind == "survival" else None
    return lambda: RiskModel(name, task=kind, horizon=horizon, n_genes=100, n_interval=20)


@case("expression:coxnet")
def _coxnet() -> tuple[Any, Any]:
    return _expression_model("coxnet"), _nki


@case("expression:logistic")
def _logistic() -> tuple[Any, Any]:
    return _expression_model("logistic", "binary"), _acrg


@case("expression:gbs", explains=False)
def _gbs() -> tuple[Any, Any]:
    return _expression_model("gbs"), _nki


@case("expression:rsf", explains=False)
def _rsf() -> tuple[Any, Any]:
    return _expression_model("rsf"), _nki


def _colon() -> ContractData:
    adata = load_clinical_table("colon_adjuvant")[:150]
    out = resolve_outcome(adata, "recurrence")
    keep = out.usable_mask
    return _split(adata.obs[keep], Target.from_outcome(out, keep))


@case("clinical:coxnet")
def _clinical() -> tuple[Any, Any]:
    def model() -> TabularRiskModel:
        return TabularRiskModel(
            "coxnet",
            task="survival",
            horizon=5 * 365.25,
            variables=clinical_variables("colon_adjuvant"),
        )

    return model, _colon


RADIOMICS = (
    "morph_volume",
    "morph_sphericity",
    "stat_mean",
    "stat_var",
    "stat_skew",
    "ih_entropy",
    "cm_contrast",
    "cm_corr",
    "rlm_sre",
    "szm_lgze",
    "ngt_coarseness",
    "dzm_sdde",
)


def _radiomics() -> ContractData:
    adata = load_clinical_table("breast_gbsg2")[:120]
    out = resolve_outcome(adata, "rfs")
    assert out.time is not None
    rng = np.random.default_rng(0)
    score = martingale_score(out.time, out.event)
    load = rng.uniform(-1.0, 1.0, len(RADIOMICS))
    values = score[:, None] * load + rng.normal(0.0, 1.0, (len(score), len(RADIOMICS)))
    table = pd.DataFrame(values * 10 + 50, index=adata.obs_names, columns=list(RADIOMICS))
    return _split(table, Target.from_outcome(out))


@case("radiology:elastic-net")
def _radiology() -> tuple[Any, Any]:
    from metastat.fusion.registry import get_modality

    def model() -> Any:  # the registry's default radiology model, as fusion builds it
        return get_modality("radiology").unimodal(
            "coxnet", task="survival", horizon=5 * 365.25, seed=0
        )

    return model, _radiomics
