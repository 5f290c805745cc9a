"""MIL models: shapes, masked batching, attention normalisation, CLAM instance loss, losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metastat.core.cox import cox_nll as cox_loss
from metastat.errors import UnknownNameError
from metastat.mil.bags import collate
from metastat.mil.losses import nll_survival
from metastat.mil.models import MODELS, ModelSpec, build_model, resolve_params

SHARED = {"hidden_dim": 16, "attention_dim": 8, "dropout": 0.0, "n_heads": 2, "k": 3}


def spec(name: str) -> ModelSpec:
    return ModelSpec(16, 2, resolve_params(name, SHARED))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_padding_does_not_change_predictions(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, spec(name)).eval()
    rng = np.random.default_rng(0)
    small, big = rng.normal(size=(7, 16)), rng.normal(size=(23, 16))
    with torch.no_grad():
        alone = model(*collate([small])).logits
        batched = model(*collate([small, big]))
    assert batched.logits.shape == (2, 2)
    np.testing.assert_allclose(alone[0].numpy(), batched.logits[0].numpy(), atol=1e-5)
    att = batched.attention if batched.attention.ndim == 2 else batched.attention[:, -1]
    assert att.shape == (2, 23)
    assert torch.all(att[0, 7:] == 0)  # padded tiles get no attention
    if name != "max":
        np.testing.assert_allclose(att.sum(1).numpy(), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["clam_sb", "clam_mb"])
def test_clam_instance_loss_only_in_training_with_label(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, spec(name))
    x, mask = collate([np.random.default_rng(1).normal(size=(12, 16))])
    out = model.train()(x, mask, torch.tensor([1]))
    assert out.instance_loss is not None and out.instance_loss.item() > 0
    out.instance_loss.backward()
    assert model.eval()(x, mask).instance_loss is None


def test_unknown_model_suggests_name() -> None:
    with pytest.raises(UnknownNameError, match="abmil"):
        build_model("abmill", spec("abmil"))


def test_survival_losses_prefer_correct_ordering() -> None:
    time = torch.tensor([1.0, 2.0, 3.0, 4.0])
    event = torch.tensor([1.0, 1.0, 0.0, 1.0])
    good, bad = torch.tensor([3.0, 2.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert cox_loss(good, time, event) < cox_loss(bad, time, event)
    bins = torch.tensor([0, 1, 2, 2])
    high_early = torch.tensor([[3.0, -3.0, -3.0]]).repeat(4, 1)
    assert nll_survival(high_early[:1], bins[:1], event[:1]) < nll_survival(
        -high_early[:1], bins[:1], event[:1]
    )


def test_every_model_declares_validated_hyper_parameters() -> None:
    from metastat.errors import InputError
    from metastat.mil.models import model_params

    assert {"mean", "max", "abmil", "clam_sb", "clam_mb", "transmil"} <= set(MODELS)
    assert model_params("clam_sb", {"k": 4}).k == 4  # type: ignore[attr-defined]
    with pytest.raises(InputError, match=r"'mean'.*attention_dim.*takes hidden_dim, dropout"):
        build_model("mean", ModelSpec(16, 2, {"attention_dim": 8}))
    with pytest.raises(InputError, match="k: Input should be greater than or equal to 1"):
        model_params("clam_mb", {"k": 0})


def test_config_validates_params_per_model_and_reads_legacy_keys() -> None:
    from pydantic import ValidationError

    from metastat.mil.config import MILConfig

    cfg = MILConfig(
        model="clam_sb", hidden_dim=32, clam_k=4, params={"clam_sb": {"subtyping": True}}
    )
    assert cfg.params_for("clam_sb") == {
        "hidden_dim": 32, "dropout": 0.25, "attention_dim": 128, "k": 4, "subtyping": True,
        "instance_weight": 0.3,
    }  # fmt: skip
    assert cfg.params_for("mean") == {"hidden_dim": 32, "dropout": 0.25}  # shared keys it takes
    with pytest.raises(ValidationError, match="unknown MIL model 'abmill'"):
        MILConfig(model="abmill")
    with pytest.raises(ValidationError, match="no MIL model"):
        MILConfig(params={"hiden_dim": 3})
    with pytest.raises(ValidationError, match="'abmil' hyper-parameters: k: Extra inputs"):
        MILConfig(params={"abmil": {"k": 3}})


def test_cox_ties_setting_reaches_the_loss() -> None:
    from metastat.data.target import Target
    from metastat.mil.config import MILConfig
    from metastat.mil.infer import Head
    from metastat.mil.train import _Loss

    t = Target(time=np.array([2.0, 2.0, 5.0]), event=np.array([1, 1, 0]))
    logits = torch.tensor([[0.5], [-1.0], [0.2]])
    losses = {}
    for ties in ("breslow", "efron"):
        cfg = MILConfig(task="survival", survival_loss="cox", cox_ties=ties)
        losses[ties] = float(_Loss(cfg, Head("survival", [], "cox"), t)(logits, t))
    assert losses["efron"] < losses["breslow"]


def test_cli_lists_registered_models() -> None:
    from typer.testing import CliRunner

    from metastat.cli.mil import app

    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0
    assert "clam_sb:" in res.output and "instance_weight [0.3]" in res.output
