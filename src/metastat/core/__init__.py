"""The risk-model core shared by every modality (no modality code here).

- :mod:`metastat.core.cox`: the Cox partial likelihood (Breslow and Efron ties), torch and numpy;
- :mod:`metastat.core.calibration`: risk -> probability (Platt, Cox recalibration + Breslow
  baseline) and the training-median risk cut;
- :mod:`metastat.core.provenance`: file checksums and run provenance;
- :mod:`metastat.core.seeds`: random streams keyed by a patient (draws independent of the others).
"""
