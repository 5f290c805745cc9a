"""Expression preprocessing, fitted inside the training fold only.

Two representations:

* ``representation="rank"`` (single-sample, platform-independent): each profile is replaced by
  the normal scores of its genes' within-sample ranks (Blom), using only that profile's own
  values; genes are then centred and scaled with *training* statistics. A profile's result is
  the same scored alone or in a batch, uses no statistic of the scored set, and is unchanged by
  any strictly increasing transform of the input (log vs linear, platform offsets and scalings).
* ``representation="standardise"``: detect / apply a log2 transform, optional quantile
  normalisation to the training reference, optional ComBat across training cohorts, then
  standardisation: ``scale="train"`` with the training mean / sd; ``scale="batch"`` with every
  scored set's own statistics (per-cohort standardisation; needs >= ``min_batch`` samples).

Both drop genes with too many missing training values, impute the rest with the training median,
and apply an optional variance filter.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from metastat.errors import InputError, ModelError
from metastat.expression.combat import fit_combat
from metastat.expression.scale import looks_linear

Representation = Literal["standardise", "rank"]
REPRESENTATIONS: tuple[str, ...] = ("standardise", "rank")


def rank_scores(values: np.ndarray) -> np.ndarray:
    """Within-sample rank normal scores (Blom): row by row, NaNs stay NaN and are not ranked."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    n = finite.sum(axis=1, keepdims=True).astype(float)
    ranks = rankdata(np.where(finite, values, np.nan), axis=1, nan_policy="omit")
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = ndtri((ranks - 0.375) / (n + 0.25))
    return np.where(finite, scores, np.nan)


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
        representation: Representation = "standardise",
    ) -> None:
        self.representation = representation
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
        if self.representation not in REPRESENTATIONS:
            raise InputError(
                f"unknown representation {self.representation!r}; use one of {REPRESENTATIONS}."
            )
        rank = self.representation == "rank"
        values = x.to_numpy(dtype=float)
        values = np.where(np.isfinite(values), values, np.nan)
        self.log_ = (
            False if rank else looks_linear(values) if self.log == "auto" else bool(self.log)
        )
        values = self._log(values, x)
        missing = np.isnan(values).mean(axis=0)
        keep = missing <= self.max_missing
        if not keep.any():
            raise InputError(f"every gene has more than {self.max_missing:.0%} missing values.")
        values = values[:, keep]
        genes = x.columns[keep]
        if rank:
            values = rank_scores(values)
        self.median_in_ = np.nanmedian(values, axis=0)
        values = np.where(np.isnan(values), self.median_in_, values)
        if self.quantile and not rank:
            self.reference_ = np.sort(values, axis=1).mean(axis=0)
            values = self._quantile(values)
        self.combat_ = None
        if batch is not None and len(np.unique(batch)) > 1 and not rank:
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
        z = (values - self.mean_) / self.sd_
        self.sample_shift_sd_ = float(z.mean(axis=1).std()) if len(z) > 1 else 0.0
        return pd.DataFrame(self._standardise(values), index=x.index, columns=self.genes_)

    def check_scale(self, x: pd.DataFrame) -> list[str]:
        """Warnings for samples whose values sit far from the training distribution as a whole
        (another platform or normalisation): their mean standardised expression is shifted by
        more than 5 training standard deviations (+0.5). Rank models need no such check."""
        if self.scale == "batch" or self.platform_independent:
            return []
        z = ExpressionPreprocessor.transform(self, x).to_numpy()
        shift = z.mean(axis=1)
        limit = 5 * getattr(self, "sample_shift_sd_", 0.0) + 0.5
        bad = np.flatnonzero(np.abs(shift) > limit)
        return [
            f"sample {x.index[i]!r}: expression is shifted by {shift[i]:+.1f} training SDs on "
            "average; it looks like another platform or normalisation than the training data "
            "(normalise it like the training cohort, or refit with --scale batch)"
            for i in bad
        ]

    @property
    def platform_independent(self) -> bool:
        """True for the single-sample rank representation."""
        return self.representation == "rank"

    # -- transforming -----------------------------------------------------------------------------
    def missing_genes(self, x: pd.DataFrame) -> list[str]:
        """Model genes absent from ``x`` (imputed with the training median when few)."""
        return [str(g) for g in self.genes_in_ if g not in x.columns]

    def missing_per_sample(self, x: pd.DataFrame) -> pd.Series:
        """Per sample, how many model genes are absent from ``x`` or not a finite number."""
        values = x.reindex(columns=self.genes_in_).to_numpy(dtype=float)
        return pd.Series((~np.isfinite(values)).sum(axis=1), index=x.index, name="missing")

    def _check_missing(self, x: pd.DataFrame, strict: bool = True) -> None:
        limit = self.max_missing_genes * len(self.genes_in_)
        missing = self.missing_genes(x)
        if len(missing) > limit:
            raise InputError(
                f"{len(missing)} of the model's {len(self.genes_in_)} genes are absent from the "
                f"profile (at most {self.max_missing_genes:.0%} may be imputed), e.g. "
                f"{missing[:10]}; check gene identifiers (symbols vs probes) and the platform."
            )
        per_sample = self.missing_per_sample(x)
        bad = per_sample[per_sample > limit]
        if not len(bad):
            return
        shown = ", ".join(f"{sid!r} ({n})" for sid, n in bad.head(5).items())
        if not strict:
            import logging

            logging.getLogger(__name__).warning(
                f"{len(bad)} sample(s) miss more than {self.max_missing_genes:.0%} of the "
                f"model's {len(self.genes_in_)} genes (imputed with the training median): {shown}"
            )
        else:
            raise InputError(
                f"{len(bad)} sample(s) have more than {self.max_missing_genes:.0%} of the "
                f"model's {len(self.genes_in_)} genes missing or not a number: {shown}; "
                "send complete profiles (empty cells count as missing)."
            )

    def transform(
        self, x: pd.DataFrame, batch: np.ndarray | None = None, strict: bool = True
    ) -> pd.DataFrame:
        """Apply the fitted steps.

        ``strict``: a sample missing more than ``max_missing_genes`` of the genes is an error
        (scoring single profiles); otherwise a warning and imputation (validating a cohort).

        With ComBat fitted, samples of training batches need their ``batch`` labels; a new cohort
        (``batch=None``) is instead standardised by its own statistics when ``scale='batch'``.
        """
        x = _as_frame(x, "transform")
        if not hasattr(self, "genes_"):
            raise ModelError("the preprocessor is not fitted.")
        self._check_missing(x, strict)
        values = x.reindex(columns=self.genes_in_).to_numpy(dtype=float)
        values = np.where(np.isfinite(values), values, np.nan)
        values = self._log(values, x.reindex(columns=self.genes_in_))
        if self.platform_independent:
            values = rank_scores(values)
        values = np.where(np.isnan(values), self.median_in_, values)
        if self.platform_independent:
            pos = pd.Index(self.genes_in_).get_indexer(self.genes_)
            z = (values[:, pos] - self.mean_) / self.sd_
            return pd.DataFrame(z, index=x.index, columns=self.genes_)
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
            values = self.combat_.apply(values, np.asarray(batch))  # type: ignore[union-attr]
        pos = pd.Index(self.genes_in_).get_indexer(self.genes_)
        values = values[:, pos]
        return pd.DataFrame(self._standardise(values), index=x.index, columns=self.genes_)

    def _log(self, values: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
        if not getattr(self, "log_", False):
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
        if self.scale == "batch" and not self.platform_independent:
            if len(values) < self.min_batch:
                raise InputError(
                    f"scale='batch' standardises each scored set by its own statistics and needs "
                    f">= {self.min_batch} samples, got {len(values)}; use scale='train' to score "
                    "single profiles."
                )
            mean, sd = values.mean(axis=0), values.std(axis=0, ddof=1)
            return (values - mean) / np.where(sd > 1e-12, sd, 1.0)
        return (values - self.mean_) / self.sd_
