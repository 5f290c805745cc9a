"""Side-by-side cross-validation of single-modality and fused models on identical splits.

Every model sees the same patient-grouped splits (:func:`metastat.evaluate.patient_kfold`); all
metrics and CIs come from :func:`metastat.evaluate.summarise` / :func:`~metastat.evaluate.compare`
on one predictions table (column ``model``). Extra *scenarios* score the same fitted fused models
with a modality removed at prediction time (``model[-expression]``) or with expression generated
from histology (``model[generated]``), so degradation is measured on exactly the same patients.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from metastat import progress as prog
from metastat.atomic import atomic_write
from metastat.core.provenance import run_provenance
from metastat.errors import InputError, UnknownNameError, did_you_mean
from metastat.evaluate.bootstrap import Estimate
from metastat.evaluate.predictions import prediction_frame
from metastat.evaluate.splits import patient_kfold
from metastat.evaluate.summary import compare, metrics_json, summarise
from metastat.fusion.modalities import MultimodalSet
from metastat.fusion.registry import get_modality, modality_names

#: the single-modality models: one per registered modality
UNIMODAL = modality_names()
#: model name -> description
FUSION_MODELS: dict[str, str] = {
    **{m: get_modality(m).description for m in UNIMODAL},
    "late": "late fusion: calibrated stacking of per-modality risks (one stacker per subset)",
    "concat": "intermediate fusion: concatenated modality embeddings, modality dropout",
    "gated": "intermediate fusion: gated sum of modality embeddings, modality dropout",
    "kronecker": "intermediate fusion: Kronecker product of modality embeddings",
    "coattention": "gene-set tokens x tiles co-attention (MCAT-style) + clinical, modality dropout",
}


class FusionModel(Protocol):
    def fit(self, data: MultimodalSet) -> FusionModel: ...

    def predict_frame(
        self, data: MultimodalSet, surv_times: np.ndarray | None = None
    ) -> pd.DataFrame: ...


def build_model(name: str, *, seed: int = 0, **kw: Any) -> FusionModel:
    """Instantiate fusion model ``name`` (see :data:`FUSION_MODELS`)."""
    if name not in FUSION_MODELS:
        names = sorted(FUSION_MODELS)
        raise UnknownNameError(
            f"unknown fusion model {name!r}; models: {names}.{did_you_mean(name, names)}"
        )
    if name in UNIMODAL:
        from metastat.fusion.unimodal import UnimodalModel

        return UnimodalModel(name, seed=seed)
    if name == "late":
        from metastat.fusion.late import LateFusion

        return LateFusion(seed=seed)
    from metastat.fusion.intermediate import NeuralFusion

    return NeuralFusion(name, seed=seed, **kw)  # type: ignore[arg-type]


def default_models(data: MultimodalSet) -> list[str]:
    """Each available single modality, late fusion and the intermediate fusions."""
    mods = data.modalities
    out = [m for m in UNIMODAL if m in mods]
    if len(mods) > 1:
        out += ["late", "concat", "gated", "kronecker"]
    kinds = {get_modality(m).neural for m in mods}
    if {"expression", "bag"} <= kinds:
        out.append("coattention")
    return out


def primary_metric(data: MultimodalSet) -> str:
    return "c_index" if data.kind == "survival" else "auc"


@dataclass
class FusionResult:
    """Long predictions table of every model and scenario, and the side-by-side metrics."""

    predictions: pd.DataFrame
    metrics: dict[str, dict[str, Estimate]]
    deltas: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def table(self, metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Models (rows) x metrics (columns) as 'estimate [ci_low, ci_high]'."""
        rows = {}
        for model, est in self.metrics.items():
            keys = metrics or tuple(est)
            rows[model] = {k: str(est[k]) for k in keys if k in est}
        return pd.DataFrame(rows).T

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {m: metrics_json(e) for m, e in self.metrics.items()}
        for m, e in self.deltas.items():
            out[m] |= metrics_json(e)
        return out

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "predictions.csv", self.predictions.to_csv(index=False))
        atomic_write(out / "metrics.json", json.dumps(self.to_json(), indent=2))
        atomic_write(out / "table.csv", self.table().to_csv())
        atomic_write(out / "run.json", json.dumps(self.meta, indent=2, default=str))
        return out


def _surv_times(data: MultimodalSet) -> np.ndarray | None:
    t = data.target["time"]
    if np.isnan(t).all():
        return None
    return np.quantile(t[~np.isnan(t)], np.linspace(0.1, 0.8, 8))


def _rows(
    pred: pd.DataFrame, data: MultimodalSet, model: str, repeat: int, fold: int
) -> pd.DataFrame:
    truth = pd.DataFrame(
        {
            "event": data.target["event"].astype(float),
            "time": data.target["time"],
            "binary": data.target["binary"],
        }
    )
    return prediction_frame(
        pred,
        truth,
        sample_id=data.patient_ids,
        patient_id=data.patient_ids,
        model=model,
        repeat=repeat,
        fold=fold,
    )


def side_by_side(
    data: MultimodalSet,
    models: list[str] | None = None,
    *,
    n_splits: int = 5,
    n_repeats: int = 1,
    seed: int = 0,
    n_boot: int = 1000,
    drop: tuple[str, ...] = (),
    generators: tuple[str, ...] = (),
    baseline: str | None = None,
    model_kw: dict[str, Any] | None = None,
    progress: bool = True,
) -> FusionResult:
    """Cross-validate ``models`` on the same splits; scenarios score fused models with each
    modality of ``drop`` removed at prediction time (``model[-m]``), and with expression generated
    from histology by each of ``generators`` ('ridge', 'cvae'; ``model[generated-ridge]``), the
    generator fitted on the training fold. ``baseline`` adds paired deltas of every model vs it."""
    models = models or default_models(data)
    for m in models:
        if m not in FUSION_MODELS:
            build_model(m)  # raises with the list of names
    roles: list[tuple[str, str]] = []
    if generators:  # torch only when generating
        from metastat.fusion.generate import fill_missing, make_generator

        roles = [(make_generator(g).source, make_generator(g).target) for g in generators]
    for src, tgt in roles:
        if not {src, tgt} <= set(data.modalities):
            raise InputError(f"generated {tgt} needs training patients with {tgt} and {src}.")
    splits = patient_kfold(
        data.patient_ids, data.labels, n_splits=n_splits, n_repeats=n_repeats, seed=seed
    )
    surv_times = _surv_times(data)
    rows = []
    t0 = time.perf_counter()
    if progress:
        prog.status(
            f"fusion CV on {data.name}: {len(data)} patients, {len(models)} models, "
            f"{len(splits)} folds; then {n_boot} bootstrap replicates per model"
        )
    for split in prog.progress(splits, f"fusion CV {data.name}", unit="fold", enabled=progress):
        train, test = data.subset(split.train), data.subset(split.test)
        scenarios: dict[str, MultimodalSet] = {f"-{m}": test.without(m) for m in drop}
        for g in generators:
            gen = make_generator(g, seed=seed).fit_set(train)
            scenarios[f"generated-{g}"] = fill_missing(test.without(gen.target), gen)
        for name in models:
            kw = (model_kw or {}) if name not in (*UNIMODAL, "late") else {}
            est = build_model(name, seed=seed, **kw)
            est.fit(train)
            rows.append(
                _rows(est.predict_frame(test, surv_times), test, name, split.repeat, split.fold)
            )
            if name in UNIMODAL and name not in {t for _, t in roles}:
                continue
            for tag, scen in scenarios.items():
                if name in UNIMODAL and not tag.startswith("generated"):
                    continue
                pred = est.predict_frame(scen, surv_times)
                rows.append(_rows(pred, scen, f"{name}[{tag}]", split.repeat, split.fold))
    predictions = pd.concat(rows, ignore_index=True)
    fit_s = time.perf_counter() - t0
    metrics, deltas = {}, {}
    names = list(predictions["model"].unique())
    for name in prog.progress(names, "CIs per model", unit="model", enabled=progress):
        sub = predictions[predictions["model"] == name]
        metrics[name] = summarise(
            sub,
            horizon=data.horizon,
            surv_times=surv_times,
            n_boot=n_boot,
            seed=seed,
            progress=progress,
        )
    if baseline is not None:
        key = primary_metric(data)
        for name in prog.progress(list(metrics), "paired CIs", unit="model", enabled=progress):
            if name == baseline:
                continue
            pair = predictions[predictions["model"].isin([name, baseline])]
            cmp = compare(
                pair,
                primary=name,
                baseline=baseline,
                horizon=data.horizon,
                n_boot=n_boot,
                seed=seed,
                progress=progress,
            )
            deltas[name] = {f"delta_{key}_vs_{baseline}": cmp[f"delta_{key}"]}
    meta = run_provenance(
        cohort=data.name,
        kind=data.kind,
        horizon=data.horizon,
        n_patients=len(data),
        present=data.present.sum().astype(int).to_dict(),
        models=models,
        drop=list(drop),
        generators=list(generators),
        n_splits=n_splits,
        n_repeats=n_repeats,
        seed=seed,
        n_boot=n_boot,
        fit_seconds=round(fit_s, 2),
        surv_times=None if surv_times is None else surv_times.tolist(),
    )
    return FusionResult(predictions, metrics, deltas, meta)
