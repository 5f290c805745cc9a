"""Reports: plots and HTML built from a run's predictions table (any modality)."""
