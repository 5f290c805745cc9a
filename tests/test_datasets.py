"""Every bundled real cohort loads with the documented sizes and outcome event counts."""

from __future__ import annotations

import numpy as np
import pytest

from metastat.data.outcomes import resolve_outcome
from metastat.data.registry import DATASETS, dataset_info, load_dataset
from metastat.errors import UnknownNameError

#: (dataset, outcome) -> (samples, events), from the data README / original publications
EXPECTED = {
    ("gastric_acrg", "recurrence"): (300, 125),
    ("gastric_yonsei", "recurrence"): (109, 60),
    ("breast_nki", "dmfs"): (146, 53),
    ("breast_vdx", "dmfs"): (150, 47),
    ("breast_transbig", "dmfs"): (198, 51),
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_bundled_cohort_loads(name: str) -> None:
    adata = load_dataset(name)
    assert adata.n_obs > 100 and adata.n_vars >= 76
    assert np.isfinite(np.asarray(adata.X)[~np.isnan(np.asarray(adata.X))]).all()
    assert adata.obs_names.is_unique
    assert "patient_id" in adata.obs and {"symbol", "entrez"} <= set(adata.var.columns)
    info = dataset_info(name)
    assert info.citation and info.accession
    for outcome in info.outcomes:
        r = resolve_outcome(adata, outcome)
        assert r.usable_mask.sum() > 50
        assert set(np.unique(r.event[r.usable_mask])) <= {0.0, 1.0}


@pytest.mark.parametrize(("key", "expected"), sorted(EXPECTED.items()))
def test_outcome_event_counts(key: tuple[str, str], expected: tuple[int, int]) -> None:
    r = resolve_outcome(load_dataset(key[0]), key[1])
    m = r.usable_mask
    assert (int(m.sum()), int(r.event[m].sum())) == expected


def test_probe_cohorts_are_annotated_and_colorectal_groups_patients() -> None:
    vdx = load_dataset("breast_vdx")
    assert vdx.var["symbol"].notna().mean() > 0.9
    crc = load_dataset("colorectal_primary_met")
    assert crc.obs["patient_id"].nunique() < crc.n_obs  # matched primary / metastasis pairs


def test_unknown_dataset_suggests_the_right_name() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'gastric_acrg'"):
        load_dataset("gastric_acgr")
