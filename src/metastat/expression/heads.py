"""Learners ("heads") on preprocessed expression, scikit-learn / scikit-survival estimator API.

Every head takes ``fit(X, y, patient_ids=None)`` with ``y`` a target made by :func:`make_target`
(fields ``event``, ``time``, ``binary``), exposes ``predict(X) -> risk`` (higher = worse) and,
after fitting, ``oof_risk_``: out-of-inner-fold risks of the training samples at the chosen
hyper-parameters (used for honest probability calibration). Linear heads expose ``coef_`` over
input columns.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
from sksurv.linear_model import CoxnetSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from metastat.errors import InputError, ValidationError


def surv_of(y: np.ndarray) -> np.ndarray:
    if np.isnan(y["time"]).any():
        raise InputError("this learner needs follow-up times for every training sample.")
    return Surv.from_arrays(y["event"], y["time"])


def _inner_splits(
    y: np.ndarray, patient_ids: np.ndarray | None, n_splits: int, seed: int, label: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    patient_ids = np.arange(len(y)) if patient_ids is None else np.asarray(patient_ids)
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), label.astype(int), patient_ids))


def _harrell(y: np.ndarray, risk: np.ndarray) -> float:
    if not y["event"].any():
        return np.nan
    return concordance_index_censored(y["event"], y["time"], risk)[0]


class CoxNetCV(BaseEstimator):
    """Elastic-net Cox with (l1_ratio, alpha) chosen by inner patient-grouped CV on C-index."""

    oof_risk_: np.ndarray

    def __init__(
        self,
        l1_ratios: tuple[float, ...] = (0.1, 0.5, 0.9),
        n_alphas: int = 40,
        alpha_min_ratio: float = 0.02,
        inner_folds: int = 3,
        seed: int = 0,
    ) -> None:
        self.l1_ratios = l1_ratios
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.inner_folds = inner_folds
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray, patient_ids: np.ndarray | None = None) -> CoxNetCV:
        x = np.asarray(x, dtype=float)
        ys = surv_of(y)
        folds = _inner_splits(y, patient_ids, self.inner_folds, self.seed, y["event"])
        best = (-np.inf, None, None, None)
        for l1 in self.l1_ratios:
            path = self._coxnet(l1, None).fit(x, ys)
            alphas = path.alphas_
            oof = np.zeros((len(x), len(alphas)))
            for tr, te in folds:
                model = self._coxnet(l1, alphas).fit(x[tr], ys[tr])
                oof[te] = np.column_stack([model.predict(x[te], alpha=a) for a in alphas])
            scores = [
                np.nanmean([_harrell(ys[te], oof[te, k]) for _, te in folds])
                for k in range(len(alphas))
            ]
            k = int(np.nanargmax(scores))
            if scores[k] > best[0]:
                best = (scores[k], l1, alphas, k, oof[:, k])  # type: ignore[assignment]
        self.inner_c_, l1_ratio, alphas, k, self.oof_risk_ = best  # type: ignore[misc]
        self.l1_ratio_: float = float(l1_ratio)
        self.alpha_ = float(alphas[k])
        self.model_ = self._coxnet(self.l1_ratio_, alphas, baseline=True).fit(x, ys)
        self.coef_ = self.model_.coef_[:, k].copy()
        return self

    def _coxnet(
        self, l1: float, alphas: np.ndarray | None, baseline: bool = False
    ) -> CoxnetSurvivalAnalysis:
        return CoxnetSurvivalAnalysis(
            l1_ratio=l1,
            alphas=alphas,
            n_alphas=self.n_alphas,
            alpha_min_ratio=self.alpha_min_ratio,
            fit_baseline_model=baseline,
            max_iter=100000,
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float) @ self.coef_


class LogisticCV(BaseEstimator):
    """Elastic-net logistic regression on the binary status (censored-before-horizon excluded),
    with C chosen by inner patient-grouped CV on AUC."""

    def __init__(
        self,
        cs: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
        l1_ratio: float = 0.5,
        inner_folds: int = 3,
        seed: int = 0,
    ) -> None:
        self.cs = cs
        self.l1_ratio = l1_ratio
        self.inner_folds = inner_folds
        self.seed = seed

    def _model(self, c: float, warm: bool = False) -> LogisticRegression:
        # saga shuffles the samples: without a fixed random_state two fits differ (~1e-3 risk)
        return LogisticRegression(
            C=c,
            l1_ratio=self.l1_ratio,
            solver="saga",
            max_iter=5000,
            tol=1e-3,
            warm_start=warm,
            random_state=self.seed,
        )

    def fit(
        self, x: np.ndarray, y: np.ndarray, patient_ids: np.ndarray | None = None
    ) -> LogisticCV:
        from sklearn.metrics import roc_auc_score

        known = ~np.isnan(y["binary"])
        x, yb = np.asarray(x, dtype=float)[known], y["binary"][known].astype(int)
        g = None if patient_ids is None else np.asarray(patient_ids)[known]
        if np.unique(yb).size < 2:
            raise ValidationError("the training fold has a single class at the horizon.")
        folds = _inner_splits(y[known], g, self.inner_folds, self.seed, yb)
        best = (-np.inf, 0.0, np.zeros(len(yb)))
        cs = sorted(self.cs)  # strongest penalty first: each fit warm-starts the next
        oof = np.zeros((len(cs), len(yb)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for tr, te in folds:
                path = self._model(cs[0], warm=True)
                for k, c in enumerate(cs):
                    path.set_params(C=c)
                    oof[k, te] = path.fit(x[tr], yb[tr]).decision_function(x[te])
            for k, c in enumerate(cs):
                auc = roc_auc_score(yb, oof[k])
                if auc > best[0]:
                    best = (auc, c, oof[k])
            self.inner_auc_, self.c_, best_oof = best
            self.model_ = self._model(self.c_).fit(x, yb)
        self.oof_risk_ = np.full(len(known), np.nan)
        self.oof_risk_[known] = best_oof
        self.coef_ = self.model_.coef_[0].copy()
        self.intercept_ = float(self.model_.intercept_[0])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float) @ self.coef_ + self.intercept_


class _CrossFitted(BaseEstimator):
    """An untuned learner whose ``oof_risk_`` comes from refitting it on inner folds."""

    seed: int

    def _rows(self, y: np.ndarray) -> np.ndarray:
        return np.ones(len(y), dtype=bool)

    def _fit_once(self, x: np.ndarray, y: np.ndarray) -> _CrossFitted:
        raise NotImplementedError

    def fit(
        self, x: np.ndarray, y: np.ndarray, patient_ids: np.ndarray | None = None
    ) -> _CrossFitted:
        x = np.asarray(x, dtype=float)
        rows = np.flatnonzero(self._rows(y))
        label = np.nan_to_num(y["binary"]) if np.isnan(y["time"]).all() else y["event"]
        g = None if patient_ids is None else np.asarray(patient_ids)[rows]
        self.oof_risk_ = np.full(len(y), np.nan)
        for tr, te in _inner_splits(y[rows], g, 3, self.seed, label[rows]):
            inner = clone(self)._fit_once(x[rows[tr]], y[rows[tr]])
            self.oof_risk_[rows[te]] = inner.predict(x[rows[te]])
        return self._fit_once(x, y)


class BaselineLogistic(_CrossFitted):
    """Plain baseline: L2 logistic regression, default C = 1, no tuning."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _rows(self, y: np.ndarray) -> np.ndarray:
        return ~np.isnan(y["binary"])

    def _fit_once(self, x: np.ndarray, y: np.ndarray) -> BaselineLogistic:
        known = self._rows(y)
        model = LogisticRegression(max_iter=5000).fit(x[known], y["binary"][known].astype(int))
        self.coef_, self.intercept_ = model.coef_[0].copy(), float(model.intercept_[0])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float) @ self.coef_ + self.intercept_


class BaselineCoxNet(_CrossFitted):
    """Plain baseline: scikit-survival's CoxNet with its defaults (prediction at the last alpha)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _fit_once(self, x: np.ndarray, y: np.ndarray) -> BaselineCoxNet:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = CoxnetSurvivalAnalysis().fit(x, surv_of(y))
        self.coef_ = model.coef_[:, -1].copy()
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float) @ self.coef_


class TreeSurvival(_CrossFitted):
    """Gradient-boosted survival or random survival forest (scikit-survival) with fixed, sensible
    hyper-parameters."""

    def __init__(self, kind: str = "gbs", n_estimators: int = 200, seed: int = 0) -> None:
        self.kind = kind
        self.n_estimators = n_estimators
        self.seed = seed

    def _fit_once(self, x: np.ndarray, y: np.ndarray) -> TreeSurvival:
        if self.kind == "gbs":
            model = GradientBoostingSurvivalAnalysis(
                n_estimators=self.n_estimators,
                learning_rate=0.05,
                max_depth=2,
                subsample=0.8,
                max_features="sqrt",
                random_state=self.seed,
            )
        elif self.kind == "rsf":
            model = RandomSurvivalForest(
                n_estimators=self.n_estimators,
                min_samples_leaf=10,
                max_features="sqrt",
                n_jobs=1,
                random_state=self.seed,
            )
        else:
            raise InputError(f"unknown tree learner {self.kind!r}; use 'gbs' or 'rsf'.")
        self.model_ = model.fit(x, surv_of(y))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict(np.asarray(x, dtype=float))
