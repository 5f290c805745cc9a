"""``RiskModel``: preprocessing + learner + calibration, fitted on one training set.

Outputs per sample: ``risk`` (higher = worse), ``prob`` (calibrated probability of the event: of
the recorded binary status, or of an event by the horizon), ``high_risk`` (risk above the training
median) and, for time-to-event outcomes, survival probabilities at requested times.

Calibration is fitted on the learner's *out-of-inner-fold* training risks (never in-sample risks
of a tuned model): Platt scaling for binary probabilities; for time-to-event outcomes a
one-variable Cox recalibration (slope) with a Breslow baseline hazard (both
:class:`metastat.core.calibration.Calibrator`). ``RiskModel`` implements the risk-model contract
(:mod:`metastat.core.contract`); :class:`metastat.fusion.unimodal.TabularRiskModel` reuses it for
clinical and radiomics tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator

from metastat.core.calibration import Calibrator, median_cut
from metastat.core.contract import Explanation, no_survival, top_contributions
from metastat.data.target import Target
from metastat.errors import InputError, UnknownNameError, did_you_mean
from metastat.expression.ensemble import SignatureEnsemble, SignatureScore
from metastat.expression.heads import (
    BaselineCoxNet,
    BaselineLogistic,
    CoxNetCV,
    LogisticCV,
    TreeSurvival,
)
from metastat.expression.preprocess import ExpressionPreprocessor, Representation
from metastat.expression.signatures import Signature, library_signatures
from metastat.stats import cumhaz_at

#: model name -> (description, needs follow-up times)
MODELS: dict[str, tuple[str, bool]] = {
    "ensemble": (
        "signature ensemble: learned + co-expression module + library signatures, "
        "tuned elastic-net Cox stacking",
        True,
    ),
    "ensemble_logistic": ("signature ensemble with tuned elastic-net logistic stacking", False),
    "library": (
        "signature library: the shipped published signatures and biological modules, "
        "tuned elastic-net Cox stacking (nothing learned per gene)",
        True,
    ),
    "library_logistic": ("signature library with tuned elastic-net logistic stacking", False),
    "coxnet": (
        "tuned elastic-net Cox: (l1_ratio, alpha) by inner patient-grouped CV on the C-index",
        True,
    ),
    "logistic": (
        "tuned elastic-net logistic on the binary status: C by inner patient-grouped CV on AUC",
        False,
    ),
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
    library = (*signatures, *library_signatures())
    return {
        "ensemble": lambda: SignatureEnsemble(library, head="cox", seed=seed),
        "ensemble_logistic": lambda: SignatureEnsemble(library, head="logistic", seed=seed),
        "library": lambda: SignatureEnsemble(
            library, head="cox", n_learned=0, n_modules=0, seed=seed
        ),
        "library_logistic": lambda: SignatureEnsemble(
            library, head="logistic", n_learned=0, n_modules=0, seed=seed
        ),
        "coxnet": lambda: CoxNetCV(seed=seed),
        "logistic": lambda: LogisticCV(seed=seed),
        "gbs": lambda: TreeSurvival("gbs", seed=seed),
        "rsf": lambda: TreeSurvival("rsf", seed=seed),
        "signature": lambda: SignatureScore(signatures[0] if signatures else None, head=head),
        "baseline_logistic": lambda: BaselineLogistic(seed=seed),
        "baseline_coxnet": lambda: BaselineCoxNet(seed=seed),
    }[name]()


class GeneExplanation(Explanation):
    """An :class:`~metastat.core.contract.Explanation` with the genes' standardised values."""

    genes: list[dict[str, Any]]


def as_structured(target: Target | np.ndarray) -> np.ndarray:
    """The learners' structured target (:data:`metastat.data.target.TARGET_DTYPE`)."""
    return target.structured() if isinstance(target, Target) else np.asarray(target)


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
        representation: Representation = "standardise",
        signatures: tuple[Signature, ...] = (),
        seed: int = 0,
        n_interval: int = 200,
    ) -> None:
        self.model = model
        self.representation = representation
        self.n_interval = n_interval
        self.task = task
        self.horizon = horizon
        self.log = log
        self.quantile = quantile
        self.n_genes = n_genes
        self.scale = scale
        self.signatures = signatures
        self.seed = seed

    @property
    def kind(self) -> str:
        """``"binary"`` or ``"survival"`` (the ``task``)."""
        return self.task

    # -- fitting ----------------------------------------------------------------------------------
    def fit(
        self,
        x: pd.DataFrame,
        target: Target | np.ndarray,
        patient_ids: np.ndarray | None = None,
        batch: np.ndarray | None = None,
    ) -> RiskModel:
        """Fit on samples x features ``x`` and a :class:`Target` (or the structured array of
        :func:`metastat.data.target.make_target`); ``patient_ids``: patient of each sample."""
        y = as_structured(target)
        has_time = not np.isnan(y["time"]).any()
        z = self._fit_encoder(x, batch)
        self.learner_ = build_learner(
            self.model,
            seed=self.seed,
            signatures=self.signatures,
            survival=has_time and MODELS.get(self.model, ("", True))[1],
        )
        self.learner_.fit(self._learner_input(z), y, patient_ids)
        train_risk = self._risk(z)
        self.risk_cut_ = median_cut(train_risk)
        self.train_risk_quantiles_ = np.quantile(train_risk, np.linspace(0, 1, 101))
        self._calibrate(np.asarray(self.learner_.oof_risk_, dtype=float), y, has_time)
        return self

    def _fit_encoder(self, x: pd.DataFrame, batch: np.ndarray | None) -> pd.DataFrame:
        self.preprocessor_ = ExpressionPreprocessor(
            log=self.log,
            quantile=self.quantile,
            n_genes=self.n_genes,
            scale=self.scale,
            representation=self.representation,
        )
        return self.preprocessor_.fit_transform(x, batch=batch)

    def _encode(self, x: pd.DataFrame, batch: Any = None, strict: bool = True) -> pd.DataFrame:
        """Input -> the learner's standardised features (``strict``: see the preprocessor)."""
        return self.preprocessor_.transform(x, batch, strict)

    @property
    def feature_names(self) -> list[str]:
        """Names of the learner's input columns (genes after selection)."""
        return [str(g) for g in self.preprocessor_.genes_]

    def _calibrate(self, oof: np.ndarray, y: np.ndarray, has_time: bool) -> None:
        known = np.isfinite(oof) & ~np.isnan(y["binary"])
        self.calibrator_ = Calibrator()
        if self.task == "binary" or (self.horizon is None and known.any()):
            self.calibrator_.fit_platt(oof, y["binary"])
        if has_time:
            self.calibrator_.fit_cox(oof, y["time"], y["event"])
        self.interval_draws_ = self._calibration_draws(oof, y, has_time)

    def _calibration_draws(self, oof: np.ndarray, y: np.ndarray, has_time: bool) -> np.ndarray:
        """Bootstrap refits of the calibration map on the out-of-fold risks: rows (a, b) with
        probability = link(a + b * risk) (logit for Platt, complementary log-log at the horizon
        for Cox), the uncertainty of a patient's probability given its risk score."""
        rng = np.random.default_rng(self.seed)
        ok = np.isfinite(oof)
        horizon = self.task == "survival" and self.horizon is not None and has_time
        rows = np.flatnonzero(ok if horizon else ok & ~np.isnan(y["binary"]))
        if self.n_interval <= 0 or rows.size < 10 or (not horizon and self.platt_ is None):
            return np.empty((0, 2))
        draws: list[tuple[float, float]] = []
        for _ in range(self.n_interval):
            b = rng.choice(rows, size=rows.size, replace=True)
            cal = Calibrator()
            if horizon:
                slope = cal.fit_cox(oof[b], y["time"][b], y["event"][b]).cox_slope
                if not slope:  # undefined slope (constant risk or no event): no draw
                    continue
                h0 = float(cumhaz_at(cal.base_times, cal.base_cumhaz, np.array([self.horizon]))[0])
                if h0 > 0:
                    draws.append((float(np.log(h0)), slope))
            elif (platt := cal.fit_platt(oof[b], y["binary"][b]).platt) is not None:
                draws.append(platt)
        return np.asarray(draws, dtype=float).reshape(-1, 2)

    # -- calibration (read-only views of the calibrator) ----------------------------------------
    @property
    def platt_(self) -> tuple[float, float] | None:
        return self.calibrator_.platt

    @property
    def cox_slope_(self) -> float | None:
        return self.calibrator_.cox_slope

    @property
    def base_times_(self) -> np.ndarray:
        return self.calibrator_.base_times

    @property
    def base_cumhaz_(self) -> np.ndarray:
        return self.calibrator_.base_cumhaz

    @property
    def interval_method(self) -> str:
        """How ``probability_ci_low`` / ``probability_ci_high`` are computed."""
        n = len(getattr(self, "interval_draws_", ()))
        return (
            f"95% percentile interval over {n} bootstrap refits of the probability calibration "
            "on out-of-fold training risks; the gene weights are held fixed"
        )

    def probability_interval(self, risk: np.ndarray, level: float = 0.95) -> np.ndarray:
        """(low, high) probability per sample from the calibration draws (NaN without them)."""
        draws = getattr(self, "interval_draws_", np.empty((0, 2)))
        if len(draws) < 20:
            return np.full((len(risk), 2), np.nan)
        lin = draws[:, :1] + draws[:, 1:] * np.asarray(risk, dtype=float)[None, :]
        horizon = self.task == "survival" and self.horizon is not None
        horizon = horizon and self.cox_slope_ is not None
        probs = 1.0 - np.exp(-np.exp(lin)) if horizon else expit(lin)
        q = (1 - level) / 2
        return np.quantile(probs, [q, 1 - q], axis=0).T

    @property
    def platform_independent(self) -> bool:
        """True when a profile is represented by its own within-sample ranks only."""
        return self.preprocessor_.platform_independent

    # -- prediction -----------------------------------------------------------------------------
    def _learner_input(self, z: pd.DataFrame) -> pd.DataFrame | np.ndarray:
        return z if isinstance(self.learner_, SignatureEnsemble | SignatureScore) else z.to_numpy()

    def _risk(self, z: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.learner_.predict(self._learner_input(z)), dtype=float)

    def predict(
        self, x: pd.DataFrame, batch: np.ndarray | None = None, strict: bool = True
    ) -> np.ndarray:
        """Risk score (higher = worse prognosis); ``strict``: see the preprocessor."""
        return self._risk(self._encode(x, batch, strict))

    def survival_at(self, risk: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Predicted survival probability S(t) for each sample (rows) and time (columns)."""
        if self.cox_slope_ is None:
            raise no_survival(self)
        return self.calibrator_.survival_at(risk, times)

    def probability(self, risk: np.ndarray) -> np.ndarray:
        """Calibrated probability of the event (binary status, or event by ``horizon``)."""
        return self.calibrator_.probability(risk, self.horizon if self.task == "survival" else None)

    def predict_risk(self, x: pd.DataFrame) -> np.ndarray:
        """Contract: risk per sample (higher = worse)."""
        return self.predict(x)

    def predict_probability(self, x: pd.DataFrame) -> np.ndarray:
        """Contract: calibrated event probability (by the horizon for survival outcomes)."""
        return self.probability(self.predict(x))

    def predict_survival(self, x: pd.DataFrame, times: np.ndarray) -> np.ndarray:
        """Contract: S(t) per sample and time (survival models only)."""
        return self.survival_at(self.predict(x), times)

    def predict_frame(
        self,
        x: pd.DataFrame,
        surv_times: np.ndarray | None = None,
        batch: np.ndarray | None = None,
        strict: bool = True,
    ) -> pd.DataFrame:
        """Risk, probability with its interval, risk group (and survival probabilities)."""
        risk = self.predict(x, batch, strict)
        interval = self.probability_interval(risk)
        out = pd.DataFrame(
            {
                "risk": risk,
                "prob": self.probability(risk),
                "probability_ci_low": interval[:, 0],
                "probability_ci_high": interval[:, 1],
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
        """Weight of every standardised input feature (gene) in the risk, for linear models."""
        coef = getattr(self.learner_, "coef_", None)
        if coef is None:
            return None
        return pd.Series(np.asarray(coef, dtype=float), index=self.feature_names)

    def explain_genes(self, x: pd.DataFrame, top: int = 10) -> list[GeneExplanation]:
        """Per sample, the features contributing most to its risk (weight x standardised value):
        ``features`` (the contract) and ``genes`` (with the standardised value too)."""
        coef = self.gene_coefficients
        if coef is None:
            raise InputError(
                f"per-patient explanations need a model linear in its features; "
                f"{self.model!r} is not (use global permutation importance)."
            )
        z = self._encode(x)
        contrib = z.to_numpy() * coef.to_numpy()
        col = {str(c): j for j, c in enumerate(z.columns)}
        return [
            {
                **e,
                "genes": [
                    {
                        "gene": f["feature"],
                        "contribution": f["contribution"],
                        "expression_z": float(z.iat[i, col[f["feature"]]]),
                    }
                    for f in e["features"]
                ],
            }
            for i, e in enumerate(top_contributions(z.index, z.columns, contrib, top))
        ]

    def explain(self, x: pd.DataFrame, top: int = 10) -> list[Explanation]:
        """Contract: per sample, the ``top`` features by absolute contribution (see
        :meth:`explain_genes`, whose ``genes`` entries these dictionaries also carry)."""
        return [e for e in self.explain_genes(x, top)]

    # -- bundle -----------------------------------------------------------------------------------
    def save(self, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
        """Write a :mod:`metastat.core.bundle` folder (see :mod:`metastat.expression.persist`)."""
        from metastat.expression.persist import save_model

        return save_model(self, path, info=info)

    @classmethod
    def load(cls, path: str | Path) -> RiskModel:
        """Read a folder written by :meth:`save` (or by older metastat versions)."""
        from metastat.expression.persist import load_model

        return load_model(path)[0]
