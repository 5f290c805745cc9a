"""The one Target type (metastat.data.target) and the predictions-table builder / checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metastat.data.outcomes import Outcome
from metastat.data.target import Target
from metastat.errors import InputError
from metastat.evaluate.predictions import PREDICTION_COLUMNS, check_predictions, prediction_frame


def test_target_kinds_strata_and_binary_at_horizon():
    surv = Target(time=np.array([1.0, 5.0, 2.0, 9.0]), event=np.array([1, 0, 0, 1]), horizon=3.0)
    assert surv.kind == "survival"
    # event by 3: yes; event-free beyond 3; censored before 3 -> unknown; event after 3 -> 0
    assert np.array_equal(surv.binary, [1.0, 0.0, np.nan, 0.0], equal_nan=True)
    assert surv.strata().tolist() == [1, 0, 0, 1]
    assert surv.subset(np.array([3])).time.tolist() == [9.0]
    multi = Target(label=np.array([0, 2, 1]), classes=("a", "b", "c"))
    assert multi.kind == "multiclass" and np.isnan(multi.binary).all()
    assert multi.truth()["label"].tolist() == ["a", "c", "b"]
    # a fold may miss a class: the class list, not the labels seen, decides the kind
    assert multi.subset(np.array([0, 2])).kind == "multiclass"
    binary = Target(label=np.array([0, 1]), classes=("no", "yes"))
    assert binary.kind == "binary" and binary.binary.tolist() == [0.0, 1.0]


def test_target_from_outcome():
    o = Outcome("dfs", "survival", np.array([1.0, 0.0]), np.array([2.0, 8.0]), "months", 5.0,
                np.array([1.0, 0.0]))  # fmt: skip
    t = Target.from_outcome(o)
    assert t.kind == "survival" and t.horizon == 5.0 and t.binary.tolist() == [1.0, 0.0]


def _scores(n=4):
    return pd.DataFrame(
        {"risk": np.linspace(-1, 1, n), "prob": np.linspace(0.1, 0.9, n), "high_risk": [0, 0, 1, 1]}
    )


def test_prediction_frame_orders_and_validates_columns():
    truth = Target(label=np.array([0, 1, 0, 1]), classes=("0", "1")).truth()
    out = prediction_frame(
        _scores(), truth, sample_id=list("abcd"), patient_id=list("aabb"), model="m",
        repeat=0, fold=2, seed=7,
    )  # fmt: skip
    assert set(PREDICTION_COLUMNS) <= set(out.columns)
    assert list(out.columns[:6]) == ["sample_id", "patient_id", "model", "repeat", "fold", "seed"]
    assert out["binary"].tolist() == [0.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("prob", 1.5, "'prob' must be a probability"),
        ("risk", np.nan, "'risk' must be finite"),
        ("binary", 2.0, "'binary' must be 0, 1 or NaN"),
        ("time", -1.0, "non-negative follow-up"),
        ("sample_id", "a", "unique per model and repeat"),
    ],
)
def test_check_predictions_names_column_and_sample(column, value, message):
    truth = Target(time=np.arange(1.0, 5.0), event=np.array([1, 0, 1, 0])).truth()
    out = prediction_frame(
        _scores(), truth, sample_id=list("abcd"), patient_id=list("abcd"), model="m",
        repeat=0, fold=0,
    )  # fmt: skip
    out.loc[1, column] = value
    with pytest.raises(InputError, match=message):
        check_predictions(out)
    with pytest.raises(InputError, match="lacks columns \\['fold'\\]"):
        check_predictions(out.drop(columns="fold"))
