"""The MIL risk model: one estimator over tile-feature bags that honours the risk-model contract.

:class:`MILRiskModel` wraps the MIL machinery (:mod:`metastat.mil.train`,
:mod:`metastat.mil.infer`, :mod:`metastat.mil.checkpoint`) behind
:class:`~metastat.core.contract.RiskPredictor`: ``x`` is a list of (n_tiles, dim) bags, one per
sample. ``fit`` runs the training loop of ``metastat mil train`` (:func:`~metastat.mil.train.
train_final`: a patient-grouped validation split for early stopping and calibration, the first
seed), so a fitted estimator equals a CLI-trained checkpoint bit for bit. ``explain`` ranks each
bag's tiles by attention weight; ``save`` writes a :mod:`metastat.core.bundle` folder, ``load``
reads it or a ``metastat mil train`` checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError as PydanticError

from metastat.core.calibration import Calibrator, median_cut
from metastat.core.contract import Explanation, no_survival, top_contributions
from metastat.data.target import Target
from metastat.errors import InputError, ModelError
from metastat.mil.bags import ArrayBags, MILData, check_features
from metastat.mil.checkpoint import Checkpoint, load_checkpoint, save_bundle
from metastat.mil.config import MILConfig
from metastat.mil.infer import outputs, predict_logits
from metastat.mil.losses import survival_curve, to_bin

TRAIN_RISK = "train_risk_quantiles"


class MILRiskModel:
    """An attention-MIL model (any registered one) fitted on bags and a :class:`Target`.

    ``settings`` are :class:`~metastat.mil.config.MILConfig` training fields (``epochs``,
    ``lr``, ``patience``, ``survival_loss``, ``val_fraction``, ``threads`` ...); ``params`` the
    model's hyper-parameters. ``task`` defaults to the target's kind; survival models take the
    ``horizon`` of their probabilities from the target unless given.
    """

    def __init__(
        self,
        model: str = "abmil",
        *,
        task: str | None = None,
        horizon: float | None = None,
        params: dict[str, Any] | None = None,
        seed: int = 0,
        **settings: Any,
    ) -> None:
        self.task = task
        raw = {"model": model, "task": task or "binary", "horizon": horizon, "seeds": [seed]}
        self.config = _config(raw | {"params": params or {}, **settings})

    @classmethod
    def from_config(cls, config: MILConfig) -> MILRiskModel:
        """The estimator of a run config (its model, task, horizon, first seed)."""
        out = cls.__new__(cls)
        out.task, out.config = config.task, config
        return out

    @property
    def kind(self) -> str:
        return self.config.task

    @property
    def horizon(self) -> float | None:
        return self.config.horizon

    # -- fitting ----------------------------------------------------------------------------------
    def fit(
        self,
        x: Sequence[np.ndarray],
        target: Target,
        *,
        patient_ids: Sequence[str] | None = None,
        sample_ids: Sequence[str] | None = None,
    ) -> MILRiskModel:
        """Fit on bags ``x`` (one per sample) and ``target``. Samples of one patient
        (``patient_ids``; default: each its own) stay on one side of the validation split."""
        if len(x) != len(target):
            raise InputError(f"{len(x)} bags but {len(target)} targets: give one bag per sample.")
        if self.task is not None and self.task != target.kind:
            raise InputError(f"a {self.task} MIL model cannot be fitted on a {target.kind} target.")
        update: dict[str, Any] = {"task": target.kind}
        if target.kind == "survival" and self.config.horizon is None:
            update["horizon"] = target.horizon
        self.config = self.config.model_copy(update=update)
        ids = [str(s) for s in (sample_ids if sample_ids is not None else range(len(x)))]
        pids = np.asarray(patient_ids if patient_ids is not None else ids).astype(str)
        classes = [] if target.kind == "survival" else list(target.classes or ("0", "1"))
        data = MILData(ArrayBags(ids, list(x)), [[i] for i in range(len(x))], ids, pids, target,
                       classes)  # fmt: skip
        return self.fit_data(data)

    def fit_data(
        self, data: MILData, *, encoder: str | None = None, progress: bool = False
    ) -> MILRiskModel:
        """Fit on a :class:`~metastat.mil.bags.MILData` cohort (``metastat mil train``'s path)."""
        from metastat.mil.train import train_final

        res = train_final(self.config, data, progress=progress)
        self.checkpoint_ = Checkpoint(res.name, res.model, res.spec, res.head, encoder, {})
        self.seconds_ = res.seconds
        train_risk = self.predict_risk([data.bag(u) for u in range(len(data))])
        self.risk_cut_ = median_cut(train_risk)
        self.train_risk_quantiles_ = np.quantile(train_risk, np.linspace(0, 1, 101))
        self.training_ = {"seed": res.seed, "best_epoch": res.best_epoch, "history": res.history,
                          "n_units": len(data)}  # fmt: skip
        return self

    # -- prediction -------------------------------------------------------------------------------
    def _fitted(self) -> Checkpoint:
        if not hasattr(self, "checkpoint_"):
            raise ModelError("this MILRiskModel is not fitted: call fit(bags, target) or load().")
        return self.checkpoint_

    def _logits(self, x: Sequence[np.ndarray]) -> np.ndarray:
        ck = self._fitted()
        bags = [check_features(b, str(i), dim=ck.spec.in_dim) for i, b in enumerate(x)]
        if not bags:
            raise InputError("no bags to score.")
        return predict_logits(ck.model, bags)

    def predict_frame(self, x: Sequence[np.ndarray]) -> pd.DataFrame:
        """``risk``, ``prob``, ``high_risk`` (above the training median) and the head's per-class
        or per-bin survival columns, one row per bag."""
        out = outputs(self._logits(x), self._fitted().head)
        out["high_risk"] = out["risk"] > self.risk_cut_
        return out

    def predict_risk(self, x: Sequence[np.ndarray]) -> np.ndarray:
        return outputs(self._logits(x), self._fitted().head)["risk"].to_numpy(dtype=float)

    def predict_probability(self, x: Sequence[np.ndarray]) -> np.ndarray:
        """Calibrated (Platt / Cox + Breslow at the horizon) when calibration was fitted, else
        the model's softmax (binary) or discrete-time survival (``nll``) probability."""
        return outputs(self._logits(x), self._fitted().head)["prob"].to_numpy(dtype=float)

    def predict_survival(self, x: Sequence[np.ndarray], times: np.ndarray) -> np.ndarray:
        """S(t): the Cox head's Breslow curve, or for the discrete-time (``nll``) head the
        survival at the end of the time bin holding ``t`` (the step ``prob`` is read from)."""
        head = self._fitted().head
        if head.task != "survival":
            raise no_survival(self)
        logits, t = self._logits(x), np.asarray(times, dtype=float)
        if head.survival_loss == "cox":
            cal = Calibrator.from_dict(head.calibration) if head.calibration else Calibrator()
            if cal.cox_slope is None:
                raise ModelError(
                    "this Cox MIL model has no baseline hazard (fitted without calibration or "
                    "validation bags); refit with calibrate=True and val_fraction > 0."
                )
            return cal.survival_at(outputs(logits, head)["risk"].to_numpy(), t)
        surv = survival_curve(torch.from_numpy(logits)).numpy().astype(float)
        return surv[:, to_bin(t, np.asarray(head.edges or []))]

    def explain(
        self,
        x: Sequence[np.ndarray],
        top: int = 10,
        *,
        sample_ids: Sequence[str] | None = None,
        method: Literal["attention", "attention_x_grad"] = "attention",
    ) -> list[Explanation]:
        """Per bag, its ``top`` tiles (``tile <row>``) by attention weight (the tile's share of
        the pooled embedding, >= 0, summing to 1; pooling baselines: uniform / tile logit), or
        with ``method="attention_x_grad"`` attention x its gradient (signed)."""
        from metastat.mil.heatmap import tile_scores

        if method not in ("attention", "attention_x_grad"):
            raise InputError(
                f"explain: method must be attention or attention_x_grad, not {method!r}"
            )
        ck, ids = self._fitted(), list(sample_ids or range(len(x)))
        out: list[Explanation] = []
        for sid, bag in zip(ids, x, strict=True):
            b = check_features(bag, str(sid), dim=ck.spec.in_dim)
            s = tile_scores(ck, b, method)
            out += top_contributions([sid], [f"tile {j}" for j in range(len(b))], s[None], top)
        return out

    # -- state ------------------------------------------------------------------------------------
    def save(self, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
        """Write a :mod:`metastat.core.bundle` folder (weights, calibration, settings)."""
        ck = self._fitted()
        state = {"config": self.config.model_dump(mode="json"), "risk_cut": self.risk_cut_,
                 "training": self.training_}  # fmt: skip
        arrays = {TRAIN_RISK: self.train_risk_quantiles_}
        return save_bundle(path, ck, state=state, arrays=arrays, info=info)

    @classmethod
    def load(cls, path: str | Path) -> MILRiskModel:
        """A bundle from :meth:`save`, or a ``metastat mil train`` checkpoint folder."""
        return cls.from_checkpoint(load_checkpoint(path))

    @classmethod
    def from_checkpoint(cls, ck: Checkpoint) -> MILRiskModel:
        cfg = ck.meta.get("config")
        if cfg is None:  # a bare checkpoint: its model, task and horizon
            cfg = {"model": ck.name, "task": ck.head.task, "horizon": ck.head.horizon}
        out = cls.from_config(_config(cfg))
        out.checkpoint_ = ck
        quantiles = ck.arrays.get(TRAIN_RISK)
        out.train_risk_quantiles_ = quantiles if quantiles is not None else np.zeros(0)
        out.risk_cut_ = float(ck.meta.get("risk_cut", np.nan))
        out.training_ = ck.meta.get("training") or {
            k: ck.meta[k] for k in ("seed", "best_epoch", "history", "n_units") if k in ck.meta
        }
        return out


def _config(raw: dict[str, Any]) -> MILConfig:
    try:
        return MILConfig.model_validate(raw)
    except PydanticError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise InputError("invalid MIL model settings: " + "; ".join(lines)) from exc
