"""The one Cox partial likelihood (metastat.core.cox) against lifelines and scikit-survival."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from lifelines import CoxPHFitter  # noqa: E402
from sksurv.linear_model.coxph import CoxPHOptimizer  # noqa: E402

from metastat.core.cox import cox_nll, cox_nll_numpy  # noqa: E402


def test_two_tied_events_regression():
    """Issue 10: tied subjects are in each other's risk sets (Breslow 0.951, not 0.851)."""
    risk, time, event = [0.5, -1.0], [3.0, 3.0], [1.0, 1.0]
    s = np.log(np.exp(0.5) + np.exp(-1.0))
    assert cox_nll_numpy(risk, time, event, "breslow") == pytest.approx((0.5 + 2 * s) / 2)
    assert cox_nll_numpy(risk, time, event, "breslow") == pytest.approx(0.9514, abs=1e-4)
    # Efron: the second tied death sees the risk set minus half the tied mass
    assert cox_nll_numpy(risk, time, event, "efron") == pytest.approx((0.5 + 2 * s - np.log(2)) / 2)


def _tied_cohort(seed: int = 0, n: int = 60):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    time = rng.integers(1, 8, size=n).astype(float)  # whole months: many ties
    event = (rng.random(n) < 0.7).astype(float)
    return x, time, event


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_matches_scikit_survival_on_tied_data(ties):
    x, time, event = _tied_cohort()
    opt = CoxPHOptimizer(x[:, None], event.astype(bool), time, alpha=np.zeros(1), ties=ties)
    for beta in (-0.8, 0.0, 0.7):
        ref = opt.nlog_likelihood(np.array([beta]))  # sksurv: mean over samples
        ours = cox_nll_numpy(beta * x, time, event, ties) * event.sum() / len(x)
        assert ours == pytest.approx(ref, rel=1e-10)


def test_efron_matches_lifelines_at_its_optimum():
    x, time, event = _tied_cohort(1)
    cph = CoxPHFitter().fit(pd.DataFrame({"x": x, "t": time, "e": event}), "t", "e")
    beta = float(cph.params_["x"])
    ours = -cox_nll_numpy(beta * x, time, event, "efron") * event.sum()
    assert ours == pytest.approx(cph.log_likelihood_, rel=1e-10)


def test_gradient_is_zero_at_the_fitted_coefficient():
    """Minimising our Breslow loss recovers scikit-survival's Breslow coefficient."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    x, time, event = _tied_cohort(2)
    ref = CoxPHSurvivalAnalysis(ties="breslow").fit(
        x[:, None], Surv.from_arrays(event.astype(bool), time)
    )
    beta = torch.tensor(float(ref.coef_[0]), dtype=torch.float64, requires_grad=True)
    loss = cox_nll(beta * torch.as_tensor(x), torch.as_tensor(time), torch.as_tensor(event))
    loss.backward()
    assert abs(float(beta.grad)) < 1e-6


def test_no_events_and_untied_cases():
    r = torch.tensor([0.3, -0.2], requires_grad=True)
    loss = cox_nll(r, torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))
    assert float(loss.detach()) == 0.0
    loss.backward()  # still differentiable
    # without ties both methods agree
    x, _, event = _tied_cohort(3)
    time = np.arange(len(x), dtype=float)
    assert cox_nll_numpy(x, time, event, "efron") == pytest.approx(
        cox_nll_numpy(x, time, event, "breslow")
    )
    with pytest.raises(ValueError, match="ties"):
        cox_nll_numpy(x, time, event, "exact")  # type: ignore[arg-type]
