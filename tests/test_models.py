"""Expression models: estimator contract, learning a planted signal, calibration, explanations,
persistence without pickle, and refusal of mismatched profiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from metastat.data.target import make_target
from metastat.errors import InputError, ModelError, UnknownNameError
from metastat.evaluate.metrics import auc, harrell_c
from metastat.expression.model import RiskModel
from metastat.expression.persist import load_model, save_model
from metastat.expression.signatures import published_signature, read_gene_sets
from tests.conftest import planted_cohort


def _data(n: int = 200, seed: int = 0):
    expr, clin = planted_cohort(n=n, seed=seed)
    horizon = 24.0
    t, e = clin["months"].to_numpy(), clin["relapse"].to_numpy().astype(float)
    binary = np.where(t > horizon, 0.0, np.where(e == 1, 1.0, np.nan))
    return expr, make_target(e, t, binary), clin["patient"].to_numpy()


# oracle C-index of the planted risk on these held-out samples: 0.74
@pytest.mark.parametrize(
    ("name", "min_c"),
    [
        ("ensemble", 0.7),
        ("coxnet", 0.7),
        ("baseline_coxnet", 0.66),
        ("logistic", 0.62),
        ("baseline_logistic", 0.62),
        ("gbs", 0.62),
    ],
)
def test_models_learn_planted_signal_on_held_out_patients(name: str, min_c: float) -> None:
    x, y, g = _data(240)
    model = RiskModel(name, task="survival", horizon=24.0, seed=0)
    assert clone(model).get_params() == model.get_params()
    model.fit(x.iloc[:160], y[:160], g[:160])
    risk = model.predict(x.iloc[160:])
    from sksurv.util import Surv

    c = harrell_c(Surv.from_arrays(y["event"][160:], y["time"][160:]), risk)
    assert c > min_c, f"{name}: C-index {c:.3f} on held-out samples"
    prob = model.probability(risk)
    assert np.all((prob >= 0) & (prob <= 1))


def test_ensemble_is_linear_in_genes_and_explains() -> None:
    x, y, g = _data()
    model = RiskModel(
        "ensemble", task="survival", horizon=24.0, signatures=(published_signature("gene70"),)
    ).fit(x, y, g)
    z = model.preprocessor_.transform(x)
    coef = model.gene_coefficients
    assert np.allclose(model.predict(x), z.to_numpy() @ coef.to_numpy() + model.learner_.offset_)
    top5 = set(coef.abs().sort_values(ascending=False).index[:5])
    assert len(top5 & {f"G{i}" for i in range(5)}) >= 3  # planted genes dominate
    assert "gene70" in model.learner_.skipped_signatures_  # not covered by these genes
    expl = model.explain(x.iloc[:2], top=3)
    assert len(expl[0]["genes"]) == 3
    contrib = [gg["contribution"] for gg in expl[0]["genes"]]
    assert abs(contrib[0]) >= abs(contrib[-1])


def test_binary_probability_is_calibrated_on_inner_folds() -> None:
    x, y, g = _data(300, seed=3)
    model = RiskModel("logistic", task="binary").fit(x.iloc[:200], y[:200], g[:200])
    p = model.probability(model.predict(x.iloc[200:]))
    known = ~np.isnan(y["binary"][200:])
    yb = y["binary"][200:][known]
    assert auc(yb, p[known]) > 0.7
    assert abs(p[known].mean() - yb.mean()) < 0.15


def test_save_load_roundtrip_without_pickle(tmp_path: Path) -> None:
    x, y, g = _data()
    model = RiskModel("ensemble", task="survival", horizon=24.0).fit(x, y, g)
    save_model(model, tmp_path / "m", info={"training_cohort": "planted"})
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["arrays.safetensors", "manifest.json"]
    loaded, manifest = load_model(tmp_path / "m")
    assert manifest["training_cohort"] == "planted" and manifest["genes"]
    a, b = model.predict_frame(x), loaded.predict_frame(x)
    assert np.allclose(a["risk"], b["risk"]) and np.allclose(a["prob"], b["prob"])
    assert (a["high_risk"] == b["high_risk"]).all()


def test_saved_model_refuses_profiles_missing_genes(tmp_path: Path) -> None:
    x, y, g = _data()
    model = RiskModel("coxnet", task="survival", horizon=24.0).fit(x, y, g)
    save_model(model, tmp_path / "m")
    loaded, _ = load_model(tmp_path / "m")
    with pytest.raises(InputError, match=r"absent from the profile.*'G1'"):
        loaded.predict(x.drop(columns=["G1", "G2", "G3", "G4", "G5"]))
    renamed = x.rename(columns=lambda c: c.lower())
    with pytest.raises(InputError, match="40 of the model's 40 genes"):
        loaded.predict(renamed)
    imputed = loaded.predict(x.drop(columns=["G30"]))  # 1 of 40 missing: imputed, stated
    assert np.isfinite(imputed).all()
    assert loaded.preprocessor_.missing_genes(x.drop(columns=["G30"])) == ["G30"]


def test_corrupt_model_files_are_detected(tmp_path: Path) -> None:
    x, y, g = _data()
    save_model(RiskModel("coxnet", task="survival", horizon=24.0).fit(x, y, g), tmp_path / "m")
    arr = tmp_path / "m" / "arrays.safetensors"
    data = bytearray(arr.read_bytes())
    data[-1] ^= 0xFF
    arr.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelError, match="not a metastat model"):
        load_model(tmp_path)


@pytest.mark.parametrize("name", ["gbs", "rsf"])
def test_tree_models_are_saved_as_arrays_and_reproduce_exactly(name: str, tmp_path: Path) -> None:
    x, y, g = _data(120)
    model = RiskModel(name, task="survival", horizon=24.0, n_interval=0).fit(x, y, g)
    save_model(model, tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["format"] == "metastat.expression.trees/1"
    assert manifest["trees"]["n_trees"] == 200
    loaded, _ = load_model(tmp_path / "m")
    x_new, _, _ = _data(60, seed=5)
    np.testing.assert_array_equal(loaded.predict(x_new), model.predict(x_new))
    np.testing.assert_array_equal(
        loaded.predict_frame(x_new)["prob"], model.predict_frame(x_new)["prob"]
    )
    with pytest.raises(InputError, match="linear in its features"):
        loaded.explain(x_new)


def test_format_1_models_still_load(tmp_path: Path) -> None:
    x, y, g = _data()
    model = RiskModel("coxnet", task="survival", horizon=24.0).fit(x, y, g)
    out = save_model(model, tmp_path / "m")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format"] = "metastat.expression.linear/1"  # as written before the shared bundle
    manifest["sha256"] = manifest["sha256"]["arrays.safetensors"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    loaded, _ = load_model(out)
    np.testing.assert_array_equal(loaded.predict_frame(x)["prob"], model.predict_frame(x)["prob"])


def test_unknown_model_and_survival_model_without_times() -> None:
    x, y, g = _data(60)
    with pytest.raises(UnknownNameError, match="Did you mean 'coxnet'"):
        RiskModel("coxnt").fit(x, y, g)
    y_nt = make_target(y["event"], None, y["binary"])
    with pytest.raises(InputError, match="needs follow-up times"):
        RiskModel("coxnet").fit(x, y_nt, g)


def test_user_gene_sets(tmp_path: Path) -> None:
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("PLANTED\tgenes G0-G4\tG0\tG1\tG2\tG3\tG4\nBAD\n")
    with pytest.raises(InputError, match="line 2"):
        read_gene_sets(gmt)
    gmt.write_text("PLANTED\tgenes G0-G4\tG0\tG1\tG2\tG3\tG4\n")
    (sig,) = read_gene_sets(gmt)
    x, y, g = _data()
    model = RiskModel("signature", task="survival", horizon=24.0, signatures=(sig,)).fit(x, y, g)
    from sksurv.util import Surv

    assert harrell_c(Surv.from_arrays(y["event"], y["time"]), model.predict(x)) > 0.7


def test_profiles_on_another_scale_are_flagged(tmp_path: Path) -> None:
    x, y, g = _data()
    model = RiskModel("coxnet", task="survival", horizon=24.0).fit(x, y, g)
    assert model.preprocessor_.check_scale(x) == []
    other_platform = x * 0.3  # e.g. log10 values scored by a log2-trained model
    warnings = model.preprocessor_.check_scale(other_platform.iloc[:3])
    assert len(warnings) == 3 and "another platform" in warnings[0]
    save_model(model, tmp_path / "m")
    loaded, _ = load_model(tmp_path / "m")
    assert len(loaded.preprocessor_.check_scale(other_platform.iloc[:3])) == 3
