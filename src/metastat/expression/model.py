"""``RiskModel``: preprocessing + learner + calibration, fitted on one training set.

Outputs per sample: ``risk`` (higher = worse), ``prob`` (calibrated probability of the event: of
the recorded binary status, or of an event by the horizon), ``high_risk`` (risk above the training
median) and, for time-to-event outcomes, survival probabilities at requested times.

Calibration is fitted on the learner's *out-of-inner-fold* training risks (never in-sample risks
of a tuned model): Platt scaling for binary probabilities; for time-to-event outcomes a
one-variable Cox recalibration (slope) with a Breslow baseline hazard.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator

from metastat.errors import InputError, UnknownNameError, did_you_mean
from metastat.expression.ensemble import SignatureEnsemble, SignatureScore
from metastat.expression.heads import (
    BaselineCoxNet,
    BaselineLogistic,
    CoxNetCV,
    LogisticCV,
    TreeSurvival,
)
from metastat.expression.preprocess import ExpressionPreprocessor
from metastat.expression.signatures import Signature
from metastat.stats import breslow_cumhaz, cox_1d, cumhaz_at, logistic_fit

#: model name -> (description, needs follow-up times)
MODELS: dict[str, tuple[str, bool]] = {
    "ensemble": ("signature ensemble: learned + module + given signatures, CoxNet stacking", True),
    "ensemble_logistic": ("signature ensemble with elastic-net logistic stacking", False),
    "coxnet": ("elastic-net Cox, (l1_ratio, alpha) by nested CV", True),
    "logistic": ("elastic-net logistic on the binary status, C by nested CV", False),
    "gbs": ("gradient-boosted survival trees", True),
    "rsf": ("random survival forest", True),
    "signature": ("one published / user signature score", True),
    "baseline_logistic": ("plain baseline: standardised genes + L2 logistic, defaults", False),
    "baseline_coxnet": ("plain baseline: standardised genes + CoxNet, defaults", True),
}


def build_learner(
    name: str, *, seed: int, signatures: tuple[Signature, ...], survival: bool
) -> BaseEstimator:
    """Instantiate learner ``name`` (see :data:`MODELS`)."""
    if name not in MODELS:
        raise UnknownNameError(
            f"unknown model {name!r}; models: {sorted(MODELS)}.{did_you_mean(name, sorted(MODELS))}"
        )
    if MODELS[name][1] and not survival:
        raise InputError(
            f"model {name!r} needs follow-up times; this outcome has none "
            "(use 'logistic', 'ensemble_logistic' or 'baseline_logistic')."
        )
    head = "cox" if survival else "logistic"
    return {
        "ensemble": lambda: SignatureEnsemble(signatures, head="cox", seed=seed),
        "ensemble_logistic": lambda: SignatureEnsemble(signatures, head="logistic", seed=seed),
        "coxnet": lambda: CoxNetCV(seed=seed),
        "logistic": lambda: LogisticCV(seed=seed),
        "gbs": lambda: TreeSurvival("gbs", seed=seed),
        "rsf": lambda: TreeSurvival("rsf", seed=seed),
        "signature": lambda: SignatureScore(signatures[0] if signatures else None, head=head),
        "baseline_logistic": lambda: BaselineLogistic(seed=seed),
        "baseline_coxnet": lambda: BaselineCoxNet(seed=seed),
    }[name]()


class RiskModel(BaseEstimator):
    """Expression -> calibrated risk of recurrence / metastasis."""

    def __init__(
        self,
        model: str = "ensemble",
        *,
        task: Literal["binary", "survival"] = "binary",
        horizon: float | None = None,
        log: Literal["auto"] | bool = "auto",
        quantile: bool = False,
        n_genes: int | None = 5000,
        scale: Literal["train", "batch"] = "train",
        signatures: tuple[Signature, ...] = (),
        seed: int = 0,
    ) -> None:
        self.model = model
        self.task = task
        self.horizon = horizon
        self.log = log
        self.quantile = quantile
        self.n_genes = n_genes
        self.scale = scale
        self.signatures = signatures
        self.seed = seed

    def fit(
        self,
        x: pd.DataFrame,
        y: np.ndarray,
        groups: np.ndarray | None = None,
        batch: np.ndarray | None = None,
    ) -> RiskModel:
        """Fit on samples x genes ``x`` and a target from ``heads.make_target``."""
        has_time = not np.isnan(y["time"]).any()
        self.preprocessor_ = ExpressionPreprocessor(
            log=self.log, quantile=self.quantile, n_genes=self.n_genes, scale=self.scale
        )
        z = self.preprocessor_.fit_transform(x, batch=batch)
        self.learner_ = build_learner(
            self.model,
            seed=self.seed,
            signatures=self.signatures,
            survival=has_time
            and self.model not in ("logistic", "ensemble_logistic", "baseline_logistic"),
        )
        self.learner_.fit(
            z if isinstance(self.learner_, SignatureEnsemble | SignatureScore) else z.to_numpy(),
            y,
            groups,
        )
        train_risk = self._risk(z)
        self.risk_cut_ = float(np.median(train_risk))
        self.train_risk_quantiles_ = np.quantile(train_risk, np.linspace(0, 1, 101))
        self._calibrate(np.asarray(self.learner_.oof_risk_, dtype=float), y, has_time)
        return self

    def _calibrate(self, oof: np.ndarray, y: np.ndarray, has_time: bool) -> None:
        self.platt_ = None
        self.cox_slope_ = None
        ok = np.isfinite(oof)
        known = ok & ~np.isnan(y["binary"])
        if self.task == "binary" or (self.horizon is None and known.any()):
            a, b = logistic_fit(oof[known], y["binary"][known], np.zeros(known.sum()), slope=True)
            self.platt_ = (float(a), float(b))
        if has_time:
            slope = cox_1d(oof[ok], y["time"][ok], y["event"][ok])
            self.cox_slope_ = float(slope) if np.isfinite(slope) else 0.0
            self.base_times_, self.base_cumhaz_ = breslow_cumhaz(
                self.cox_slope_ * oof[ok], y["time"][ok], y["event"][ok]
            )

    def _risk(self, z: pd.DataFrame) -> np.ndarray:
        data = z if isinstance(self.learner_, SignatureEnsemble | SignatureScore) else z.to_numpy()
        return np.asarray(self.learner_.predict(data), dtype=float)

    def predict(self, x: pd.DataFrame, batch: np.ndarray | None = None) -> np.ndarray:
        """Risk score (higher = worse prognosis)."""
        return self._risk(self.preprocessor_.transform(x, batch))

    def survival_at(self, risk: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Predicted survival probability S(t) for each sample (rows) and time (columns)."""
        if self.cox_slope_ is None:
            raise InputError("survival probabilities need a model fitted with follow-up times.")
        h0 = cumhaz_at(self.base_times_, self.base_cumhaz_, np.asarray(times, dtype=float))
        return np.exp(-np.outer(np.exp(self.cox_slope_ * risk), h0))

    def probability(self, risk: np.ndarray) -> np.ndarray:
        """Calibrated probability of the event (binary status, or event by ``horizon``)."""
        if self.task == "survival" and self.horizon is not None and self.cox_slope_ is not None:
            return 1.0 - self.survival_at(risk, np.array([self.horizon]))[:, 0]
        if self.platt_ is not None:
            return expit(self.platt_[0] + self.platt_[1] * risk)
        return np.full(len(risk), np.nan)

    def predict_frame(
        self, x: pd.DataFrame, surv_times: np.ndarray | None = None, batch: np.ndarray | None = None
    ) -> pd.DataFrame:
        """Risk, probability, risk group (and survival probabilities) per sample."""
        risk = self.predict(x, batch)
        out = pd.DataFrame(
            {
                "risk": risk,
                "prob": self.probability(risk),
                "high_risk": risk > self.risk_cut_,
                "risk_percentile": np.searchsorted(self.train_risk_quantiles_, risk).clip(0, 100),
            },
            index=x.index,
        )
        if surv_times is not None and self.cox_slope_ is not None:
            sp = self.survival_at(risk, surv_times)
            for i in range(sp.shape[1]):
                out[f"surv_{i}"] = sp[:, i]
        return out

    # -- explanations -----------------------------------------------------------------------------
    @property
    def gene_coefficients(self) -> pd.Series | None:
        """Weight of every (standardised) gene in the risk, for models linear in genes."""
        coef = getattr(self.learner_, "coef_", None)
        if coef is None:
            return None
        return pd.Series(np.asarray(coef, dtype=float), index=self.preprocessor_.genes_)

    def explain(self, x: pd.DataFrame, top: int = 10) -> list[dict[str, Any]]:
        """Per sample, the genes contributing most to its risk (weight x standardised value)."""
        coef = self.gene_coefficients
        if coef is None:
            raise InputError(
                f"per-patient explanations need a model linear in genes; "
                f"{self.model!r} is not (use global permutation importance)."
            )
        z = self.preprocessor_.transform(x)
        contrib = z.to_numpy() * coef.to_numpy()
        out = []
        for i, sid in enumerate(z.index):
            order = np.argsort(-np.abs(contrib[i]))[:top]
            out.append(
                {
                    "sample_id": str(sid),
                    "genes": [
                        {
                            "gene": str(z.columns[j]),
                            "contribution": float(contrib[i, j]),
                            "expression_z": float(z.iat[i, j]),
                        }
                        for j in order
                    ],
                }
            )
        return out
