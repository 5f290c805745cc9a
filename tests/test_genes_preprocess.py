"""Gene-id harmonisation and fold-safe preprocessing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metastat.data.cohort import make_cohort
from metastat.data.genes import GeneReport, align_cohorts, collapse_genes
from metastat.data.registry import load_dataset
from metastat.errors import InputError
from metastat.expression.combat import combat
from metastat.expression.preprocess import ExpressionPreprocessor


def _probe_cohort() -> object:
    expr = pd.DataFrame(
        [[1.0, 5.0, 2.0, 9.0], [2.0, 7.0, 2.5, 9.5], [1.5, 6.0, 3.0, 8.5]],
        index=["a", "b", "c"],
        columns=["p1", "p2", "p3", "ctl"],
    )
    genes = pd.DataFrame(
        {"symbol": ["TP53", "TP53", "MYC", None], "entrez": [7157, 7157, 4609, None]},
        index=["p1", "p2", "p3", "ctl"],
    )
    return make_cohort(expr, None, name="probes", genes=genes)


def test_collapse_keeps_highest_mean_probe_and_drops_unannotated() -> None:
    report = GeneReport()
    out = collapse_genes(_probe_cohort(), "symbol", report)
    assert list(out.var_names) == ["TP53", "MYC"]
    assert list(out.var["feature_id"]) == ["p2", "p3"]  # p2 has the higher mean for TP53
    assert report.dropped_unannotated["probes"] == ["ctl"]
    assert report.collapsed["probes"] == 1


def test_real_cohorts_align_and_report_dropped() -> None:
    report = GeneReport()
    acrg, yonsei = align_cohorts(
        [load_dataset("gastric_acrg"), load_dataset("gastric_yonsei")], "symbol", report
    )
    assert list(acrg.var_names) == list(yonsei.var_names)
    assert 1000 <= acrg.n_vars <= 1055  # the README: 1,050 shared genes
    assert len(report.not_shared["gastric_yonsei"]) > 18000
    crc = collapse_genes(load_dataset("colorectal_primary_met"))
    assert crc.var_names.is_unique  # duplicated NanoString symbols collapsed


def test_log_detection_and_negative_values() -> None:
    rng = np.random.default_rng(0)
    counts = pd.DataFrame(rng.poisson(500, (20, 5)).astype(float), columns=list("ABCDE"))
    pre = ExpressionPreprocessor().fit(counts)
    assert pre.log_
    bad = counts.copy()
    bad.iloc[3, 2] = -4.0
    with pytest.raises(InputError, match=r"negative value -4.0 in gene 'C'"):
        pre.transform(bad)
    logged = np.log2(counts + 1)
    assert not ExpressionPreprocessor().fit(logged).log_


def test_preprocessing_uses_training_statistics_only() -> None:
    rng = np.random.default_rng(1)
    train = pd.DataFrame(rng.normal(5, 1, (50, 4)), columns=list("ABCD"))
    test = pd.DataFrame(rng.normal(9, 3, (10, 4)), columns=list("ABCD"))
    pre = ExpressionPreprocessor().fit(train)
    before = (pre.mean_.copy(), pre.sd_.copy())
    z = pre.transform(test)
    assert np.allclose(pre.mean_, before[0]) and np.allclose(pre.sd_, before[1])
    assert z.to_numpy().mean() > 2  # shifted test data stays shifted under training stats
    zb = ExpressionPreprocessor(scale="batch").fit(train).transform(test)
    assert np.allclose(zb.to_numpy().mean(axis=0), 0, atol=1e-9)


def test_missing_values_and_missing_genes() -> None:
    rng = np.random.default_rng(2)
    train = pd.DataFrame(rng.normal(5, 1, (40, 20)), columns=[f"G{i}" for i in range(20)])
    train.iloc[:30, 0] = np.nan  # 75 % missing: gene dropped
    train.iloc[:3, 1] = np.nan  # imputed with the training median
    pre = ExpressionPreprocessor().fit(train)
    assert "G0" not in pre.genes_ and "G1" in pre.genes_
    few = train.drop(columns=["G5"])  # 1 of 19 model genes absent: imputed ...
    assert np.isfinite(pre.transform(few.iloc[3:]).to_numpy()).all()
    # ... but rows 0-2 also lack G1 (NaN): 2 of 19 missing per profile > 10 %, refused by id
    with pytest.raises(InputError, match=r"3 sample\(s\).*missing or not a number: 0 \(2\)"):
        pre.transform(few)
    with pytest.raises(InputError, match=r"absent from the profile.*G10"):
        pre.transform(train.drop(columns=[f"G{i}" for i in range(10, 16)]))


def test_quantile_normalisation_maps_to_reference() -> None:
    rng = np.random.default_rng(3)
    train = pd.DataFrame(rng.normal(5, 1, (30, 50)))
    train.columns = [f"G{i}" for i in range(50)]
    pre = ExpressionPreprocessor(quantile=True).fit(train)
    scaled = train * 3 + 10  # same ranks, other scale: identical after quantile normalisation
    assert np.allclose(pre.transform(train), pre.transform(scaled))


def test_combat_removes_batch_shift() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (60, 30))
    batch = np.repeat(["a", "b"], 30)
    x[batch == "b"] = x[batch == "b"] * 2 + 3
    adj = combat(x, batch)
    gap_before = np.abs(x[batch == "a"].mean(0) - x[batch == "b"].mean(0)).mean()
    gap_after = np.abs(adj[batch == "a"].mean(0) - adj[batch == "b"].mean(0)).mean()
    assert gap_after < 0.1 * gap_before


def test_pooled_cohorts_combat_inside_folds_and_saved(tmp_path) -> None:
    from metastat.data.pool import pool_cohorts
    from metastat.data.target import make_target
    from metastat.expression.model import RiskModel
    from metastat.expression.persist import load_model, save_model

    pooled = pool_cohorts([load_dataset("breast_vdx"), load_dataset("breast_nki")], "dmfs")
    assert set(pooled.obs["cohort"]) == {"breast_vdx", "breast_nki"}
    assert pooled.obs["patient_id"].is_unique and pooled.n_vars > 200
    ok = pooled.obs["time"].notna().to_numpy()
    p = pooled[ok]
    x = pd.DataFrame(np.asarray(p.X), index=p.obs_names, columns=p.var_names)
    y = make_target(p.obs["event"].to_numpy(), p.obs["time"].to_numpy(), np.full(p.n_obs, np.nan))
    batch = p.obs["cohort"].to_numpy()
    model = RiskModel("coxnet", task="survival").fit(x, y, batch=batch)
    with pytest.raises(InputError, match="pass the batch"):
        model.predict(x)
    save_model(model, tmp_path / "m")
    loaded, _ = load_model(tmp_path / "m")
    assert np.allclose(model.predict(x, batch), loaded.predict(x, batch))
