"""Registry entry of radiology: a per-patient radiomics table (one row per patient).

The default single-modality model is an elastic-net Cox / logistic model on the standardised
radiomics (:class:`~metastat.fusion.unimodal.TabularRiskModel`); the neural fusions encode the
table with the ``table`` input (standardised, one linear embedding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from metastat.fusion.registry import Modality


def load_radiomics(path: Path) -> pd.DataFrame:
    """A radiomics table written by ``metastat radiology features`` (patient id first column)."""
    from metastat.radiology.cohort import read_feature_table

    return read_feature_table(path)


def radiology_model(learner: str, **kw: Any) -> Any:
    """Elastic-net Cox / logistic on standardised radiomics (no clinical variables)."""
    from metastat.fusion.unimodal import TabularRiskModel

    kw.pop("variables", None)
    kw.pop("n_genes", None)
    return TabularRiskModel(learner, **kw)


RADIOLOGY = Modality(
    name="radiology",
    form="table",
    description="radiology only: IBSI radiomics of the lesion + elastic-net Cox / logistic",
    load=load_radiomics,
    unimodal=radiology_model,
    neural="table",
)
