"""Overlap guard: test samples that duplicate training samples.

A sample of an "external" cohort is a duplicate when its sample or patient id is also a training
id, or its profile correlates above ``max_r`` with a training profile on the shared genes
(Pearson on within-sample rank scores, so a re-normalised or re-scaled copy is still caught).
Duplicates are excluded from external metrics unless the user keeps them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metastat.expression.preprocess import rank_scores

MAX_R = 0.99


def find_duplicates(
    x_train: pd.DataFrame,
    x_test: pd.DataFrame,
    patients_train: np.ndarray,
    patients_test: np.ndarray,
    max_r: float = MAX_R,
) -> pd.DataFrame:
    """One row per test sample that duplicates a training sample: ids, match and reason."""
    genes = x_train.columns.intersection(x_test.columns)
    rows = []
    same_id = set(map(str, x_train.index)) | set(map(str, patients_train))
    if len(genes) >= 10:
        a = _unit_rows(rank_scores(x_test[genes].to_numpy(dtype=float)))
        b = _unit_rows(rank_scores(x_train[genes].to_numpy(dtype=float)))
        r = a @ b.T
        best = r.argmax(axis=1)
        best_r = r[np.arange(len(a)), best]
    else:
        best, best_r = np.zeros(len(x_test), dtype=int), np.full(len(x_test), np.nan)
    for i, sid in enumerate(map(str, x_test.index)):
        if sid in same_id or str(patients_test[i]) in same_id:
            rows.append((sid, str(patients_test[i]), sid, np.nan, "same id as a training sample"))
        elif np.isfinite(best_r[i]) and best_r[i] > max_r:
            rows.append(
                (
                    sid,
                    str(patients_test[i]),
                    str(x_train.index[best[i]]),
                    float(best_r[i]),
                    f"profile correlates {best_r[i]:.4f} with a training profile",
                )
            )
    return pd.DataFrame(rows, columns=["sample_id", "patient_id", "training_sample", "r", "reason"])


def _unit_rows(v: np.ndarray) -> np.ndarray:
    v = np.where(np.isfinite(v), v, 0.0)
    v = v - v.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)
