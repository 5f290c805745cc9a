"""Splits keep patients apart, stratify, refuse folds without events; bootstrap CIs behave."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metastat.data.registry import load_dataset
from metastat.errors import ValidationError
from metastat.evaluate import bootstrap_metrics, patient_kfold, train_validation_split


def test_real_multi_sample_patients_never_cross_folds() -> None:
    adata = load_dataset("colorectal_primary_met")  # primaries + matched metastases
    groups = adata.obs["patient_id"].to_numpy()
    assert pd.Series(groups).value_counts().max() >= 2
    labels = (adata.obs["Type"] == "Met").to_numpy().astype(int)
    splits = patient_kfold(groups, labels, n_splits=5, n_repeats=2, seed=3)
    assert len(splits) == 10
    for s in splits:
        assert not set(groups[s.train]) & set(groups[s.test])
        assert len(np.intersect1d(s.train, s.test)) == 0
    for r in range(2):
        test_idx = np.concatenate([s.test for s in splits if s.repeat == r])
        assert np.array_equal(np.sort(test_idx), np.arange(len(groups)))


def test_splits_are_seeded_and_stratified() -> None:
    rng = np.random.default_rng(0)
    groups = np.arange(200).astype(str)
    labels = (rng.random(200) < 0.3).astype(int)
    a = patient_kfold(groups, labels, n_splits=5, seed=1)
    b = patient_kfold(groups, labels, n_splits=5, seed=1)
    assert all(np.array_equal(x.test, y.test) for x, y in zip(a, b, strict=True))
    rates = [labels[s.test].mean() for s in a]
    assert max(rates) - min(rates) < 0.1


def test_too_few_events_is_a_clear_error() -> None:
    groups = np.arange(20).astype(str)
    labels = np.zeros(20, dtype=int)
    labels[:3] = 1
    with pytest.raises(ValidationError, match="too few patients per class"):
        patient_kfold(groups, labels, n_splits=5)


def test_validation_split_is_patient_disjoint() -> None:
    groups = np.repeat(np.arange(50).astype(str), 3)
    labels = np.repeat(np.arange(50) % 2, 3)
    tr, va = train_validation_split(groups, labels, fraction=0.2, seed=0)
    assert not set(groups[tr]) & set(groups[va])
    assert len(tr) + len(va) == len(groups)


def test_bootstrap_ci_covers_estimate_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"patient_id": np.repeat(np.arange(100), 2), "v": rng.normal(size=200)})
    fn = lambda d: {"mean": float(d["v"].mean())}  # noqa: E731
    a = bootstrap_metrics(frame, fn, n_boot=300, seed=5)["mean"]
    b = bootstrap_metrics(frame, fn, n_boot=300, seed=5)["mean"]
    assert a == b
    assert a.ci_low < a.estimate < a.ci_high
    # CI width ~ 2 * 1.96 * sd / sqrt(n_patients) with clustered pairs
    assert 0.15 < a.ci_high - a.ci_low < 0.45


def test_multiclass_strata_split_regression() -> None:
    """Issue 10: class indices are not event counts; a balanced {0, 2} cohort must split."""
    groups = np.arange(60).astype(str)
    labels = np.repeat([0, 2], 30)
    splits = patient_kfold(groups, labels, n_splits=5, seed=0)
    assert len(splits) == 5
    for s in splits:
        assert set(labels[s.test]) == {0, 2}
    three = np.tile([0, 1, 2], 20)
    assert len(patient_kfold(groups, three, n_splits=5, seed=0)) == 5


def test_fold_without_the_reference_class_is_refused(monkeypatch) -> None:
    from metastat.evaluate import splits as S

    with pytest.raises(ValidationError, match="classes \\[1, 2\\] only"):
        S._check_fold(np.array([1, 2, 2]), 0, 1, "repeat 0, fold 0")
    with pytest.raises(ValidationError, match="0 events among 3 samples"):
        S._check_fold(np.array([0, 0, 0]), 0, 1, "repeat 0, fold 0")
