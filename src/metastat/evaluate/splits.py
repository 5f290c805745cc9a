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


def patient_labels(patient_ids: np.ndarray, labels: np.ndarray) -> pd.Series:
    """One stratification label per patient (the max over that patient's samples)."""
    return pd.Series(labels).groupby(np.asarray(patient_ids)).max()


def patient_kfold(
    patient_ids: np.ndarray,
    labels: np.ndarray,
    *,
    n_splits: int = 5,
    n_repeats: int = 1,
    seed: int = 0,
    min_events: int = 1,
) -> list[Split]:
    """Repeated, patient-grouped, label-stratified k-fold.

    ``labels`` is the stratification label per sample: an event indicator, or a class index
    (binary or multiclass). Each test fold must hold at least ``min_events`` samples outside the
    reference (lowest) class and at least one inside it; the train/test patient sets are checked
    to be disjoint.
    """
    patient_ids = np.asarray(patient_ids).astype(str)
    labels = np.asarray(labels).astype(int)
    n_patients = len(np.unique(patient_ids))
    if n_splits < 2:
        raise ValidationError(f"cross-validation needs at least 2 folds, got {n_splits}.")
    if n_patients < n_splits:
        raise ValidationError(f"only {n_patients} patients for {n_splits} folds.")
    per_patient = patient_labels(patient_ids, labels)
    if per_patient.value_counts().min() < n_splits or per_patient.nunique() < 2:
        raise ValidationError(
            f"too few patients per class for {n_splits}-fold CV (patients per class: "
            f"{per_patient.value_counts().to_dict()}); use fewer folds."
        )
    reference = int(labels.min())
    splits: list[Split] = []
    for r in range(n_repeats):
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + r)
        for f, (tr, te) in enumerate(cv.split(np.zeros(len(patient_ids)), labels, patient_ids)):
            split = Split(r, f, np.sort(tr), np.sort(te))
            check_disjoint(patient_ids, split)
            _check_fold(labels[te], reference, min_events, f"repeat {r}, fold {f}")
            splits.append(split)
    return splits


def _check_fold(labels: np.ndarray, reference: int, min_events: int, where: str) -> None:
    """Raise unless a test fold holds ``min_events`` non-reference samples and a reference one."""
    others = int((labels != reference).sum())
    if others >= min_events and others < len(labels):
        return
    if set(np.unique(labels)) <= {0, 1}:
        what = (
            f"{others} events among {len(labels)} samples; metrics need both events and non-events"
        )
    else:
        what = f"classes {sorted(set(labels.tolist()))} only; metrics need more than one class"
    raise ValidationError(f"{where}: the test fold has {what}. Use fewer folds.")


def check_disjoint(patient_ids: np.ndarray, split: Split) -> None:
    """Raise if a patient appears on both sides of ``split``."""
    shared = set(patient_ids[split.train]) & set(patient_ids[split.test])
    if shared:
        raise ValidationError(
            f"patients {sorted(shared)[:5]} are in both train and test (repeat {split.repeat}, "
            f"fold {split.fold})."
        )


def train_validation_split(
    patient_ids: np.ndarray, labels: np.ndarray, *, fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (train, validation) by patient, stratified on patient label."""
    patient_ids = np.asarray(patient_ids).astype(str)
    per_patient = patient_labels(patient_ids, np.asarray(labels).astype(int))
    strat = per_patient.to_numpy() if per_patient.value_counts().min() >= 2 else None
    splitter = (StratifiedShuffleSplit if strat is not None else ShuffleSplit)(
        n_splits=1, test_size=fraction, random_state=seed
    )
    _, va_p = next(splitter.split(np.zeros(len(per_patient)), strat))
    val_patients = set(per_patient.index[va_p])
    is_val = np.array([g in val_patients for g in patient_ids])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
