"""Alignment by patient id, presence masks, bad input across modality tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metastat.errors import InputError
from metastat.fusion.late import LateFusion
from metastat.fusion.modalities import align_modalities
from metastat.fusion.paired import PAIRED_VARIABLES, make_paired_benchmark


@pytest.fixture(scope="module")
def bench():
    return make_paired_benchmark(120, n_genes=40, n_programs=4, tile_dim=16, tiles=(10, 20), seed=3)


def _tables(bench):
    d = bench.data
    outcome = pd.DataFrame(
        {
            "event": d.target["event"].astype(float),
            "time": d.target["time"],
            "binary": d.target["binary"],
        },
        index=d.patient_ids,
    )
    bags = {pid: b for pid, b in zip(d.patient_ids, d.histology, strict=True)}
    return outcome, d.clinical.copy(), d.expression.copy(), bags


def _align(outcome, clinical, expression, bags, **kw):
    return align_modalities(
        outcome,
        kind="survival",
        horizon=36.0,
        clinical=clinical,
        variables=PAIRED_VARIABLES,
        expression=expression,
        histology=bags,
        **kw,
    )


def test_shuffling_one_table_does_not_change_predictions(bench) -> None:
    outcome, clin, expr, bags = _tables(bench)
    data = _align(outcome, clin, expr, bags)
    model = LateFusion(modalities=("clinical", "expression")).fit(data)
    rng = np.random.default_rng(0)
    shuffled = _align(
        outcome, clin.iloc[rng.permutation(len(clin))], expr.iloc[rng.permutation(len(expr))], bags
    )
    a = model.predict_frame(data)
    b = model.predict_frame(shuffled)
    pd.testing.assert_frame_equal(a, b)
    # a positional (wrong) alignment would change them
    wrong = expr.copy()
    wrong.index = expr.index[rng.permutation(len(expr))]
    c = model.predict_frame(_align(outcome, clin, wrong, bags))
    assert not np.allclose(a["risk"], c["risk"])


def test_missing_patients_are_marked_absent(bench) -> None:
    outcome, clin, expr, bags = _tables(bench)
    data = _align(outcome, clin, expr.iloc[10:], {k: v for k, v in list(bags.items())[:100]})
    p = data.present
    assert not p["expression"].iloc[:10].any() and p["expression"].iloc[10:].all()
    assert p["histology"].sum() == 100 and p["clinical"].all()
    assert data.used(["clinical", "expression"])[0] == "clinical"
    gone = data.without("expression")
    assert not gone.present["expression"].any() and data.present["expression"].any()


def test_id_mismatches_are_errors(bench) -> None:
    outcome, clin, expr, bags = _tables(bench)
    stray = expr.copy()
    stray.index = [*expr.index[:-1], "PX999"]
    with pytest.raises(InputError, match=r"1 patient id\(s\) have no outcome, e\.g\. \['PX999'\]"):
        _align(outcome, clin, stray, bags)
    dropped = _align(outcome, clin, stray, bags, extra="drop")
    assert dropped.present["expression"].sum() == len(expr) - 1
    dup = pd.concat([expr, expr.iloc[:1]])
    with pytest.raises(InputError, match="duplicated patient id"):
        _align(outcome, clin, dup, bags)
    other = expr.set_axis([f"Z{i}" for i in range(len(expr))])
    with pytest.raises(InputError, match="shares no patient id"):
        _align(outcome, clin, other, bags, extra="drop")


def test_tcga_barcode_hint() -> None:
    outcome = pd.DataFrame(
        {"event": [1.0, 0.0], "time": [5.0, 9.0], "binary": [np.nan] * 2},
        index=["TCGA-AA-0001", "TCGA-AA-0002"],
    )
    expr = pd.DataFrame({"G1": [1.0, 2.0]}, index=["TCGA-AA-0001-01A", "TCGA-AA-0002-01A"])
    with pytest.raises(InputError, match="first 12 characters"):
        align_modalities(outcome, kind="survival", expression=expr)


def test_modality_with_all_values_missing(bench) -> None:
    outcome, clin, expr, bags = _tables(bench)
    with pytest.raises(InputError, match="'expression' has no values for any patient"):
        _align(outcome, clin, expr * np.nan, bags)
    with pytest.raises(InputError, match="at least one modality"):
        align_modalities(outcome, kind="survival")


def test_unparseable_clinical_strings_fail_clearly(bench) -> None:
    outcome, clin, expr, bags = _tables(bench)
    clin.iloc[3, clin.columns.get_loc("stage")] = "Stage 7"
    data = _align(outcome, clin, expr, bags)
    with pytest.raises(InputError, match=r"clinical column 'stage'.*'Stage 7'"):
        LateFusion(modalities=("clinical",)).fit(data)


DATA = Path(__file__).resolve().parent / "data"


def test_tcga_bags_align_with_tcga_cdr_by_patient_barcode(tmp_path: Path) -> None:
    """The two real TCGA bags shipped in tests/data, gathered into one histology folder."""
    pytest.importorskip("h5py")
    from metastat.fusion.inputs import multimodal_from_options

    for bag in ("features/TCGA-3X-AAVA-01Z-00-DX1", "mil/TCGA-AD-6964-01Z-00-DX1"):
        shutil.copytree(DATA / bag, tmp_path / Path(bag).name)
    data = multimodal_from_options("tcga_cdr", "pfi", histology=tmp_path)
    with_slides = data.patient_ids[data.present["histology"].to_numpy()]
    assert sorted(with_slides) == ["TCGA-3X-AAVA", "TCGA-AD-6964"]
    i = list(data.patient_ids).index("TCGA-AD-6964")
    assert data.target["event"][i]  # distant-metastasis new tumour event (PFI = 1)
    assert data.histology[i].shape[1] == 512
    assert data.present["clinical"].mean() > 0.99
