"""Fusion models, missing modalities at prediction, generation, side-by-side CV, persistence."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from metastat.fusion.generate import (
    CVAEGenerator,
    RidgeGenerator,
    fill_expression,
    generation_cv,
    per_gene_correlation,
)
from metastat.fusion.intermediate import NeuralFusion
from metastat.fusion.late import LateFusion
from metastat.fusion.paired import make_paired_benchmark
from metastat.fusion.persist import load_fusion, load_late, save_fusion, save_late
from metastat.fusion.validate import side_by_side

FAST = {"epochs": 40, "patience": 10, "hidden": 16, "n_genes": 100}


@pytest.fixture(scope="module")
def bench():
    return make_paired_benchmark(160, n_genes=48, n_programs=4, tile_dim=16, tiles=(12, 24), seed=1)


@pytest.fixture(scope="module")
def split(bench):
    rng = np.random.default_rng(0)
    test = rng.random(len(bench.data)) < 0.3
    return bench.data.subset(np.flatnonzero(~test)), bench.data.subset(np.flatnonzero(test))


def _c(data, risk) -> float:
    from sksurv.metrics import concordance_index_censored

    return concordance_index_censored(data.target["event"], data.target["time"], risk)[0]


def test_late_fusion_uses_what_each_patient_has(split) -> None:
    train, test = split
    model = LateFusion().fit(train)
    assert len(model.stackers_) == 7  # every non-empty subset of 3 modalities
    full = model.predict_frame(test, np.array([12.0, 24.0]))
    assert set(full["modalities"]) == {"clinical+expression+histology"}
    assert _c(test, full["risk"].to_numpy()) > 0.65
    no_expr = model.predict_frame(test.without("expression"))
    assert set(no_expr["modalities"]) == {"clinical+histology"}
    assert np.isfinite(no_expr[["risk", "prob"]].to_numpy()).all()
    nothing = model.predict_frame(test.without("expression", "histology", "clinical"))
    assert set(nothing["modalities"]) == {""} and nothing["prob"].isna().all()


@pytest.mark.parametrize("fusion", ["concat", "gated", "kronecker", "coattention"])
def test_neural_fusion_degrades_gracefully(split, bench, fusion: str) -> None:
    train, test = split
    kw = {"gene_sets": bench.gene_sets} if fusion == "coattention" else {}
    model = NeuralFusion(fusion, **FAST, **kw).fit(train)  # type: ignore[arg-type]
    full = model.predict_frame(test)
    assert set(full["modalities"]) == {"clinical+expression+histology"}
    for gone in (("expression",), ("histology",), ("expression", "histology")):
        pred = model.predict_frame(test.without(*gone))
        assert np.isfinite(pred[["risk", "prob"]].to_numpy()).all()
        assert not any(g in m for m in pred["modalities"] for g in gone)


def test_generators_recover_expression_from_tiles(bench) -> None:
    corr = generation_cv(bench.data, ("ridge",), n_splits=3)
    assert corr["ridge"].median() > 0.3  # planted link: tiles reflect expression programs
    train = bench.data.subset(np.arange(120))
    test = bench.data.subset(np.arange(120, 160))
    cvae = CVAEGenerator(epochs=60).fit_set(train)
    gen = cvae.generate(test)
    r = per_gene_correlation(test.expression[gen.columns], gen)
    assert np.isfinite(gen.to_numpy()).all() and r.median() > 0.0
    assert cvae.sample(test.pooled_histology().to_numpy(), 3).shape == (3, 40, 48)


def test_filled_expression_is_marked_generated(split) -> None:
    train, test = split
    gen = RidgeGenerator().fit_set(train)
    filled = fill_expression(test.without("expression"), gen)
    assert filled.generated.all() and filled.present["expression"].all()
    model = LateFusion().fit(train)
    pred = model.predict_frame(filled)
    assert pred["expression_generated"].all()
    assert set(pred["modalities"]) == {"clinical+expression+histology"}


def test_side_by_side_same_splits_with_scenarios(bench) -> None:
    data = bench.data.subset(np.arange(90))
    res = side_by_side(
        data,
        ["clinical", "expression", "late", "concat"],
        n_splits=3,
        n_boot=10,
        drop=("expression",),
        generators=("ridge",),
        baseline="clinical",
        model_kw=FAST,
        progress=False,
    )
    models = set(res.predictions["model"])
    assert {
        "late[-expression]",
        "late[generated-ridge]",
        "concat[-expression]",
        "expression[generated-ridge]",
    } <= models
    folds = res.predictions.groupby("model").apply(
        lambda d: tuple(d.sort_values("patient_id")["fold"]), include_groups=False
    )
    assert folds.nunique() == 1  # every model and scenario scored on identical splits
    table = res.table(("c_index",))
    assert table.loc["late", "c_index"].count("[") == 1
    assert "delta_c_index_vs_clinical" in res.to_json()["late"]


def test_late_fusion_round_trip(tmp_path, split) -> None:
    train, test = split
    model = LateFusion().fit(train)
    save_late(model, tmp_path / "m", info={"outcome": "x"})
    again, manifest = load_late(tmp_path / "m")
    a = model.predict_frame(test.without("histology"), np.array([12.0]))
    b = again.predict_frame(test.without("histology"), np.array([12.0]))
    np.testing.assert_allclose(a[["risk", "prob", "surv_0"]], b[["risk", "prob", "surv_0"]])
    assert manifest["outcome"] == "x"
    (tmp_path / "m" / "arrays.safetensors").write_bytes(b"corrupt")
    from metastat.errors import ModelError

    with pytest.raises(ModelError, match="checksum"):
        load_late(tmp_path / "m")


def test_neural_fusion_round_trip(tmp_path, split, bench) -> None:
    train, test = split
    model = NeuralFusion("coattention", n_gene_sets=5, **FAST).fit(train)  # k-means gene sets
    assert len(model.gene_index_) == 5
    save_fusion(model, tmp_path / "nn", info={"outcome": "x"})
    again, _ = load_fusion(tmp_path / "nn")
    for data in (test, test.without("histology")):
        a, b = model.predict_frame(data), again.predict_frame(data)
        np.testing.assert_allclose(a[["risk", "prob"]], b[["risk", "prob"]], rtol=1e-5, atol=1e-6)
        assert (a["modalities"] == b["modalities"]).all()


def test_neural_fusion_imputes_a_sparse_training_profile(split) -> None:
    """A training patient missing > 10 % of the genes is imputed (with a warning), as in the
    unimodal expression model, not a failure of the whole fit (breast_nki has one: NKI_54)."""
    train, test = split
    expr = train.tables["expression"].copy()
    expr.iloc[0, : expr.shape[1] // 4] = np.nan
    sparse = train.with_values("expression", expr, np.ones(len(train), bool))
    sparse.synthetic[:] = False  # type: ignore[index]
    model = NeuralFusion("concat", **{**FAST, "epochs": 5}).fit(sparse)
    assert np.isfinite(model.predict_risk(test)).all()


def test_neural_fusion_scores_each_patient_alone(split) -> None:
    """A patient's risk does not depend on who else is scored (bags of other sizes, other
    patients' presence): one patient alone gets exactly its risk in the cohort."""
    train, test = split
    model = NeuralFusion("concat", **{**FAST, "epochs": 5}).fit(train)
    risk = model.predict_risk(test.without("expression"))
    for i in (0, 3, len(test) - 1):
        alone = model.predict_risk(test.subset(np.array([i])).without("expression"))
        assert alone[0] == risk[i]


@pytest.mark.parametrize("fusion", ["late", "concat"])
def test_bags_of_another_encoder_are_refused_not_cut(split, fusion: str, tmp_path) -> None:
    """Regression: late fusion silently cut wider histology bags to its training columns (and
    a narrower bag failed with a KeyError); new patients' bags of another width are refused."""
    from dataclasses import replace

    from metastat.errors import InputError
    from metastat.fusion.predict import predict_new

    train, test = split
    model = (
        LateFusion().fit(train)
        if fusion == "late"
        else NeuralFusion("concat", **{**FAST, "epochs": 3}).fit(train)
    )
    ok = predict_new(model, {}, tmp_path, test, generate=False)
    assert np.isfinite(ok["risk"]).all()
    wider = [None if b is None else np.hstack([b, b[:, :4]]) for b in test.bags["histology"]]
    bad = replace(test, bags={**test.bags, "histology": wider})
    with pytest.raises(
        InputError, match=r"histology features are 20-d but the model was trained on 16-d"
    ):
        predict_new(model, {}, tmp_path, bad, generate=False)
