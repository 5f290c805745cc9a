"""Each metric equals the reference implementation (scikit-learn, scikit-survival, lifelines)."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test
from lifelines.utils import concordance_index
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import (
    brier_score,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
)
from sksurv.util import Surv

from metastat.evaluate import metrics as M
from metastat.stats import cox_1d


@pytest.fixture(scope="module")
def surv_data() -> dict:
    rng = np.random.default_rng(1)
    n = 250
    risk = rng.normal(size=n)
    t = np.round(rng.exponential(np.exp(-risk)), 2) + 0.01
    c = rng.exponential(1.5, size=n) + 0.01
    event = t <= c
    time = np.minimum(t, c)
    return {
        "risk": risk,
        "time": time,
        "event": event,
        "y": Surv.from_arrays(event, time),
        "p": 1 / (1 + np.exp(-risk)),
        "yb": (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int),
    }


def test_auc_matches_sklearn(surv_data: dict) -> None:
    d = surv_data
    assert M.auc(d["yb"], d["risk"]) == pytest.approx(roc_auc_score(d["yb"], d["risk"]))
    assert np.isnan(M.auc(np.ones(5), np.arange(5.0)))


def test_sensitivity_specificity_accuracy(surv_data: dict) -> None:
    y, p = surv_data["yb"], surv_data["p"]
    pred = p >= 0.4
    assert M.sensitivity(y, p, 0.4) == pytest.approx(np.mean(pred[y == 1]))
    assert M.specificity(y, p, 0.4) == pytest.approx(np.mean(~pred[y == 0]))
    assert M.accuracy(y, p, 0.4) == pytest.approx(np.mean(pred == y))
    bal = (M.sensitivity(y, p, 0.4) + M.specificity(y, p, 0.4)) / 2
    assert M.balanced_accuracy(y, p, 0.4) == pytest.approx(bal)


def test_harrell_c_matches_lifelines(surv_data: dict) -> None:
    d = surv_data
    ref = concordance_index(d["time"], -d["risk"], d["event"])
    assert M.harrell_c(d["y"], d["risk"]) == pytest.approx(ref, abs=1e-9)


def test_uno_c_and_td_auc_match_sksurv(surv_data: dict) -> None:
    d = surv_data
    tau = float(np.quantile(d["time"], 0.8))
    ref = concordance_index_ipcw(d["y"], d["y"], d["risk"], tau=tau)[0]
    assert M.uno_c(d["y"], d["y"], d["risk"], tau) == pytest.approx(ref)
    t = float(np.median(d["time"]))
    ref_auc = cumulative_dynamic_auc(d["y"], d["y"], d["risk"], [t])[0][0]
    assert M.time_dependent_auc(d["y"], d["y"], d["risk"], t) == pytest.approx(ref_auc)


def test_brier_matches_sksurv(surv_data: dict) -> None:
    d = surv_data
    t = float(np.median(d["time"]))
    s = np.exp(-np.exp(d["risk"]) * t)
    ref = brier_score(d["y"], d["y"], s[:, None], [t])[1][0]
    assert M.brier_at(d["y"], d["y"], s, t) == pytest.approx(ref)
    assert M.brier(d["yb"], d["p"]) == pytest.approx(np.mean((d["p"] - d["yb"]) ** 2))


def test_hazard_ratio_matches_sksurv_and_lifelines(surv_data: dict) -> None:
    d = surv_data
    high = d["risk"] > 0
    ref = np.exp(
        CoxPHSurvivalAnalysis(ties="breslow").fit(high[:, None].astype(float), d["y"]).coef_[0]
    )
    assert M.hazard_ratio(d["y"], high) == pytest.approx(ref, rel=1e-6)
    ref_cont = CoxPHSurvivalAnalysis(ties="breslow").fit(d["risk"][:, None], d["y"]).coef_[0]
    assert cox_1d(d["risk"], d["time"], d["event"]) == pytest.approx(ref_cont, rel=1e-6)
    # without tied times Breslow = Efron, so lifelines must agree too
    import pandas as pd

    rng = np.random.default_rng(7)
    x = rng.normal(size=200)
    t = rng.exponential(np.exp(-x))
    e = rng.random(200) < 0.7
    cph = CoxPHFitter().fit(pd.DataFrame({"x": x, "T": t, "E": e.astype(int)}), "T", "E")
    assert cox_1d(x, t, e) == pytest.approx(cph.params_["x"], rel=1e-4)


def test_logrank_matches_lifelines(surv_data: dict) -> None:
    d = surv_data
    high = d["risk"] > 0
    ref = logrank_test(d["time"][high], d["time"][~high], d["event"][high], d["event"][~high])
    chisq, p = M.logrank(d["y"], high)
    assert chisq == pytest.approx(ref.test_statistic, rel=1e-6)
    assert p == pytest.approx(ref.p_value, rel=1e-6)


def test_calibration_slope_matches_unpenalised_logistic(surv_data: dict) -> None:
    y, p = surv_data["yb"], np.clip(surv_data["p"] * 0.8 + 0.1, 0.01, 0.99)
    lp = np.log(p / (1 - p))
    ref = LogisticRegression(C=np.inf).fit(lp[:, None], y).coef_[0, 0]
    assert M.calibration_slope(y, p) == pytest.approx(ref, rel=2e-3)
    # perfectly calibrated probabilities: slope ~ 1, intercept ~ 0
    rng = np.random.default_rng(0)
    q = rng.uniform(0.05, 0.95, 20000)
    yy = (rng.random(20000) < q).astype(int)
    assert M.calibration_slope(yy, q) == pytest.approx(1.0, abs=0.06)
    assert M.calibration_intercept(yy, q) == pytest.approx(0.0, abs=0.05)


def test_net_benefit_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.2, 0.6, 0.1, 0.05])
    t = 0.5
    expected = 1 / 5 - 1 / 5 * t / (1 - t)
    assert M.net_benefit(y, p, np.array([t]))[0] == pytest.approx(expected)


def test_fast_concordance_equals_sksurv_on_tied_data():
    """The vectorised Harrell / Uno C equal scikit-survival's on tied times and tied risks."""
    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
    from sksurv.util import Surv

    from metastat.evaluate import metrics as M

    rng = np.random.default_rng(3)
    for _ in range(5):
        n = 120
        time = rng.integers(1, 30, n).astype(float)  # whole months: many ties
        event = rng.random(n) < 0.5
        risk = rng.integers(0, 8, n).astype(float)  # tied risks
        y = Surv.from_arrays(event, time)
        assert M.harrell_c(y, risk) == pytest.approx(
            concordance_index_censored(event, time, risk)[0], abs=1e-12
        )
        tau = 20.0
        assert M.uno_c(y, y, risk, tau) == pytest.approx(
            concordance_index_ipcw(y, y, risk, tau=tau)[0], abs=1e-12
        )
        label = (rng.random(n) < 0.4).astype(int)
        from sklearn.metrics import roc_auc_score

        assert M.auc(label, risk) == pytest.approx(roc_auc_score(label, risk), abs=1e-12)


def test_compare_reads_only_the_two_models_it_compares() -> None:
    """Regression: with a third model in the table, compare() took every non-primary row as the
    baseline (held-out MIL benchmark: baseline AUC 0.784 instead of mean pooling's 0.660)."""
    import pandas as pd

    from metastat.errors import ValidationError
    from metastat.evaluate.summary import compare, summarise

    rng = np.random.default_rng(0)
    n = 60
    y = rng.integers(0, 2, n).astype(float)
    rows = []
    for model, signal in (("a", 2.0), ("b", 0.3), ("c", 5.0)):
        risk = signal * y + rng.normal(size=n)
        rows.append(pd.DataFrame({
            "sample_id": [f"s{i}" for i in range(n)],
            "patient_id": [f"p{i // 2}" for i in range(n)],
            "model": model, "repeat": 0, "fold": 0, "risk": risk, "prob": 1 / (1 + np.exp(-risk)),
            "high_risk": risk > 0, "event": y, "time": np.nan, "binary": y,
        }))  # fmt: skip
    three, two = pd.concat(rows), pd.concat(rows[:2])
    got = compare(three, primary="a", baseline="b", n_boot=50)
    want = compare(two, primary="a", baseline="b", n_boot=50)
    assert got["delta_auc"].as_dict() == want["delta_auc"].as_dict()
    b_alone = summarise(rows[1], n_boot=50)["auc"].estimate
    assert got["baseline_auc"].estimate == pytest.approx(b_alone)
    assert got["delta_auc"].estimate == pytest.approx(got["auc"].estimate - b_alone)
    with pytest.raises(ValidationError, match=r"\['z'\]"):
        compare(three, primary="a", baseline="z", n_boot=10)
