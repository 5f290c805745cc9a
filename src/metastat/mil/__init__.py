"""Attention multiple-instance learning over tile-feature bags (slide / patient predictions).

Models (:mod:`~metastat.mil.models`), training and patient-grouped CV (:mod:`~metastat.mil.train`),
safetensors checkpoints (:mod:`~metastat.mil.checkpoint`), inference (:mod:`~metastat.mil.infer`),
heatmaps (:mod:`~metastat.mil.heatmap`), the risk-model-contract estimator
(:mod:`~metastat.mil.estimator`) and the held-out-source benchmark on real tiles
(:mod:`~metastat.mil.planted`).
"""

from metastat.mil.config import MILConfig, load_config
from metastat.mil.models import MODELS, build_model

__all__ = ["MODELS", "MILConfig", "build_model", "load_config"]
