"""Multimodal fusion of clinical data, gene expression and histology (tile-feature bags).

* :mod:`~metastat.fusion.modalities`: patients aligned by id across modality tables, with
  explicit presence masks (a missing modality is data, never a silent misalignment).
* :mod:`~metastat.fusion.unimodal`, :mod:`~metastat.fusion.late`,
  :mod:`~metastat.fusion.intermediate`, :mod:`~metastat.fusion.coattention`: single-modality
  models, calibrated stacking, neural fusion with modality dropout, gene-set x tile co-attention.
* :mod:`~metastat.fusion.generate`: expression generated from histology (ridge, conditional VAE).
* :mod:`~metastat.fusion.paired`: the paired histology + expression benchmark with known truth.
* :mod:`~metastat.fusion.validate`: side-by-side CV on identical splits (:mod:`metastat.evaluate`).
"""

from metastat.fusion.modalities import MODALITIES, MultimodalSet, align_modalities, from_cohort

__all__ = ["MODALITIES", "MultimodalSet", "align_modalities", "from_cohort"]
