"""Expression preprocessing, fitted inside the training fold only.

Steps, in order: detect / apply a log2 transform, drop genes with too many missing values and
impute the rest with the training median, optional quantile normalisation to the training
reference distribution, optional ComBat across training cohorts, a variance filter, and
standardisation. ``scale="train"`` standardises with the training mean / sd; ``scale="batch"``
standardises every scored set of samples with its own statistics (label-free per-cohort
standardisation for cross-platform validation; needs >= ``min_batch`` samples).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from metastat.errors import InputError, ModelError
from metastat.expression.combat import fit_combat

LINEAR_SCALE_THRESHOLD = 100.0  # 99th percentile above this: values are not log-transformed


def looks_linear(values: np.ndarray) -> bool:
    """True when values look like linear intensities / counts (a log transform is needed)."""
    finite = values[np.isfinite(values)]
    return bool(finite.size and np.quantile(finite, 0.99) > LINEAR_SCALE_THRESHOLD)


def _as_frame(x: pd.DataFrame | np.ndarray, where: str) -> pd.DataFrame:
    if not isinstance(x, pd.DataFrame):
        raise InputError(f"{where}: expected a samples x genes DataFrame with gene names.")
    return x


class ExpressionPreprocessor(TransformerMixin, BaseEstimator):
    """Fold-safe expression preprocessing (see module docstring)."""

    def __init__(
        self,
        log: Literal["auto"] | bool = "auto",
        max_missing: float = 0.2,
        quantile: bool = False,
        n_genes: int | None = None,
        scale: Literal["train", "batch"] = "train",
        min_batch: int = 10,
        max_missing_genes: float = 0.1,
    ) -> None:
        self.log = log
        self.max_missing = max_missing
        self.quantile = quantile
        self.n_genes = n_genes
        self.scale = scale
        self.min_batch = min_batch
        self.max_missing_genes = max_missing_genes

    # -- fitting ----------------------------------------------------------------------------------
    def fit(
        self, x: pd.DataFrame, y: object = None, batch: np.ndarray | None = None
    ) -> ExpressionPreprocessor:
        self._fit_transform(_as_frame(x, "fit"), batch)
        return self

    def fit_transform(
        self, x: pd.DataFrame, y: object = None, batch: np.ndarray | None = None, **_: object
    ) -> pd.DataFrame:
        return self._fit_transform(_as_frame(x, "fit"), batch)

    def _fit_transform(self, x: pd.DataFrame, batch: np.ndarray | None) -> pd.DataFrame:
        if x.columns.duplicated().any():
            dup = list(x.columns[x.columns.duplicated()][:5])
            raise InputError(
                f"duplicated gene columns {dup}: "
                "collapse genes first (metastat.data.genes.collapse_genes)."
            )
        values = x.to_numpy(dtype=float)
        self.log_ = looks_linear(values) if self.log == "auto" else bool(self.log)
        values = self._log(values, x)
        missing = np.isnan(values).mean(axis=0)
        keep = missing <= self.max_missing
        if not keep.any():
            raise InputError(f"every gene has more than {self.max_missing:.0%} missing values.")
        values = values[:, keep]
        genes = x.columns[keep]
        self.median_in_ = np.nanmedian(values, axis=0)
        values = np.where(np.isnan(values), self.median_in_, values)
        if self.quantile:
            self.reference_ = np.sort(values, axis=1).mean(axis=0)
            values = self._quantile(values)
        self.combat_ = None
        if batch is not None and len(np.unique(batch)) > 1:
            self.combat_ = fit_combat(values, np.asarray(batch))
            values = self.combat_.apply(values, np.asarray(batch))
        if self.n_genes is not None and self.n_genes < values.shape[1]:
            top = np.sort(np.argsort(-values.var(axis=0))[: self.n_genes])
            values, genes = values[:, top], genes[top]
        self.genes_in_ = np.asarray(x.columns[keep], dtype=object)
        self.genes_ = np.asarray(genes, dtype=object)
        self.mean_ = values.mean(axis=0)
        sd = values.std(axis=0, ddof=1) if len(values) > 1 else np.ones(values.shape[1])
        self.sd_ = np.where(sd > 1e-12, sd, 1.0)
        return pd.DataFrame(self._standardise(values), index=x.index, columns=self.genes_)

    # -- transforming -----------------------------------------------------------------------------
    def missing_genes(self, x: pd.DataFrame) -> list[str]:
        """Model genes absent from ``x`` (imputed with the training median when few)."""
        return [str(g) for g in self.genes_in_ if g not in x.columns]

    def transform(self, x: pd.DataFrame, batch: np.ndarray | None = None) -> pd.DataFrame:
        """Apply the fitted steps.

        With ComBat fitted, samples of training batches need their ``batch`` labels; a new cohort
        (``batch=None``) is instead standardised by its own statistics when ``scale='batch'``.
        """
        x = _as_frame(x, "transform")
        if not hasattr(self, "genes_"):
            raise ModelError("the preprocessor is not fitted.")
        missing = self.missing_genes(x)
        if len(missing) > self.max_missing_genes * len(self.genes_in_):
            raise InputError(
                f"{len(missing)} of the model's {len(self.genes_in_)} genes are absent from the "
                f"profile (at most {self.max_missing_genes:.0%} may be imputed), e.g. "
                f"{missing[:10]}; check gene identifiers (symbols vs probes) and the platform."
            )
        values = x.reindex(columns=self.genes_in_).to_numpy(dtype=float)
        values = self._log(values, x.reindex(columns=self.genes_in_))
        values = np.where(np.isnan(values), self.median_in_, values)
        if self.quantile:
            values = self._quantile(values)
        if getattr(self, "combat_", None) is not None and (
            batch is not None or self.scale != "batch"
        ):
            if batch is None:
                raise InputError(
                    "this model was trained on several cohorts with ComBat: pass "
                    "the batch (cohort) of each sample, or use scale='batch'."
                )
            values = self.combat_.apply(values, np.asarray(batch))
        pos = pd.Index(self.genes_in_).get_indexer(self.genes_)
        values = values[:, pos]
        return pd.DataFrame(self._standardise(values), index=x.index, columns=self.genes_)

    def _log(self, values: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
        if not self.log_:
            return values
        neg = values < 0
        if neg.any():
            i, j = map(int, np.argwhere(neg)[0])
            raise InputError(
                f"negative value {values[i, j]} in gene {frame.columns[j]!r}, sample "
                f"{frame.index[i]!r}, but the data look linear-scale and need a log transform; "
                "pass log=False if the values are already log-scaled."
            )
        return np.log2(values + 1.0)

    def _quantile(self, values: np.ndarray) -> np.ndarray:
        ranks = np.argsort(np.argsort(values, axis=1, kind="stable"), axis=1)
        ref = self.reference_
        pos = ranks * (len(ref) - 1) / max(values.shape[1] - 1, 1)
        return np.interp(pos, np.arange(len(ref)), ref)

    def _standardise(self, values: np.ndarray) -> np.ndarray:
        if self.scale == "batch":
            if len(values) < self.min_batch:
                raise InputError(
                    f"scale='batch' standardises each scored set by its own statistics and needs "
                    f">= {self.min_batch} samples, got {len(values)}; use scale='train' to score "
                    "single profiles."
                )
            mean, sd = values.mean(axis=0), values.std(axis=0, ddof=1)
            return (values - mean) / np.where(sd > 1e-12, sd, 1.0)
        return (values - self.mean_) / self.sd_
