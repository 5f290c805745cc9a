"""Outcomes: censored-before-horizon excluded (never negative); clear errors on bad columns."""

from __future__ import annotations

import numpy as np
import pytest

from metastat.data.cohort import make_cohort
from metastat.data.outcomes import binary_at_horizon, parse_horizon, resolve_outcome
from metastat.errors import InputError, UnknownNameError
from tests.conftest import planted_cohort


def test_censored_before_horizon_is_excluded_not_negative() -> None:
    time = np.array([10.0, 10.0, 70.0, 70.0, np.nan])
    event = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    out = binary_at_horizon(time, event, 60.0)
    assert out[0] == 1.0
    assert np.isnan(out[1])  # censored at 10 < 60: unknown, excluded
    assert out[2] == 0.0 and out[3] == 0.0  # followed beyond the horizon, event-free at 60
    assert np.isnan(out[4])


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [
        ("5y", "days", 5 * 365.25),
        ("36m", "months", 36.0),
        ("3y", "months", 36.0),
        ("1826d", "days", 1826.0),
        (12, "months", 12.0),
    ],
)
def test_parse_horizon(text: object, unit: str, value: float) -> None:
    assert parse_horizon(text, unit) == pytest.approx(value)


def test_parse_horizon_rejects_garbage() -> None:
    with pytest.raises(InputError, match="horizon"):
        parse_horizon("five years", "days")


def _cohort(**spec: object):
    expr, clin = planted_cohort(n=30)
    clin["status"] = np.where(clin["relapse"] == 1, "yes", "no")
    outcome = {
        "kind": "survival",
        "event": "relapse",
        "time": "months",
        "time_unit": "months",
        "horizon": 24.0,
    } | spec
    return make_cohort(expr, clin, name="toy", outcomes={"dfs": outcome})


def test_misspelled_outcome_column_names_it_and_suggests() -> None:
    with pytest.raises(InputError, match=r"no column 'monthz'.*Did you mean 'months'"):
        resolve_outcome(_cohort(time="monthz"), "dfs")
    with pytest.raises(UnknownNameError, match="Did you mean 'dfs'"):
        resolve_outcome(_cohort(), "dsf")


def test_non_numeric_event_column_needs_declared_values() -> None:
    with pytest.raises(InputError, match="event column 'status' has non-numeric value"):
        resolve_outcome(_cohort(event="status"), "dfs")
    ok = resolve_outcome(_cohort(event="status", positive=("yes",)), "dfs")
    assert set(np.unique(ok.event)) <= {0.0, 1.0}


def test_horizon_binary_excludes_early_censoring_on_cohort() -> None:
    out = resolve_outcome(_cohort(), "dfs")
    early_censored = (out.time < 24) & (out.event == 0)
    assert not out.binary_mask[early_censored].any()
    assert out.binary_mask[~early_censored].all()
