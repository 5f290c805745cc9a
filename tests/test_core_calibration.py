"""The one calibrator (metastat.core.calibration) and the training-median risk cut."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import CoxPHFitter
from scipy.special import expit

from metastat.core.calibration import Calibrator, median_cut


def test_platt_recovers_a_logistic_link():
    rng = np.random.default_rng(0)
    risk = rng.normal(size=4000)
    y = (rng.random(4000) < expit(-0.5 + 2.0 * risk)).astype(float)
    y[:50] = np.nan  # unknown status is skipped
    a, b = Calibrator().fit_platt(risk, y).platt  # type: ignore[misc]
    assert a == pytest.approx(-0.5, abs=0.15) and b == pytest.approx(2.0, abs=0.2)


def test_smoothed_platt_is_finite_on_separated_data_and_falls_back():
    risk = np.r_[np.linspace(-8, -2, 5), np.linspace(2, 8, 5)]
    y = np.r_[np.zeros(5), np.ones(5)]
    cal = Calibrator().fit_platt(risk, y, smooth=True)
    assert cal.platt is not None and 0 < cal.platt[1] < 5
    p = cal.probability(risk)
    assert ((p > 0.01) & (p < 0.99)).all() and (np.diff(p) > 0).all()
    assert Calibrator().fit_platt(risk[:4], y[:4], fallback=(0.0, 1.0)).platt == (0.0, 1.0)
    assert np.isnan(Calibrator().probability(risk)).all()


def test_cox_recalibration_matches_lifelines_slope_and_baseline():
    rng = np.random.default_rng(1)
    n = 300
    risk = rng.normal(size=n)
    time = np.ceil(rng.exponential(20 * np.exp(-0.8 * risk)))  # whole months: ties
    event = rng.random(n) < 0.8
    cal = Calibrator().fit_cox(risk, time, event)
    import pandas as pd

    df = pd.DataFrame({"x": risk, "t": time, "e": event.astype(int)})
    cph = CoxPHFitter().fit(df, "t", "e")
    assert cal.cox_slope == pytest.approx(float(cph.params_["x"]), abs=0.02)  # Breslow vs Efron
    s = cal.survival_at(np.array([0.0]), np.array([10.0, 30.0]))[0]
    assert (s > 0).all() and (s < 1).all() and s[1] < s[0]
    p = cal.probability(np.array([-1.0, 1.0]), horizon=12.0)
    assert p[1] > p[0]
    fixed = Calibrator().fit_cox(risk, time, event, fit_slope=False)
    assert fixed.cox_slope == 1.0


def test_state_round_trip_and_legacy_mil_form():
    cal = Calibrator(platt=(0.1, 1.5)).fit_cox(
        np.array([0.1, -0.3, 0.5, 0.0]), np.array([1.0, 2.0, 2.0, 3.0]), np.array([1, 0, 1, 1])
    )
    meta, arrays = cal.to_state()
    back = Calibrator.from_state(meta, arrays)
    risk = np.array([-1.0, 0.0, 2.0])
    assert np.allclose(back.probability(risk, 2.5), cal.probability(risk, 2.5))
    assert np.allclose(Calibrator.from_dict(cal.to_dict()).probability(risk), cal.probability(risk))
    old = Calibrator.from_dict({"method": "platt", "intercept": 0.1, "slope": 1.5})
    assert old.platt == (0.1, 1.5)
    old = Calibrator.from_dict({"method": "breslow", "times": [1.0, 2.0], "cumhaz": [0.1, 0.3]})
    assert old.cox_slope == 1.0 and old.probability(np.zeros(1), 2.0)[0] == pytest.approx(
        1 - np.exp(-0.3)
    )


def test_median_cut_ignores_nan():
    assert median_cut(np.array([1.0, np.nan, 3.0, 2.0])) == 2.0
