"""MIL models: shapes, masked batching, attention normalisation, CLAM instance loss, losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metastat.core.cox import cox_nll as cox_loss
from metastat.errors import UnknownNameError
from metastat.mil.bags import collate
from metastat.mil.losses import nll_survival
from metastat.mil.models import MODELS, ModelSpec, build_model

SPEC = ModelSpec(
    in_dim=16, n_out=2, hidden_dim=16, attention_dim=8, dropout=0.0, n_heads=2, clam_k=3
)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_padding_does_not_change_predictions(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, SPEC).eval()
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
    model = build_model(name, SPEC)
    x, mask = collate([np.random.default_rng(1).normal(size=(12, 16))])
    out = model.train()(x, mask, torch.tensor([1]))
    assert out.instance_loss is not None and out.instance_loss.item() > 0
    out.instance_loss.backward()
    assert model.eval()(x, mask).instance_loss is None


def test_unknown_model_suggests_name() -> None:
    with pytest.raises(UnknownNameError, match="abmil"):
        build_model("abmill", SPEC)


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
