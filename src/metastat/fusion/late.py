"""Late fusion: calibrated stacking of per-modality risks that handles absent modalities.

Each modality's model is fitted on the training patients who have it; its *out-of-inner-fold*
training risks (never in-sample risks) are standardised and stacked by a small ridge Cox model
(time-to-event) or logistic model (binary). One stacker is fitted per subset of modalities, so a
patient is scored with exactly the modalities they have, and the prediction says which ones.
"""

from __future__ import annotations

import logging
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from metastat.core.calibration import Calibrator, median_cut
from metastat.core.contract import Explanation, no_survival, top_contributions
from metastat.data.target import Target
from metastat.errors import InputError
from metastat.fusion.modalities import MultimodalSet
from metastat.fusion.unimodal import UnimodalModel

log = logging.getLogger(__name__)


class Stacker:
    """Linear combination of standardised modality risks, with calibrated probabilities."""

    def __init__(self, modalities: tuple[str, ...], ridge: float = 1.0) -> None:
        self.modalities = modalities
        self.ridge = ridge

    def fit(self, z: np.ndarray, y: np.ndarray, kind: str, horizon: float | None) -> Stacker:
        self.kind, self.horizon = kind, horizon
        if kind == "survival":
            cox = CoxPHSurvivalAnalysis(alpha=self.ridge).fit(
                z, Surv.from_arrays(y["event"], y["time"])
            )
            self.coef_, self.intercept_ = np.asarray(cox.coef_, float), 0.0
            lp = z @ self.coef_
            # the stacked risk is a log hazard ratio already: Breslow baseline, slope 1
            self.calibrator_ = Calibrator().fit_cox(lp, y["time"], y["event"], fit_slope=False)
        else:
            known = ~np.isnan(y["binary"])
            lr = LogisticRegression(C=1.0 / self.ridge).fit(
                z[known], y["binary"][known].astype(int)
            )
            self.coef_, self.intercept_ = lr.coef_[0].copy(), float(lr.intercept_[0])
            lp = z @ self.coef_ + self.intercept_
            self.calibrator_ = Calibrator(platt=(0.0, 1.0))  # the stacked risk is a logit
        self.risk_cut_ = median_cut(lp)
        return self

    def risk(self, z: np.ndarray) -> np.ndarray:
        return z @ self.coef_ + self.intercept_

    def probability(self, lp: np.ndarray) -> np.ndarray:
        return self.calibrator_.probability(lp, self.horizon if self.kind == "survival" else None)

    def survival_at(self, lp: np.ndarray, times: np.ndarray) -> np.ndarray:
        return self.calibrator_.survival_at(lp, times)


class LateFusion:
    """Per-modality models + one stacker per modality subset."""

    def __init__(
        self,
        modalities: tuple[str, ...] | None = None,
        *,
        learner: str | None = None,
        ridge: float = 1.0,
        min_patients: int = 20,
        seed: int = 0,
    ) -> None:
        self.modalities = modalities
        self.learner = learner
        self.ridge = ridge
        self.min_patients = min_patients
        self.seed = seed

    def fit(self, data: MultimodalSet, target: Target | None = None) -> LateFusion:
        """Fit on ``data`` (its outcome, or ``target`` instead)."""
        if target is not None:
            data = data.with_target(target)
        mods = tuple(self.modalities or data.modalities)
        self.models_ = {
            m: UnimodalModel(m, learner=self.learner, seed=self.seed).fit(data) for m in mods
        }
        oof = pd.DataFrame({m: um.oof_.reindex(data.patient_ids) for m, um in self.models_.items()})
        self.center_ = oof.mean().to_dict()
        self.scale_ = oof.std(ddof=0).replace(0, 1.0).fillna(1.0).to_dict()
        z = (oof - pd.Series(self.center_)) / pd.Series(self.scale_)
        self.stackers_: dict[tuple[str, ...], Stacker] = {}
        for k in range(1, len(mods) + 1):
            for subset in combinations(mods, k):
                rows = z[list(subset)].notna().all(axis=1).to_numpy()
                if data.kind == "binary":
                    rows &= ~np.isnan(data.target["binary"])
                if rows.sum() < self.min_patients:
                    log.info(
                        "late fusion: no stacker for %s (%d training patients < %d)",
                        "+".join(subset), rows.sum(), self.min_patients,
                    )  # fmt: skip
                else:
                    self.stackers_[subset] = Stacker(subset, self.ridge).fit(
                        z.loc[rows, list(subset)].to_numpy(),
                        data.target[rows],
                        data.kind,
                        data.horizon,
                    )
        if not self.stackers_:
            raise InputError("late fusion: no modality subset has enough training patients.")
        return self

    @property
    def weights(self) -> dict[str, dict[str, float]]:
        """Stacking weight of each standardised modality risk, per modality subset."""
        return {
            "+".join(s): dict(zip(s, st.coef_.round(4).tolist(), strict=True))
            for s, st in self.stackers_.items()
        }

    @property
    def kind(self) -> str:
        return next(iter(self.stackers_.values())).kind

    @property
    def horizon(self) -> float | None:
        return next(iter(self.stackers_.values())).horizon

    def _z(self, data: MultimodalSet) -> pd.DataFrame:
        """Standardised modality risks (NaN where a patient lacks the modality)."""
        raw = pd.DataFrame({m: um.raw_risk(data) for m, um in self.models_.items()})
        return (raw - pd.Series(self.center_)) / pd.Series(self.scale_)

    def predict_frame(
        self, data: MultimodalSet, surv_times: np.ndarray | None = None
    ) -> pd.DataFrame:
        z = self._z(data)
        avail = z.notna().to_numpy()
        mods = list(self.models_)
        risk = np.zeros(len(data))
        prob = np.full(len(data), np.nan)
        high = np.zeros(len(data), dtype=bool)
        used = np.full(len(data), "", dtype=object)
        sp = None if surv_times is None else np.full((len(data), len(surv_times)), np.nan)
        keys = {tuple(m for m, ok in zip(mods, row, strict=True) if ok) for row in avail}
        for key in keys:
            rows = np.array(
                [tuple(m for m, ok in zip(mods, r, strict=True) if ok) == key for r in avail]
            )
            subset = self._best_subset(key)
            if subset is None:
                continue  # no modality at all: neutral risk, no probability
            st = self.stackers_[subset]
            lp = st.risk(z.loc[rows, list(subset)].to_numpy())
            risk[rows], prob[rows], high[rows] = lp, st.probability(lp), lp > st.risk_cut_
            used[rows] = "+".join(subset)
            if sp is not None and st.kind == "survival":
                sp[rows] = st.survival_at(lp, surv_times)  # type: ignore[arg-type]
        out = pd.DataFrame({"risk": risk, "prob": prob, "high_risk": high}, index=data.patient_ids)
        if sp is not None and np.isfinite(sp).any():
            for i in range(sp.shape[1]):
                out[f"surv_{i}"] = sp[:, i]
        for k, v in data.provenance(used).items():
            out[k] = v
        return out

    def _best_subset(self, available: tuple[str, ...]) -> tuple[str, ...] | None:
        """The largest fitted modality subset within what the patient has."""
        fitted = [s for s in self.stackers_ if set(s) <= set(available)]
        return max(fitted, key=len) if fitted else None

    # -- the risk-model contract (metastat.core.contract) -----------------------------------------
    def predict_risk(self, data: MultimodalSet) -> np.ndarray:
        return self.predict_frame(data)["risk"].to_numpy(dtype=float)

    def predict_probability(self, data: MultimodalSet) -> np.ndarray:
        return self.predict_frame(data)["prob"].to_numpy(dtype=float)

    def predict_survival(self, data: MultimodalSet, times: np.ndarray) -> np.ndarray:
        """S(t) of each patient's stacker (NaN rows for patients with no modality)."""
        if self.kind != "survival":
            raise no_survival(self)
        t = np.asarray(times, dtype=float)
        frame = self.predict_frame(data, t)
        cols = [f"surv_{i}" for i in range(len(t))]
        return frame.reindex(columns=cols).to_numpy(dtype=float)

    def explain(self, data: MultimodalSet, top: int = 10) -> list[Explanation]:
        """Per patient, each used modality's stacker weight x its standardised risk (the terms
        of the stacked risk, without the intercept), largest absolute first."""
        z = self._z(data)
        mods, values = list(z.columns), z.to_numpy()
        terms = np.full(values.shape, np.nan)
        for i, row in enumerate(values):
            subset = self._best_subset(tuple(np.array(mods)[np.isfinite(row)]))
            if subset is not None:
                cols = [mods.index(m) for m in subset]
                terms[i, cols] = self.stackers_[subset].coef_ * row[cols]
        # modalities outside the patient's stacker (NaN) contribute nothing
        return top_contributions(data.patient_ids, mods, terms, top)

    def save(self, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
        """:func:`metastat.fusion.persist.save_late`."""
        from metastat.fusion.persist import save_late

        return save_late(self, path, info=info)

    @classmethod
    def load(cls, path: str | Path) -> LateFusion:
        from metastat.fusion.persist import load_late

        return load_late(path)[0]
