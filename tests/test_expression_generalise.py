"""Issue 9: single-sample scoring on any platform, the overlap guard, user-file external
cohorts and the warnings that name a problem (real cohorts; small models for speed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from metastat.cli.main import app
from metastat.data.cohort import expression_frame
from metastat.data.genes import collapse_genes
from metastat.data.registry import load_dataset
from metastat.expression.model import RiskModel
from metastat.expression.scale import detect_scale
from metastat.expression.validate import external_validate, fit_cohort

runner = CliRunner()


@pytest.fixture(scope="module")
def acrg() -> pd.DataFrame:
    return expression_frame(collapse_genes(load_dataset("gastric_acrg")))


@pytest.fixture(scope="module")
def rank_model(acrg: pd.DataFrame) -> RiskModel:
    """A rank-representation CoxNet fitted on ACRG (recurrence, DFS time)."""
    adata = load_dataset("gastric_acrg")
    est, _ = fit_cohort(adata, "recurrence", model="coxnet", representation="rank", n_genes=300)
    return est


def test_single_profile_scores_exactly_as_in_a_batch(rank_model: RiskModel) -> None:
    yonsei = expression_frame(collapse_genes(load_dataset("gastric_yonsei")))
    batch = rank_model.predict_frame(yonsei.iloc[:20])
    for i in (0, 7, 19):
        alone = rank_model.predict_frame(yonsei.iloc[[i]])
        assert alone["risk"].iloc[0] == batch["risk"].iloc[i]  # exactly, not approximately
        assert alone["prob"].iloc[0] == batch["prob"].iloc[i]
    # and a different company in the batch changes nothing
    shuffled = rank_model.predict_frame(yonsei.iloc[19::-1])
    assert (shuffled["risk"].loc[batch.index] == batch["risk"]).all()


def test_scores_invariant_to_log_vs_linear_and_platform_offsets(rank_model: RiskModel) -> None:
    yonsei = expression_frame(collapse_genes(load_dataset("gastric_yonsei"))).iloc[:10]
    log2 = rank_model.predict(yonsei)
    linear = rank_model.predict(2.0**yonsei)  # unlogged intensities
    shifted = rank_model.predict(yonsei * 1.7 + 3.0)  # another platform's scale and offset
    np.testing.assert_array_equal(log2, linear)
    np.testing.assert_array_equal(log2, shifted)
    assert rank_model.platform_independent
    assert rank_model.preprocessor_.check_scale(2.0**yonsei) == []


def test_rank_model_on_another_platform_is_not_saturated(rank_model: RiskModel) -> None:
    """The bug of the issue: ACRG-trained model, Yonsei (log2) profiles -> all 0.99999."""
    yonsei = expression_frame(collapse_genes(load_dataset("gastric_yonsei"))).iloc[:6]
    frame = rank_model.predict_frame(yonsei)
    assert frame["prob"].between(0.02, 0.98).all()
    assert frame["risk_percentile"].nunique() > 1


def test_probability_interval_brackets_the_probability(rank_model: RiskModel) -> None:
    yonsei = expression_frame(collapse_genes(load_dataset("gastric_yonsei"))).iloc[:8]
    f = rank_model.predict_frame(yonsei)
    assert (f["probability_ci_low"] <= f["prob"] + 1e-9).all()
    assert (f["prob"] <= f["probability_ci_high"] + 1e-9).all()
    assert (f["probability_ci_high"] - f["probability_ci_low"] > 0).all()
    assert "bootstrap" in rank_model.interval_method


def test_saved_rank_model_scores_identically(rank_model: RiskModel, tmp_path: Path) -> None:
    from metastat.expression.persist import load_model, save_model

    save_model(rank_model, tmp_path / "m")
    loaded, manifest = load_model(tmp_path / "m")
    assert manifest["preprocessing"]["representation"] == "rank"
    assert manifest["platform_independent"] is True
    yonsei = expression_frame(collapse_genes(load_dataset("gastric_yonsei"))).iloc[:5]
    a, b = rank_model.predict_frame(yonsei), loaded.predict_frame(yonsei)
    np.testing.assert_allclose(a["risk"], b["risk"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a["probability_ci_low"], b["probability_ci_low"], atol=1e-12)


def test_blank_profile_is_refused_naming_the_sample(rank_model: RiskModel) -> None:
    from metastat.errors import InputError

    yonsei = expression_frame(collapse_genes(load_dataset("gastric_yonsei"))).iloc[:3].copy()
    yonsei.iloc[1, :] = np.nan
    with pytest.raises(InputError, match=yonsei.index[1]):
        rank_model.predict(yonsei)


def test_overlap_guard_excludes_renormalised_copies() -> None:
    """Test samples that are training samples (renamed and rescaled) are found and excluded."""
    from metastat.data.cohort import make_cohort

    train = load_dataset("breast_transbig")
    vdx = load_dataset("breast_vdx")
    probes = list(train.var_names)
    others = expression_frame(vdx)[probes].iloc[:48]
    copies = expression_frame(train).iloc[:12] * 1.3 + 0.5  # re-normalised copies
    copies.index = [f"COPY_{i}" for i in range(12)]
    expr = pd.concat([copies, others])
    clin = pd.DataFrame(
        {
            "e.tdm": np.r_[train.obs["e.tdm"].to_numpy()[:12], vdx.obs["e.dmfs"].to_numpy()[:48]],
            "t.tdm": np.r_[train.obs["t.tdm"].to_numpy()[:12], vdx.obs["t.dmfs"].to_numpy()[:48]],
        },
        index=expr.index,
    )
    test = make_cohort(
        expr,
        clin,
        name="vdx_with_copies",
        genes=train.var[["symbol", "entrez"]],
        outcomes=train.uns["metastat"]["outcomes"],
    )
    res = external_validate(train, test, "dmfs", model="coxnet", n_boot=0, progress=False)
    assert res.meta["duplicates_excluded"] == 12
    assert not set(res.predictions["sample_id"]) & set(copies.index)
    assert any("duplicate training samples" in w for w in res.meta["warnings"])
    kept = external_validate(
        train, test, "dmfs", model="coxnet", n_boot=0, progress=False, keep_duplicates=True
    )
    assert kept.meta["duplicates_excluded"] == 0
    assert set(copies.index) <= set(kept.predictions["sample_id"])


def test_scale_check_recognises_linear_ratios_and_says_when_undecided() -> None:
    rng = np.random.default_rng(0)
    ratios = np.exp(rng.normal(0, 0.6, (50, 500)))  # 99th percentile ~4
    assert np.quantile(ratios, 0.99) < 5
    assert detect_scale(ratios).kind == "linear"
    assert detect_scale(np.log2(ratios)).kind == "log"
    assert detect_scale(np.exp(rng.normal(0, 0.3, (50, 500)))).kind == "undecided"
    for name in ("gastric_acrg", "gastric_yonsei", "breast_vdx", "breast_nki"):
        assert detect_scale(np.asarray(load_dataset(name).X, float)).kind == "log"
    assert detect_scale(np.asarray(load_dataset("colorectal_primary_met").X, float)).kind == (
        "linear"
    )


def test_warnings_dropped_times_few_events_probe_ids(tmp_path: Path) -> None:
    from metastat.expression import checks

    ids = np.array(["a", "b", "c", "d"])
    keep, msgs = checks.dropped_samples(
        ids, np.array([1.0, np.nan, 0.0, 5.0]), np.array([1.0, 0.0, 1.0, 0.0]), "cohort 'x'"
    )
    assert keep.tolist() == [True, False, False, True]
    assert any("1 sample(s) with no follow-up time: b" in m for m in msgs)
    assert any("follow-up time <= 0: c" in m for m in msgs)
    assert checks.few_events([12, 8, 15], "cohort 'x'")[0].startswith(
        "cohort 'x': 1 test set(s) have fewer than 10 events (fold 1: 8)"
    )
    assert checks.events_per_variable(30, 10, "m")  # 3 events per variable
    w = checks.gene_id_warning(pd.Index(["1007_s_at", "1053_at", "117_at"]), "table")
    assert w is not None and "probe ids" in w
    assert "accession" in checks.gene_id_warning(pd.Index(["NM_003748", "NM_003862"]), "t")
    assert checks.gene_id_warning(pd.Index(["TP53", "ESR1", "MKI67"]), "t") is None


def test_evaluate_warns_about_missing_times_and_few_events(tmp_path: Path) -> None:
    from tests.conftest import planted_cohort

    expr, clin = planted_cohort(n=80, n_genes=30)
    clin.loc[clin.index[:3], "months"] = np.nan
    clin["relapse"] = 0
    clin.loc[clin.index[3:14], "relapse"] = 1  # 11 events: ~2 per test fold
    e, c = tmp_path / "e.csv", tmp_path / "c.csv"
    expr.to_csv(e)
    clin.to_csv(c)
    r = runner.invoke(
        app,
        [
            "expression", "evaluate", "--expression", str(e), "--clinical", str(c),
            "--outcome", "relapse", "--event-col", "relapse", "--time-col", "months",
            "--time-unit", "months", "--model", "coxnet", "--cv", "3", "--n-boot", "20",
            "--out", str(tmp_path / "run"), "--json",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    text = " ".join(run["warnings"])
    assert "dropped 3 sample(s) with no follow-up time: S000, S001, S002" in text
    assert "fewer than 10 events" in text


def test_user_file_as_external_test_cohort(tmp_path: Path) -> None:
    """`--test FILE --test-clinical FILE` with test column names defaulting to training ones."""
    from tests.conftest import planted_cohort

    tr_e, tr_c = planted_cohort(n=100, n_genes=30, seed=1)
    te_e, te_c = planted_cohort(n=60, n_genes=30, seed=2)
    te_e.index = [f"T{i:03d}" for i in range(len(te_e))]
    te_c.index = te_e.index
    te_c = te_c.rename(columns={"months": "fu_months"})
    te_c["patient"] = [f"Q{i}" for i in range(len(te_c))]
    paths = {}
    for name, frame in {"tre": tr_e, "trc": tr_c, "tee": 2.0**te_e, "tec": te_c}.items():
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index_label="sample_id")
    r = runner.invoke(
        app,
        [
            "expression", "evaluate", "--expression", str(paths["tre"]),
            "--clinical", str(paths["trc"]), "--outcome", "relapse", "--event-col", "relapse",
            "--time-col", "months", "--time-unit", "months", "--patient-col", "patient",
            "--test", str(paths["tee"]), "--test-clinical", str(paths["tec"]),
            "--test-time-col", "fu_months", "--model", "coxnet", "--representation", "rank",
            "--n-boot", "50", "--json",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    metrics = json.loads(lines[-1])
    assert metrics["c_index"]["estimate"] > 0.6  # planted signal survives the linear-scale test
    assert {"baseline_c_index", "delta_c_index"} <= set(metrics)


def test_cli_user_test_needs_its_clinical_table(tmp_path: Path) -> None:
    from tests.conftest import planted_cohort

    e, c = planted_cohort(n=40, n_genes=10)
    e.to_csv(tmp_path / "e.csv")
    c.to_csv(tmp_path / "c.csv")
    r = runner.invoke(
        app,
        [
            "expression", "evaluate", "--expression", str(tmp_path / "e.csv"),
            "--clinical", str(tmp_path / "c.csv"), "--outcome", "relapse",
            "--event-col", "relapse", "--test", str(tmp_path / "e.csv"),
        ],
    )  # fmt: skip
    assert r.exit_code != 0
    assert "--test-clinical" in str(r.exception)


def test_signature_library_names_and_provenance() -> None:
    from metastat.expression.signatures import library_version, published_signature, signature_table

    table = signature_table()
    for name in ("gene70", "gene76", "oncotype_rs", "aurka_proliferation", "esr1_module",
                 "erbb2_module", "stat1_immune", "plau_stromal", "emt_mesenchymal"):  # fmt: skip
        assert name in table.index
        assert table.loc[name, "citation"]
    assert library_version()
    rs = published_signature("oncotype_rs")
    assert rs.weights["MKI67"] > 0 > rs.weights["ESR1"]
    r = runner.invoke(app, ["expression", "signatures"])
    assert r.exit_code == 0 and "oncotype_rs" in r.output


def test_patients_shared_by_id_are_excluded_not_silently_scored() -> None:
    from metastat.errors import ValidationError

    acrg = load_dataset("gastric_acrg")
    with pytest.raises(ValidationError, match="every test sample"):
        external_validate(acrg, acrg.copy(), "recurrence", model="logistic", n_boot=0,
                          progress=False)  # fmt: skip


def test_td_auc_that_cannot_be_computed_says_why() -> None:
    from metastat.data.outcomes import Outcome
    from metastat.evaluate.bootstrap import Estimate
    from metastat.expression.validate import _metric_notes

    out = Outcome("dmfs", "survival", np.ones(3), np.ones(3), "days", 9999.0, np.ones(3))
    notes = _metric_notes({"td_auc": Estimate(float("nan"), float("nan"), float("nan"))}, out)
    assert notes and "outside the test follow-up" in notes[0] and "--horizon" in notes[0]


def test_cli_model_names_match_the_registry() -> None:
    from metastat.cli.expression import MODEL_NAMES
    from metastat.expression.model import MODELS

    assert MODEL_NAMES.split(", ") == sorted(MODELS)
