"""Training on bags of real H&E tile embeddings (small): learns the slide label, attention finds
the tumour tiles, deterministic, survival and multiclass heads run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from metastat.mil.bags import MILData, Targets
from metastat.mil.config import MILConfig
from metastat.mil.heatmap import tile_scores
from metastat.mil.infer import predict_logits
from metastat.mil.planted import (
    BagDesign,
    Bags,
    TileSet,
    instance_labels,
    load_tiles,
    make_bags,
    mil_data,
    split_tiles,
)
from metastat.mil.train import cross_validate, fit, model_spec

FAST = dict(
    hidden_dim=32,
    attention_dim=16,
    epochs=12,
    min_epochs=4,
    patience=4,
    lr=1e-3,
    batch_size=4,
    n_boot=50,
    threads=1,
    n_splits=3,
)


@pytest.fixture(scope="module")
def planted() -> tuple[TileSet, Bags, MILData]:
    tiles = load_tiles()
    design = BagDesign(
        n_patients=48, slides_per_patient=1, n_tiles=(30, 60), witness_rate=(0.05, 0.15), seed=3
    )
    bags = make_bags(tiles, split_tiles(tiles, "spatial")[0], design, "train")
    return tiles, bags, mil_data(tiles, bags)[0]


def test_abmil_learns_and_localises(planted: tuple[TileSet, Bags, MILData]) -> None:
    tiles, bags, data = planted
    cfg = MILConfig(model="abmil", seeds=[0], **FAST)
    inst_auc = []

    def on_fold(res, split) -> None:  # attention ranks tumour tiles first on test bags
        if res.name != "abmil":
            return
        from metastat.mil.checkpoint import Checkpoint

        ck = Checkpoint(res.name, res.model, res.spec, res.head, None, {})
        for u in split.test:
            lab = instance_labels(tiles, bags, int(u))
            if lab.any():
                inst_auc.append(roc_auc_score(lab, tile_scores(ck, data.bag(int(u)))))

    pred, summary = cross_validate(cfg, data, callback=on_fold)
    assert set(pred["model"]) == {"abmil", "mean"}
    assert pred.groupby("model")["sample_id"].nunique().eq(len(data)).all()
    assert summary["mean_sd"]["abmil"]["auc"]["mean"] > 0.85
    assert "delta_auc" in summary["compare"]["abmil"]
    assert np.mean(inst_auc) > 0.85


def test_fit_is_deterministic(planted: tuple[TileSet, Bags, MILData]) -> None:
    *_, data = planted
    cfg = MILConfig(model="clam_sb", **{**FAST, "epochs": 3, "min_epochs": 3})
    idx = np.arange(len(data))
    a = fit(cfg, data, idx[:30], idx[30:40], model_name="clam_sb", seed=7)
    b = fit(cfg, data, idx[:30], idx[30:40], model_name="clam_sb", seed=7)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert a.history == b.history
    bags = [data.bag(i) for i in idx[40:]]
    np.testing.assert_array_equal(predict_logits(a.model, bags), predict_logits(b.model, bags))


@pytest.mark.parametrize("loss", ["nll", "cox"])
def test_survival_heads(planted: tuple[TileSet, Bags, MILData], loss: str) -> None:
    *_, data = planted
    rng = np.random.default_rng(0)
    lab = data.targets.label
    time = rng.exponential(np.where(lab == 1, 12.0, 60.0))
    event = (np.arange(len(lab)) % 4 != 0).astype(int)  # 25 % censored, in every fold
    surv = MILData(
        data.source,
        data.units,
        data.unit_ids,
        data.patient_ids,
        Targets(time=time, event=event),
        [],
    )
    cfg = MILConfig(
        model="abmil",
        task="survival",
        survival_loss=loss,
        horizon=24.0,
        seeds=[0],
        **{**FAST, "epochs": 4, "min_epochs": 4},
    )
    pred, summary = cross_validate(cfg, surv, models=["abmil"])
    assert pred["risk"].notna().all() and pred["prob"].between(0, 1).all()
    assert "c_index" in summary["mean_sd"]["abmil"]


def test_multiclass_head(planted: tuple[TileSet, Bags, MILData]) -> None:
    *_, data = planted
    lab = data.targets.label.copy()
    lab[::4] = 2
    multi = MILData(
        data.source,
        data.units,
        data.unit_ids,
        data.patient_ids,
        Targets(label=lab),
        ["a", "b", "c"],
    )
    cfg = MILConfig(
        model="clam_mb",
        task="multiclass",
        clam_subtyping=True,
        seeds=[0],
        **{**FAST, "epochs": 3, "min_epochs": 3},
    )
    pred, summary = cross_validate(cfg, multi, models=["clam_mb"])
    assert {"prob_a", "prob_b", "prob_c", "pred_class"} <= set(pred.columns)
    assert "class_c_auc" in summary["mean_sd"]["clam_mb"]
    spec = model_spec(
        cfg,
        multi.dim(),
        fit(cfg, multi, np.arange(20), np.arange(20, 30), model_name="clam_mb", seed=0).head,
    )
    assert spec.n_out == 3
