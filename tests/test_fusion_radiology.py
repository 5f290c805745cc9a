"""Radiology as a registered fusion modality: alignment, single-modality model, late and neural
fusion with radiology present, partly missing or generated, persistence and the fusion CLI.

The radiomics table here is synthetic (a format / plumbing test): 12 columns carrying the
benchmark's true hazard plus noise, absent for a quarter of the patients.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner

from metastat.cli.main import app
from metastat.fusion.generate import fill_missing, make_generator
from metastat.fusion.intermediate import NeuralFusion
from metastat.fusion.late import LateFusion
from metastat.fusion.modalities import align_modalities
from metastat.fusion.paired import PAIRED_VARIABLES, make_paired_benchmark
from metastat.fusion.persist import load_fusion, save_fusion
from metastat.fusion.registry import get_modality, modality_names
from metastat.fusion.unimodal import UnimodalModel

FAST = {"epochs": 40, "patience": 10, "hidden": 16, "n_genes": 100}


def _radiomics(bench, seed: int = 0, missing: float = 0.25) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(bench.data)
    signal = bench.hazard[:, None] * rng.uniform(0.5, 1.5, 12) + rng.normal(0, 1.0, (n, 12))
    table = pd.DataFrame(
        signal, index=bench.data.patient_ids, columns=[f"rad_{j}" for j in range(12)]
    )
    return table[rng.random(n) >= missing]


@pytest.fixture(scope="module")
def bench():
    return make_paired_benchmark(160, n_genes=48, n_programs=4, tile_dim=16, tiles=(12, 24), seed=1)


@pytest.fixture(scope="module")
def data(bench):
    d = bench.data
    outcome = pd.DataFrame(
        {"event": d.target["event"], "time": d.target["time"], "binary": d.target["binary"]},
        index=d.patient_ids,
    )
    return align_modalities(
        outcome,
        kind="survival",
        horizon=36.0,
        variables=PAIRED_VARIABLES,
        clinical=d.clinical,
        expression=d.expression,
        histology=dict(zip(d.patient_ids, d.histology, strict=True)),
        radiology=_radiomics(bench).sample(frac=1.0, random_state=0),  # row order is irrelevant
    )


@pytest.fixture(scope="module")
def split(data):
    test = np.random.default_rng(0).random(len(data)) < 0.3
    return data.subset(np.flatnonzero(~test)), data.subset(np.flatnonzero(test))


def _c(d, risk) -> float:
    from sksurv.metrics import concordance_index_censored

    return concordance_index_censored(d.target["event"], d.target["time"], risk)[0]


def test_radiology_is_registered_and_aligned_by_id(bench, data) -> None:
    assert modality_names() == ("clinical", "expression", "histology", "radiology")
    assert get_modality("radiology").form == "table"
    table = _radiomics(bench)
    assert data.modalities == ["clinical", "expression", "histology", "radiology"]
    assert data.present["radiology"].sum() == len(table)
    pid = table.index[3]
    row = np.flatnonzero(data.patient_ids == pid)[0]
    np.testing.assert_allclose(data.tables["radiology"].iloc[row], table.loc[pid])
    absent = np.setdiff1d(data.patient_ids, table.index)
    assert not data.present.loc[absent, "radiology"].any()


def test_radiology_model_and_late_fusion_with_radiology_missing(split) -> None:
    train, test = split
    uni = UnimodalModel("radiology").fit(train)
    pred = uni.predict_frame(test)
    has = test.has("radiology")
    assert (pred["modalities"][has] == "radiology").all() and (pred["modalities"][~has] == "").all()
    assert _c(test.subset(np.flatnonzero(has)), pred["risk"][has].to_numpy()) > 0.65
    late = LateFusion().fit(train)
    assert len(late.stackers_) == 15  # every non-empty subset of 4 modalities
    out = late.predict_frame(test)
    assert set(out["modalities"][has]) == {"clinical+expression+histology+radiology"}
    assert set(out["modalities"][~has]) == {"clinical+expression+histology"}
    clin = UnimodalModel("clinical").fit(train).predict_frame(test)
    assert _c(test, out["risk"].to_numpy()) > _c(test, clin["risk"].to_numpy())
    only = late.predict_frame(test.without("clinical", "expression", "histology"))
    assert set(only["modalities"]) == {"radiology", ""}
    assert only["prob"][~has].isna().all() and np.isfinite(only["prob"][has]).all()


@pytest.mark.parametrize("fusion", ["concat", "coattention"])
def test_neural_fusion_with_radiology_round_trip(tmp_path, split, fusion: str) -> None:
    train, test = split
    kw = {"n_gene_sets": 4} if fusion == "coattention" else {}
    model = NeuralFusion(fusion, **FAST, **kw).fit(train)
    assert model.mods_ == ["clinical", "expression", "histology", "radiology"]
    save_fusion(model, tmp_path / "nn")
    again, manifest = load_fusion(tmp_path / "nn")
    assert manifest["state"]["input_kinds"]["radiology"] == "table"
    for d in (test, test.without("radiology"), test.without("histology", "expression")):
        a, b = model.predict_frame(d), again.predict_frame(d)
        np.testing.assert_allclose(a[["risk", "prob"]], b[["risk", "prob"]], rtol=1e-5, atol=1e-6)
        assert np.isfinite(a[["risk", "prob"]].to_numpy()).all()
    assert "radiology" not in set(model.predict_frame(test.without("radiology"))["modalities"])


def test_late_fusion_round_trip_with_radiology(tmp_path, split) -> None:
    train, test = split
    model = LateFusion().fit(train)
    save_fusion(model, tmp_path / "late")
    again, _ = load_fusion(tmp_path / "late")
    a, b = model.predict_frame(test), again.predict_frame(test)
    np.testing.assert_allclose(a[["risk", "prob"]], b[["risk", "prob"]], rtol=1e-6)
    assert (a["modalities"] == b["modalities"]).all()


def test_generating_radiology_is_marked(split) -> None:
    """Generation works for any registered pair: radiomics generated from histology."""
    train, test = split
    gen = make_generator("ridge", source="histology", target="radiology").fit_set(train)
    filled = fill_missing(test, gen)
    was_missing = ~test.has("radiology")
    assert filled.has("radiology").all()
    assert (filled.generated == was_missing).all()
    pred = LateFusion().fit(train).predict_frame(filled)
    assert set(pred["generated"][was_missing]) == {"radiology"}
    assert set(pred["generated"][~was_missing]) == {""}
    assert not pred["expression_generated"].any()


def test_fusion_cli_with_radiology_file(tmp_path, bench) -> None:
    d = bench.data
    clin = d.clinical.assign(months=d.target["time"], relapse=d.target["event"].astype(int))
    clin.rename_axis("patient_id").to_csv(tmp_path / "clinical.csv")
    (tmp_path / "vars.json").write_text(json.dumps([v.__dict__ for v in PAIRED_VARIABLES]))
    _radiomics(bench).rename_axis("patient_id").to_csv(tmp_path / "radiomics.csv")
    common = ["--clinical", str(tmp_path / "clinical.csv"), "--variables",
              str(tmp_path / "vars.json"), "--event-col", "relapse", "--time-col", "months",
              "--modality", f"radiology={tmp_path / 'radiomics.csv'}"]  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(
        app, ["fusion", "evaluate", "-o", "relapse", *common, "-m", "radiology", "-m", "late",
              "--cv", "3", "--n-boot", "50", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)
    assert {"clinical", "radiology", "late"} <= set(metrics)
    assert metrics["late"]["c_index"]["estimate"] > metrics["clinical"]["c_index"]["estimate"]
    res = runner.invoke(
        app, ["fusion", "fit", "-o", "relapse", *common, "--out", str(tmp_path / "m")]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["fusion", "predict", "-m", str(tmp_path / "m"), "--modality",
              f"radiology={tmp_path / 'radiomics.csv'}", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    preds = json.loads(res.stdout)["predictions"]
    assert {p["modalities"] for p in preds} == {"radiology"}
    res = runner.invoke(app, ["fusion", "evaluate", "-o", "x", *common[:-1], "histopathology=x"])
    assert "unknown modality 'histopathology'" in str(res.exception)
