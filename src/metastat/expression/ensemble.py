"""Signature models: one published / user signature, and the signature ensemble.

The **signature ensemble** scores many gene sets per sample and learns from the scores:

* *learned signatures*: ``n_learned`` signatures, each the top ``genes_per_signature`` genes by
  univariate association (Cox score z, or Welch t for binary outcomes) on a random patient
  subsample and random gene subspace of the training fold, weighted by the sign of association;
* *co-expression modules*: k-means clusters of genes on the training fold (label-free);
* *given signatures*: published (e.g. 70-gene, 76-gene) and user gene sets, where covered.

Each score is the weighted mean of standardised genes, and the stacking head is linear (CoxNet or
logistic, tuned by inner CV), so the whole model is linear in genes: ``coef_`` gives every gene's
weight, which drives the explanations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans

from metastat.errors import InputError
from metastat.expression.heads import CoxNetCV, LogisticCV
from metastat.expression.signatures import Signature
from metastat.expression.univariate import cox_score_z, welch_t


class SignatureEnsemble(BaseEstimator):
    """Many gene signatures scored per sample, stacked by a tuned linear head."""

    def __init__(
        self,
        signatures: tuple[Signature, ...] = (),
        n_learned: int = 100,
        genes_per_signature: int = 25,
        subsample: float = 0.7,
        gene_fraction: float = 0.5,
        n_modules: int = 20,
        min_coverage: float = 0.5,
        head: str = "cox",
        seed: int = 0,
    ) -> None:
        self.signatures = signatures
        self.n_learned = n_learned
        self.genes_per_signature = genes_per_signature
        self.subsample = subsample
        self.gene_fraction = gene_fraction
        self.n_modules = n_modules
        self.min_coverage = min_coverage
        self.head = head
        self.seed = seed

    def fit(
        self, x: pd.DataFrame, y: np.ndarray, patient_ids: np.ndarray | None = None
    ) -> SignatureEnsemble:
        genes = pd.Index(x.columns)
        values = x.to_numpy(dtype=float)
        rng = np.random.default_rng(self.seed)
        sets: list[Signature] = [
            s for s in self.signatures if s.coverage(genes) >= self.min_coverage
        ]
        self.skipped_signatures_ = [s.name for s in self.signatures if s not in sets]
        sets += self._learned(values, genes, y, patient_ids, rng)
        sets += self._modules(values, genes)
        if not sets:
            raise InputError(
                f"no signature covers {self.min_coverage:.0%} of its genes among the "
                f"{len(genes)} genes of these data ({len(self.skipped_signatures_)} skipped); "
                "use a gene-level model (e.g. --model coxnet) or add signatures."
            )
        self.sets_ = sets
        weights = self._weight_matrix(genes)  # genes x sets
        scores = values @ weights
        self.score_mean_ = scores.mean(axis=0)
        self.score_sd_ = np.where(scores.std(axis=0) > 1e-12, scores.std(axis=0), 1.0)
        z = (scores - self.score_mean_) / self.score_sd_
        self.head_ = (
            CoxNetCV(seed=self.seed) if self.head == "cox" else LogisticCV(seed=self.seed)
        ).fit(z, y, patient_ids)
        self.oof_risk_: np.ndarray = np.asarray(self.head_.oof_risk_, dtype=float)
        # the whole model is linear in genes: risk = x @ coef_ + offset_
        self.coef_ = weights @ (self.head_.coef_ / self.score_sd_)
        self.offset_ = float(
            -(self.score_mean_ / self.score_sd_) @ self.head_.coef_
            + getattr(self.head_, "intercept_", 0.0)
        )
        self.genes_ = np.asarray(genes, dtype=object)
        return self

    def _learned(
        self,
        values: np.ndarray,
        genes: pd.Index,
        y: np.ndarray,
        patient_ids: np.ndarray | None,
        rng: np.random.Generator,
    ) -> list[Signature]:
        survival = self.head == "cox"
        rows_all = np.flatnonzero(~np.isnan(y["time"]) if survival else ~np.isnan(y["binary"]))
        pats = (
            np.asarray(patient_ids)[rows_all] if patient_ids is not None else rows_all.astype(str)
        )
        uniq = np.unique(pats)
        k = max(3, min(self.genes_per_signature, len(genes) // 8))
        out = []
        for b in range(self.n_learned):
            chosen = rng.choice(uniq, size=max(2, int(self.subsample * len(uniq))), replace=False)
            rows = rows_all[np.isin(pats, chosen)]
            cols = np.sort(
                rng.choice(
                    len(genes), size=max(k, int(self.gene_fraction * len(genes))), replace=False
                )
            )
            sub = values[np.ix_(rows, cols)]
            if survival:
                stat = cox_score_z(sub, y["time"][rows], y["event"][rows])
            else:
                stat = welch_t(sub, y["binary"][rows])
            top = np.argsort(-np.abs(np.nan_to_num(stat)))[:k]
            out.append(
                Signature(
                    f"learned_{b:03d}",
                    {str(genes[cols[t]]): float(np.sign(stat[t]) or 1.0) for t in top},
                    "learned on the training fold",
                )
            )
        return out

    def _modules(self, values: np.ndarray, genes: pd.Index) -> list[Signature]:
        m = min(self.n_modules, len(genes) // 5)
        if m < 2:
            return []
        km = KMeans(n_clusters=m, n_init=3, random_state=self.seed).fit(values.T)
        return [
            Signature(
                f"module_{c:02d}",
                {str(g): 1.0 for g in genes[km.labels_ == c]},
                "co-expression module (k-means on the training fold)",
            )
            for c in range(m)
            if (km.labels_ == c).sum() >= 3
        ]

    def _weight_matrix(self, genes: pd.Index) -> np.ndarray:
        w = np.zeros((len(genes), len(self.sets_)))
        for j, s in enumerate(self.sets_):
            present = [(genes.get_loc(g), v) for g, v in s.weights.items() if g in genes]
            total = sum(abs(v) for _, v in present)
            for i, v in present:
                w[i, j] = v / total
        return w

    def predict(self, x: pd.DataFrame | np.ndarray) -> np.ndarray:
        values = x.to_numpy(dtype=float) if isinstance(x, pd.DataFrame) else np.asarray(x)
        return values @ self.coef_ + self.offset_

    def signature_importance(self) -> pd.DataFrame:
        """Stacking-head weight of every signature (on standardised scores)."""
        return pd.DataFrame(
            {
                "signature": [s.name for s in self.sets_],
                "n_genes": [len(s.weights) for s in self.sets_],
                "weight": self.head_.coef_,
                "source": [s.source for s in self.sets_],
            }
        ).sort_values("weight", key=np.abs, ascending=False)


class SignatureScore(BaseEstimator):
    """A single signature's score, oriented and scaled by a one-variable Cox / logistic fit."""

    def __init__(self, signature: Signature | None = None, head: str = "cox") -> None:
        self.signature = signature
        self.head = head

    def fit(
        self, x: pd.DataFrame, y: np.ndarray, patient_ids: np.ndarray | None = None
    ) -> SignatureScore:
        if self.signature is None:
            raise InputError("SignatureScore needs a signature (e.g. --signature gene70).")
        genes = pd.Index(x.columns)
        w = np.zeros(len(genes))
        present = [(genes.get_loc(g), v) for g, v in self.signature.weights.items() if g in genes]
        if not present:
            raise InputError(f"signature {self.signature.name!r} shares no gene with the data.")
        total = sum(abs(v) for _, v in present)
        for i, v in present:
            w[i] = v / total
        score = x.to_numpy(dtype=float) @ w
        sd = score.std() or 1.0
        if self.head == "cox":
            direction = np.sign(cox_score_z(score[:, None], y["time"], y["event"])[0]) or 1.0
        else:
            known = ~np.isnan(y["binary"])
            direction = np.sign(welch_t(score[known, None], y["binary"][known])[0]) or 1.0
        self.coef_ = w * direction / sd
        self.offset_ = 0.0
        self.oof_risk_ = x.to_numpy(dtype=float) @ self.coef_  # no tuning: in-sample is honest
        self.genes_ = np.asarray(genes, dtype=object)
        return self

    def predict(self, x: pd.DataFrame | np.ndarray) -> np.ndarray:
        values = x.to_numpy(dtype=float) if isinstance(x, pd.DataFrame) else np.asarray(x)
        return values @ self.coef_
