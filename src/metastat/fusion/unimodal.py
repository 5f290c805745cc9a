"""Single-modality risk models on a :class:`MultimodalSet`, with one prediction interface.

Each modality's default model comes from its registry entry (:mod:`metastat.fusion.registry`):

* clinical: :class:`TabularRiskModel` = typed clinical encoder + elastic-net Cox / logistic head
  (the heads and calibration of :class:`metastat.expression.model.RiskModel`);
* expression: :class:`metastat.expression.model.RiskModel` itself;
* histology: :class:`TabularRiskModel` on mean-pooled tile features (standardised);
* radiology: :class:`TabularRiskModel` on radiomics (:mod:`metastat.radiology.model`).

:class:`UnimodalModel` fits on the training patients who have the modality; at prediction a
patient without it gets the training-median risk and an empty ``modalities`` entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from metastat.clinical.encoder import ClinicalEncoder, Variable
from metastat.errors import InputError
from metastat.expression.model import RiskModel
from metastat.fusion.modalities import MultimodalSet
from metastat.fusion.registry import get_modality


class StandardEncoder:
    """Numeric features -> standardised (training mean / sd), NaN -> training mean."""

    def fit(self, frame: pd.DataFrame) -> StandardEncoder:
        self.columns_ = list(frame.columns)
        self.mean_ = frame.mean().fillna(0.0).to_numpy()
        sd = frame.std(ddof=0).fillna(0.0).to_numpy()
        self.sd_ = np.where(sd > 1e-12, sd, 1.0)
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        x = (frame[self.columns_].to_numpy(dtype=float) - self.mean_) / self.sd_
        return pd.DataFrame(np.nan_to_num(x), index=frame.index, columns=self.columns_)

    def fit_transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.fit(frame).transform(frame)


class TabularRiskModel(RiskModel):
    """A table encoder (clinical or standard) + linear head, with :class:`RiskModel` calibration
    and contract (risk, probability, survival, explanation, bundle)."""

    def __init__(
        self,
        model: str = "coxnet",
        *,
        task: Literal["binary", "survival"] = "survival",
        horizon: float | None = None,
        variables: list[Variable] | None = None,
        seed: int = 0,
    ) -> None:
        # no per-patient calibration intervals: fusion combines risks, never shows these
        super().__init__(model, task=task, horizon=horizon, seed=seed, n_interval=0)
        self.variables = variables

    def _fit_encoder(self, x: pd.DataFrame, batch: Any = None) -> pd.DataFrame:
        self.encoder_ = ClinicalEncoder(self.variables) if self.variables else StandardEncoder()
        return self.encoder_.fit_transform(x)

    def _encode(self, x: pd.DataFrame, batch: Any = None, strict: bool = True) -> pd.DataFrame:
        return self.encoder_.transform(x)

    @property
    def feature_names(self) -> list[str]:
        """Encoded feature names (clinical variable levels, table columns)."""
        enc = self.encoder_
        return list(enc.columns_ if isinstance(enc, StandardEncoder) else enc.feature_names_)

    def save(self, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
        """Write a :mod:`metastat.core.bundle` folder (:mod:`metastat.fusion.persist_tabular`)."""
        from metastat.fusion.persist_tabular import save_tabular

        return save_tabular(self, path, info=info)

    @classmethod
    def load(cls, path: str | Path) -> TabularRiskModel:
        from metastat.fusion.persist_tabular import load_tabular

        return load_tabular(path)


def default_learner(data: MultimodalSet) -> str:
    """CoxNet when follow-up times exist and the outcome is time-to-event, else logistic."""
    return "coxnet" if data.kind == "survival" else "logistic"


def modality_input(data: MultimodalSet, modality: str) -> pd.DataFrame:
    """The table a single-modality model reads for ``modality`` (bags are mean-pooled)."""
    return data.features(modality)


class UnimodalModel:
    """One modality -> calibrated risk; patients lacking the modality get the median risk."""

    def __init__(
        self,
        modality: str,
        *,
        learner: str | None = None,
        seed: int = 0,
        n_genes: int | None = 2000,
    ) -> None:
        self.modality = modality
        self.learner = learner
        self.seed = seed
        self.n_genes = n_genes

    def fit(self, data: MultimodalSet) -> UnimodalModel:
        has = data.has(self.modality)
        if has.sum() < 10:
            raise InputError(f"fewer than 10 training patients have modality {self.modality!r}.")
        self.model_: RiskModel = get_modality(self.modality).unimodal(
            self.learner or default_learner(data),
            task="binary" if data.kind == "binary" else "survival",
            horizon=data.horizon,
            variables=data.variables,
            n_genes=self.n_genes,
            seed=self.seed,
        )
        x = modality_input(data, self.modality)[has]
        self.model_.fit(x, data.target[has], data.patient_ids[has])
        self.oof_ = pd.Series(
            np.asarray(self.model_.learner_.oof_risk_, float), index=data.patient_ids[has]
        )
        return self

    def raw_risk(self, data: MultimodalSet) -> pd.Series:
        """Learner risk of the patients who have the modality (NaN for the others)."""
        out = pd.Series(np.nan, index=data.patient_ids)
        has = data.has(self.modality)
        if has.any():
            # a cohort is scored leniently: sparse profiles are imputed with a warning
            out[has] = self.model_.predict(modality_input(data, self.modality)[has], strict=False)
        return out

    def predict_frame(
        self, data: MultimodalSet, surv_times: np.ndarray | None = None
    ) -> pd.DataFrame:
        risk = self.raw_risk(data)
        used = risk.notna().to_numpy()
        r = risk.fillna(self.model_.risk_cut_).to_numpy()
        out = pd.DataFrame(
            {"risk": r, "prob": self.model_.probability(r), "high_risk": r > self.model_.risk_cut_},
            index=data.patient_ids,
        )
        if surv_times is not None and self.model_.cox_slope_ is not None:
            sp = self.model_.survival_at(r, surv_times)
            for i in range(sp.shape[1]):
                out[f"surv_{i}"] = sp[:, i]
        for k, v in data.provenance(np.where(used, self.modality, "")).items():
            out[k] = v
        return out
