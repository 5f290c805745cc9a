"""Registry entries of the built-in modalities: clinical variables, gene expression, histology."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metastat.clinical.encoder import Variable
from metastat.data.tables import read_table
from metastat.errors import InputError
from metastat.fusion.registry import Modality


def _clinical_model(learner: str, **kw: Any) -> Any:
    from metastat.fusion.unimodal import TabularRiskModel

    kw.pop("n_genes", None)
    return TabularRiskModel(learner, **kw)


def _pooled_model(learner: str, **kw: Any) -> Any:
    from metastat.fusion.unimodal import TabularRiskModel

    kw.pop("n_genes", None)
    kw.pop("variables", None)
    return TabularRiskModel(learner, **kw)


def _expression_model(learner: str, **kw: Any) -> Any:
    from metastat.expression.model import RiskModel

    kw.pop("variables", None)
    kw.setdefault("n_interval", 0)  # fusion uses the risk; per-patient intervals are never read
    return RiskModel(learner, **kw)


def _clinical_presence(table: pd.DataFrame, variables: list[Variable]) -> np.ndarray:
    if not variables:
        raise InputError("a clinical table needs its typed variables (list of Variable).")
    cols = [v.column for v in variables if v.column in table.columns]
    if not cols:
        return np.zeros(len(table), dtype=bool)
    return table[cols].notna().any(axis=1).to_numpy()


def _load_bags(path: Path) -> dict[str, np.ndarray]:
    from metastat.fusion.inputs import load_histology

    return load_histology(path)


CLINICAL = Modality(
    name="clinical",
    form="table",
    description="clinical variables only: typed encoder + elastic-net Cox / logistic",
    load=read_table,
    unimodal=_clinical_model,
    neural="clinical",
    presence=_clinical_presence,
)
EXPRESSION = Modality(
    name="expression",
    form="table",
    description="expression only: elastic-net Cox / logistic on the most variable genes",
    load=read_table,
    unimodal=_expression_model,
    neural="expression",
)
HISTOLOGY = Modality(
    name="histology",
    form="bag",
    description="histology only: mean-pooled tile features + elastic-net Cox / logistic",
    load=_load_bags,
    unimodal=_pooled_model,
    neural="bag",
)
