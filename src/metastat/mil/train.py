"""Training: seeded, deterministic CPU fits with early stopping, and patient-grouped CV.

Every model of a run sees the same patient-grouped stratified folds (from
:mod:`metastat.evaluate.splits`); inside each training fold a patient-grouped validation split
drives early stopping and calibration. Results are a long predictions table over seeds
(``repeat`` = seed index) and metrics with paired patient-bootstrap CIs versus the baseline.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from metastat import progress as prog
from metastat.core.calibration import median_cut
from metastat.core.cox import cox_nll
from metastat.core.provenance import run_provenance
from metastat.core.seeds import subsample
from metastat.data.target import Target
from metastat.evaluate.predictions import prediction_frame
from metastat.evaluate.splits import Split, patient_kfold, train_validation_split
from metastat.evaluate.summary import compare, metrics_json, summarise
from metastat.mil.bags import MILData, collate
from metastat.mil.config import MILConfig
from metastat.mil.infer import Head, fit_calibration, outputs, predict_logits
from metastat.mil.losses import class_weights, nll_survival, time_bins, to_bin
from metastat.mil.models import ModelSpec, build_model


def seed_everything(seed: int, threads: int | None = None) -> None:
    """Fix every RNG and make CPU kernels deterministic."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads is not None:
        torch.set_num_threads(threads)


def make_head(config: MILConfig, targets: Target, classes: list[str]) -> Head:
    """Output layout for the task; survival bins from the training targets."""
    edges = None
    if config.task == "survival" and config.survival_loss == "nll":
        assert targets.time is not None and targets.event is not None
        edges = time_bins(targets.time, targets.event, config.n_time_bins).tolist()
    return Head(
        config.task,
        classes if config.task != "survival" else [],
        config.survival_loss,
        edges,
        config.horizon,
    )


def model_spec(config: MILConfig, in_dim: int, head: Head, name: str | None = None) -> ModelSpec:
    """The spec of model ``name`` (default ``config.model``): its validated hyper-parameters."""
    return ModelSpec(in_dim, head.n_out, config.params_for(name or config.model))


@dataclass
class FitResult:
    """A trained model with its head (calibrated), spec and training history."""

    name: str
    model: nn.Module
    spec: ModelSpec
    head: Head
    seed: int
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


class _Loss:
    def __init__(self, config: MILConfig, head: Head, targets: Target) -> None:
        self.config, self.head = config, head
        self.weight = None
        if head.task != "survival" and config.class_weighting:
            assert targets.label is not None
            self.weight = class_weights(targets.label, head.n_out)

    def __call__(self, logits: torch.Tensor, t: Target) -> torch.Tensor:
        if self.head.task != "survival":
            y = torch.as_tensor(t.label, dtype=torch.long)
            return F.cross_entropy(logits, y, weight=self.weight)
        assert t.time is not None and t.event is not None
        event = torch.as_tensor(t.event, dtype=torch.float32)
        if self.head.survival_loss == "cox":
            time = torch.as_tensor(t.time, dtype=torch.float32)
            return cox_nll(logits[:, 0], time, event, self.config.cox_ties)
        bins = torch.as_tensor(to_bin(t.time, np.asarray(self.head.edges)), dtype=torch.long)
        return nll_survival(logits, bins, event)


def fit(
    config: MILConfig,
    data: MILData,
    train: np.ndarray,
    val: np.ndarray,
    *,
    model_name: str,
    seed: int,
    progress: bool = False,
) -> FitResult:
    """Train ``model_name`` on units ``train`` with early stopping on the ``val`` loss."""
    seed_everything(seed, config.threads)
    t0 = time.perf_counter()
    head = make_head(config, data.targets.subset(train), data.classes)
    spec = model_spec(config, data.dim(), head, model_name)
    model = build_model(model_name, spec)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = _Loss(config, head, data.targets.subset(train))
    rng = np.random.default_rng(seed)
    val_bags = [data.bag(int(u)) for u in val]
    best, best_state, best_epoch, history = np.inf, None, 0, []
    bs = config.batch_size
    if head.task == "survival" and head.survival_loss == "cox":
        bs = max(bs, 8)  # a partial likelihood needs several bags per step
    epochs = prog.progress(
        range(config.epochs), f"{model_name} epochs", unit="epoch", enabled=progress
    )
    for epoch in epochs:
        losses = run_epoch(
            model, opt, loss_fn, data, rng.permutation(train), config, rng, bs,
            instance_weight=spec.params.get("instance_weight", 0.0),
        )  # fmt: skip
        val_loss = _eval_loss(model, val_bags, data.targets.subset(val), loss_fn)
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss})
        if val_loss < best - 1e-6 or best_state is None:
            best, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        elif epoch >= config.min_epochs and epoch - best_epoch >= config.patience:
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    if config.calibrate and len(val):
        lv = predict_logits(model, val_bags)
        tr = data.targets.subset(train)
        lt = (
            predict_logits(model, [data.bag(int(u)) for u in train])
            if head.task == "survival"
            else lv
        )
        head.calibration = fit_calibration(
            head, lv, data.targets.subset(val).label, lt, tr.time, tr.event
        )
    return FitResult(
        model_name, model, spec, head, seed, history, best_epoch, time.perf_counter() - t0
    )


def run_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: _Loss,
    data: MILData,
    order: np.ndarray,
    config: MILConfig,
    rng: np.random.Generator,
    batch_size: int,
    *,
    instance_weight: float = 0.0,
) -> list[float]:
    """One pass over the units in ``order`` in padded, masked mini-batches; batch losses.
    ``instance_weight`` mixes in a model's instance loss (CLAM)."""
    model.train()
    losses = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        bags = [subsample(data.bag(int(u)), config.max_tiles, rng) for u in idx]
        t = data.targets.subset(idx)
        x, mask = collate(bags)
        y = torch.as_tensor(t.label) if t.label is not None else None
        out = model(x, mask, y)
        loss = loss_fn(out.logits, t)
        if out.instance_loss is not None:
            loss = (1 - instance_weight) * loss + instance_weight * out.instance_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def _eval_loss(model: nn.Module, bags: list[np.ndarray], t: Target, loss_fn: _Loss) -> float:
    if not bags:
        return float("nan")
    logits = torch.from_numpy(predict_logits(model, bags)).float()
    return float(loss_fn(logits, t))


def split_validation(
    data: MILData, train: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Patient-grouped, stratified validation split inside ``train`` (unit indices)."""
    tr, va = train_validation_split(
        data.patient_ids[train], data.targets.strata()[train], fraction=fraction, seed=seed
    )
    return train[tr], train[va]


def prediction_rows(
    fitres: FitResult,
    data: MILData,
    test: np.ndarray,
    train: np.ndarray,
    repeat: int,
    fold: int,
    horizon: float | None,
) -> pd.DataFrame:
    """Rows of the predictions-table contract for the ``test`` units."""
    out = outputs(predict_logits(fitres.model, [data.bag(int(u)) for u in test]), fitres.head)
    train_risk = outputs(
        predict_logits(fitres.model, [data.bag(int(u)) for u in train]), fitres.head
    )["risk"]
    out["high_risk"] = out["risk"] > median_cut(train_risk.to_numpy())
    truth = replace(data.targets.subset(test), classes=tuple(data.classes), horizon=horizon)
    return prediction_frame(
        out,
        truth.truth(),
        sample_id=[data.unit_ids[int(u)] for u in test],
        patient_id=data.patient_ids[test],
        model=fitres.name,
        repeat=repeat,
        fold=fold,
        seed=fitres.seed,
    )


FoldCallback = Callable[[FitResult, Split], None]


def cross_validate(
    config: MILConfig,
    data: MILData,
    *,
    models: list[str] | None = None,
    callback: FoldCallback | None = None,
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Patient-grouped stratified k-fold CV of every model, once per seed in ``config.seeds``.

    Returns the long predictions table and a summary: per model and seed the point metrics, their
    mean +/- sd over seeds, and bootstrap CIs paired against ``config.baseline``.
    """
    names = models or list(dict.fromkeys([config.model, config.baseline]))
    strata = data.targets.strata()
    rows: list[pd.DataFrame] = []
    timings: dict[str, list[float]] = {n: [] for n in names}
    jobs = [
        (r, seed, split, name)
        for r, seed in enumerate(config.seeds)
        for split in patient_kfold(data.patient_ids, strata, n_splits=config.n_splits, seed=seed)
        for name in names
    ]
    if progress:
        prog.status(
            f"MIL CV: {len(data)} units, {len(config.seeds)} seed(s) x {config.n_splits} folds "
            f"x {len(names)} models = {len(jobs)} fits"
        )
    for r, seed, split, name in prog.progress(jobs, "MIL CV", unit="fit", enabled=progress):
        tr, va = split_validation(data, split.train, config.val_fraction, seed)
        res = fit(config, data, tr, va, model_name=name, seed=seed, progress=progress)
        timings[name].append(res.seconds / max(len(res.history), 1))
        rows.append(prediction_rows(res, data, split.test, tr, r, split.fold, config.horizon))
        if callback is not None:
            callback(res, split)
        if progress:
            prog.status(
                f"seed {seed} fold {split.fold} {name}: {len(res.history)} epochs, "
                f"{res.seconds:.1f} s"
            )
    predictions = pd.concat(rows, ignore_index=True)
    summary = summarise_cv(predictions, config, names)
    summary["seconds_per_epoch"] = {n: float(np.mean(v)) for n, v in timings.items()}
    return predictions, summary


def _one_vs_rest(pred: pd.DataFrame, cls: str | None) -> pd.DataFrame:
    """The predictions as a binary problem ``label == cls`` (unchanged when ``cls`` is None)."""
    if cls is None:
        return pred
    d = pred.copy()
    d["risk"] = d[f"prob_{cls}"]
    d["prob"] = d[f"prob_{cls}"]
    d["binary"] = (d["label"] == cls).astype(float)
    return d


def summarise_cv(predictions: pd.DataFrame, config: MILConfig, names: list[str]) -> dict[str, Any]:
    """Per-seed metrics (mean +/- sd) and paired bootstrap comparisons against the baseline."""
    targets = [None] if config.task != "multiclass" else sorted(predictions["label"].unique())
    out: dict[str, Any] = {
        "models": names,
        "seeds": config.seeds,
        "per_seed": {},
        "mean_sd": {},
        "compare": {},
    }
    for cls in targets:
        d = _one_vs_rest(predictions, cls)
        tag = "" if cls is None else f"class_{cls}_"
        for name in names:
            per_seed = []
            for _, g in d[d["model"] == name].groupby("repeat"):
                est = summarise(g, horizon=config.horizon, n_boot=0)
                per_seed.append({k: v.estimate for k, v in est.items()})
            frame = pd.DataFrame(per_seed)
            out["per_seed"].setdefault(name, {})[tag or "all"] = frame.to_dict("list")
            out["mean_sd"].setdefault(name, {}).update(
                {
                    f"{tag}{k}": {
                        "mean": float(frame[k].mean()),
                        "sd": float(frame[k].std(ddof=1)) if len(frame) > 1 else 0.0,
                    }
                    for k in frame.columns
                }
            )
        base = config.baseline if config.baseline in names else None
        for name in names:
            if base is None or name == base:
                continue
            est = compare(
                d[d["model"].isin([name, base])],
                primary=name,
                baseline=base,
                horizon=config.horizon,
                n_boot=config.n_boot,
                seed=config.seeds[0],
            )
            out["compare"].setdefault(name, {}).update(
                {f"{tag}{k}": v for k, v in metrics_json(est).items()}
            )
    return out


def train_final(config: MILConfig, data: MILData, *, progress: bool = False) -> FitResult:
    """The deployable model: all units, patient-grouped validation split for early stopping and
    calibration, first seed of the config."""
    seed = config.seeds[0]
    tr, va = split_validation(data, np.arange(len(data)), config.val_fraction, seed)
    return fit(config, data, tr, va, model_name=config.model, seed=seed, progress=progress)


def run_meta(config: MILConfig, data: MILData, **extra: Any) -> dict[str, Any]:
    """Provenance of a run (config, cohort size, versions, seeds)."""
    return run_provenance(
        kind="cv",
        model=config.model,
        baseline=config.baseline,
        task=config.task,
        outcome=config.data.label
        if config.task != "survival"
        else f"{config.data.time}/{config.data.event}",
        n_splits=config.n_splits,
        n_repeats=len(config.seeds),
        seeds=config.seeds,
        n_boot=config.n_boot,
        n_samples=len(data),
        n_patients=len(np.unique(data.patient_ids)),
        unit=config.unit,
        classes=data.classes,
        config=config.model_dump(mode="json"),
        **extra,
    )
