"""Patient-grouped splits: no patient ever contributes samples to both train and test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import ShuffleSplit, StratifiedGroupKFold, StratifiedShuffleSplit

from metastat.errors import ValidationError


@dataclass(frozen=True)
class Split:
    """One train/test split (indices into the cohort's samples)."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def patient_labels(groups: np.ndarray, labels: np.ndarray) -> pd.Series:
    """One stratification label per patient (the max over that patient's samples)."""
    return pd.Series(labels).groupby(np.asarray(groups)).max()


def patient_kfold(
    groups: np.ndarray,
    labels: np.ndarray,
    *,
    n_splits: int = 5,
    n_repeats: int = 1,
    seed: int = 0,
    min_events: int = 1,
) -> list[Split]:
    """Repeated, patient-grouped, label-stratified k-fold.

    ``labels`` is the stratification label per sample (event indicator or class); folds are
    checked to hold at least ``min_events`` events and one non-event in each test fold, and the
    train/test patient sets are checked to be disjoint.
    """
    groups = np.asarray(groups).astype(str)
    labels = np.asarray(labels).astype(int)
    n_patients = len(np.unique(groups))
    if n_splits < 2:
        raise ValidationError(f"cross-validation needs at least 2 folds, got {n_splits}.")
    if n_patients < n_splits:
        raise ValidationError(f"only {n_patients} patients for {n_splits} folds.")
    per_patient = patient_labels(groups, labels)
    if per_patient.value_counts().min() < n_splits or per_patient.nunique() < 2:
        raise ValidationError(
            f"too few patients per class for {n_splits}-fold CV (patients per class: "
            f"{per_patient.value_counts().to_dict()}); use fewer folds."
        )
    splits: list[Split] = []
    for r in range(n_repeats):
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + r)
        for f, (tr, te) in enumerate(cv.split(np.zeros(len(groups)), labels, groups)):
            split = Split(r, f, np.sort(tr), np.sort(te))
            check_disjoint(groups, split)
            events = int(labels[te].sum())
            if events < min_events or events == len(te):
                raise ValidationError(
                    f"repeat {r}, fold {f}: the test fold has {events} events among {len(te)} "
                    "samples; metrics need both events and non-events. Use fewer folds."
                )
            splits.append(split)
    return splits


def check_disjoint(groups: np.ndarray, split: Split) -> None:
    """Raise if a patient appears on both sides of ``split``."""
    shared = set(groups[split.train]) & set(groups[split.test])
    if shared:
        raise ValidationError(
            f"patients {sorted(shared)[:5]} are in both train and test (repeat {split.repeat}, "
            f"fold {split.fold})."
        )


def train_validation_split(
    groups: np.ndarray, labels: np.ndarray, *, fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (train, validation) by patient, stratified on patient label."""
    groups = np.asarray(groups).astype(str)
    per_patient = patient_labels(groups, np.asarray(labels).astype(int))
    strat = per_patient.to_numpy() if per_patient.value_counts().min() >= 2 else None
    splitter = (StratifiedShuffleSplit if strat is not None else ShuffleSplit)(
        n_splits=1, test_size=fraction, random_state=seed
    )
    _, va_p = next(splitter.split(np.zeros(len(per_patient)), strat))
    val_patients = set(per_patient.index[va_p])
    is_val = np.array([g in val_patients for g in groups])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
