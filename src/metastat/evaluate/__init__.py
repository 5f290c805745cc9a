"""Evaluation shared by every modality: patient-grouped splits, metrics, bootstrap CIs."""

from metastat.evaluate.bootstrap import Estimate, bootstrap_metrics
from metastat.evaluate.splits import Split, patient_kfold, train_validation_split
from metastat.evaluate.summary import compare, summarise

__all__ = [
    "Estimate",
    "Split",
    "bootstrap_metrics",
    "compare",
    "patient_kfold",
    "summarise",
    "train_validation_split",
]
