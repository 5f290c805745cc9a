"""MIL models over padded, masked bags of tile features: (B, N, D) + mask (B, N) -> logits.

Registry (:func:`register_mil_model`, like the encoder registry): each model is declared once,
with its pydantic hyper-parameters (unknown keys rejected): ``mean`` / ``max`` pooling
baselines, ``abmil`` (gated attention, Ilse et al. 2018), ``clam_sb`` / ``clam_mb`` (attention
with instance-level clustering, Lu et al. 2021; written from the paper, not from the GPL code)
and ``transmil`` (Shao et al. 2021: class token, transformer layers with a convolutional
position encoding; exact softmax attention instead of Nyström).
Every model returns :class:`MILOutput` with per-tile scores for heatmaps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError
from torch import nn

from metastat.errors import InputError, lookup


@dataclass
class MILOutput:
    """Bag logits (B, n_out), tile attention (B, N) or (B, n_out, N), optional extra loss."""

    logits: torch.Tensor
    attention: torch.Tensor
    instance_loss: torch.Tensor | None = None


class MILParams(BaseModel):
    """Hyper-parameters every MIL model takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_dim: int = Field(256, ge=8, description="tile embedding width")
    dropout: float = Field(0.25, ge=0, lt=1)


class AttentionParams(MILParams):
    """Gated-attention pooling (ABMIL)."""

    attention_dim: int = Field(128, ge=4)


class CLAMParams(AttentionParams):
    """CLAM: attention + instance clustering on the ``k`` most / least attended tiles."""

    k: int = Field(8, ge=1, description="tiles per side for the instance loss")
    subtyping: bool = Field(False, description="mutually exclusive classes")
    instance_weight: float = Field(0.3, ge=0, le=1, description="weight of the instance loss")


class TransMILParams(MILParams):
    """TransMIL: self-attention layers around a position encoding."""

    n_heads: int = Field(4, ge=1)
    n_layers: int = Field(2, ge=1)


@dataclass(frozen=True)
class ModelSpec:
    """What builds a model: input width, outputs and its (raw) hyper-parameters."""

    in_dim: int
    n_out: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MILModelEntry:
    """A registered MIL model: builder ``f(in_dim, n_out, params) -> nn.Module``."""

    name: str
    build: Callable[[int, int, Any], nn.Module]
    params: type[MILParams]
    description: str = ""


MODELS: dict[str, MILModelEntry] = {}


def register_mil_model(
    name: str, params: type[MILParams] = MILParams, description: str = ""
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model class or builder ``(in_dim, n_out, params)`` as ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = description or (fn.__doc__ or "").strip().splitlines()[0]
        MODELS[name] = MILModelEntry(name, fn, params, doc)
        return fn

    return deco


def get_model_entry(name: str) -> MILModelEntry:
    """The registry entry of ``name`` (error naming the known models otherwise)."""
    return lookup(MODELS, name, "MIL model")


def model_params(name: str, raw: Mapping[str, Any] | None = None) -> MILParams:
    """``raw`` validated as the hyper-parameters of model ``name``; an unknown key or a bad
    value is an :class:`InputError` naming the model, the key and what it takes."""
    entry = get_model_entry(name)
    try:
        return entry.params.model_validate(dict(raw or {}))
    except PydanticError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise InputError(
            f"MIL model {name!r} hyper-parameters: {'; '.join(lines)} "
            f"(it takes {', '.join(entry.params.model_fields)})"
        ) from exc


def resolve_params(
    name: str, shared: Mapping[str, Any], own: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Hyper-parameters of ``name``: the ``shared`` keys it takes, overridden by its ``own``
    (which must all be its own); validated, as plain JSON values."""
    fields = get_model_entry(name).params.model_fields
    merged = {k: v for k, v in shared.items() if k in fields} | dict(own or {})
    return model_params(name, merged).model_dump()


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis ignoring padded tiles (mask broadcast over leading axes)."""
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0)


class _Embed(nn.Sequential):
    def __init__(self, in_dim: int, p: MILParams) -> None:
        super().__init__(nn.Linear(in_dim, p.hidden_dim), nn.ReLU(), nn.Dropout(p.dropout))


@register_mil_model("mean")
class MeanPool(nn.Module):
    """Masked mean of embedded tiles, then a linear head (uniform attention)."""

    def __init__(self, in_dim: int, n_out: int, p: MILParams) -> None:
        super().__init__()
        self.embed, self.head = _Embed(in_dim, p), nn.Linear(p.hidden_dim, n_out)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor | None = None
    ) -> MILOutput:
        h = self.embed(x)
        w = mask.float() / mask.sum(1, keepdim=True).clamp(min=1)
        return MILOutput(self.head((w.unsqueeze(-1) * h).sum(1)), w)


@register_mil_model("max")
class MaxPool(MeanPool):
    """Per-tile logits, max over tiles per output (the tile score is its last-output logit)."""

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor | None = None
    ) -> MILOutput:
        inst = self.head(self.embed(x)).masked_fill(~mask.unsqueeze(-1), float("-inf"))
        logits = inst.max(dim=1).values
        score = masked_softmax(inst[..., -1], mask)
        return MILOutput(logits, score)


class GatedAttention(nn.Module):
    """Gated attention scores a = w^T (tanh(V h) * sigmoid(U h)), one row per branch."""

    def __init__(self, dim: int, attention_dim: int, n_branches: int, dropout: float) -> None:
        super().__init__()
        self.v = nn.Sequential(nn.Linear(dim, attention_dim), nn.Tanh(), nn.Dropout(dropout))
        self.u = nn.Sequential(nn.Linear(dim, attention_dim), nn.Sigmoid(), nn.Dropout(dropout))
        self.w = nn.Linear(attention_dim, n_branches)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.w(self.v(h) * self.u(h)).transpose(1, 2)  # (B, branches, N)


@register_mil_model("abmil", AttentionParams)
class ABMIL(nn.Module):
    """Gated-attention MIL: attention-weighted mean of tile embeddings, linear head."""

    def __init__(self, in_dim: int, n_out: int, p: AttentionParams) -> None:
        super().__init__()
        self.embed = _Embed(in_dim, p)
        self.attn = GatedAttention(p.hidden_dim, p.attention_dim, 1, p.dropout)
        self.head = nn.Linear(p.hidden_dim, n_out)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor | None = None
    ) -> MILOutput:
        h = self.embed(x)
        a = masked_softmax(self.attn(h)[:, 0], mask)
        return MILOutput(self.head(torch.einsum("bn,bnd->bd", a, h)), a)


class CLAM(nn.Module):
    """CLAM: gated attention (one branch, or one per output) + instance clustering loss.

    During training with a class label, the ``k`` most- and least-attended tiles of the true
    class's branch get pseudo-labels 1 / 0 for that class's instance classifier; with
    ``subtyping`` the other classes' top tiles are pushed to 0 (mutually exclusive classes).
    """

    def __init__(self, in_dim: int, n_out: int, p: CLAMParams, multi_branch: bool) -> None:
        super().__init__()
        self.p, self.n_out, self.multi = p, n_out, multi_branch
        self.embed = _Embed(in_dim, p)
        branches = n_out if multi_branch else 1
        self.attn = GatedAttention(p.hidden_dim, p.attention_dim, branches, p.dropout)
        if multi_branch:  # one scalar classifier per class on its own attention pooling
            self.heads = nn.ModuleList(nn.Linear(p.hidden_dim, 1) for _ in range(n_out))
        else:
            self.head = nn.Linear(p.hidden_dim, n_out)
        self.instance = nn.ModuleList(nn.Linear(p.hidden_dim, 2) for _ in range(n_out))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor | None = None
    ) -> MILOutput:
        h = self.embed(x)
        a = masked_softmax(self.attn(h), mask.unsqueeze(1))  # (B, branches, N)
        if self.multi:
            pooled = torch.einsum("bkn,bnd->bkd", a, h)
            logits = torch.cat([hd(pooled[:, i]) for i, hd in enumerate(self.heads)], dim=1)
            attention = a
        else:
            attention = a[:, 0]  # pooled through this tensor, so its gradient is defined
            logits = self.head(torch.einsum("bn,bnd->bd", attention, h))
        inst = self._instance_loss(h, a, mask, y) if y is not None and self.training else None
        return MILOutput(logits, attention, inst)

    def _instance_loss(
        self, h: torch.Tensor, a: torch.Tensor, mask: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        losses = []
        for b in range(h.shape[0]):
            n = int(mask[b].sum())
            k = min(self.p.k, n // 2)
            if k < 1:
                continue
            for c in range(self.n_out):
                att = a[b, c if self.multi else 0, :n]
                top = torch.topk(att, k).indices
                if c == int(y[b]):
                    bottom = torch.topk(-att, k).indices
                    idx = torch.cat([top, bottom])
                    target = torch.cat([torch.ones(k), torch.zeros(k)]).long()
                elif self.p.subtyping:
                    idx, target = top, torch.zeros(k, dtype=torch.long)
                else:
                    continue
                losses.append(F.cross_entropy(self.instance[c](h[b, idx]), target))
        return torch.stack(losses).mean() if losses else h.sum() * 0.0


class PPEG(nn.Module):
    """Pyramid position encoding: depth-wise 7/5/3 convolutions over the tiles laid on a grid."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, k, 1, k // 2, groups=dim) for k in (7, 5, 3))

    def forward(self, tokens: torch.Tensor, side: int) -> torch.Tensor:
        b, n, d = tokens.shape
        grid = tokens.transpose(1, 2).reshape(b, d, side, side)
        grid = grid + sum(conv(grid) for conv in self.convs)
        return grid.reshape(b, d, n).transpose(1, 2)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)  # no attention dropout

    def forward(
        self, t: torch.Tensor, pad: torch.Tensor, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = self.norm(t)  # without weights, PyTorch uses its fused attention kernel
        out, w = self.attn(
            q, q, q, key_padding_mask=pad, need_weights=need_weights, average_attn_weights=True
        )
        return t + out, w


@register_mil_model("transmil", TransMILParams)
class TransMIL(nn.Module):
    """TransMIL: class token + self-attention layers around a PPEG position encoding."""

    def __init__(self, in_dim: int, n_out: int, p: TransMILParams) -> None:
        super().__init__()
        self.embed = _Embed(in_dim, p)
        self.cls = nn.Parameter(torch.zeros(1, 1, p.hidden_dim))
        nn.init.normal_(self.cls, std=0.02)
        self.blocks = nn.ModuleList(
            _Block(p.hidden_dim, p.n_heads, p.dropout) for _ in range(p.n_layers)
        )
        self.ppeg = PPEG(p.hidden_dim)
        self.norm = nn.LayerNorm(p.hidden_dim)
        self.head = nn.Linear(p.hidden_dim, n_out)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor | None = None
    ) -> MILOutput:
        h = self.embed(x) * mask.unsqueeze(-1)
        b, n, d = h.shape
        # each bag on its own square (side from its own size) in the top-left of a shared grid,
        # so padding a bag in a batch never changes its position encoding
        n_b = mask.sum(1)
        side_b = torch.ceil(torch.sqrt(n_b.float())).long().clamp(min=1)
        side = int(side_b.max())
        j = torch.arange(n, device=x.device).unsqueeze(0)
        pos = (j // side_b.unsqueeze(1)) * side + j % side_b.unsqueeze(1)
        pos = torch.where(mask, pos, side * side)  # padded tiles -> a dropped extra slot
        grid = h.new_zeros(b, side * side + 1, d).scatter(1, pos.unsqueeze(-1).expand(-1, -1, d), h)
        valid = mask.new_zeros(b, side * side + 1).scatter(1, pos, mask)
        grid, valid = grid[:, :-1], valid[:, :-1]
        t = torch.cat([self.cls.expand(b, 1, d), grid], dim=1)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=mask.device), ~valid], 1)
        w = None
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):  # attention maps only at inference
            t, w = block(t, pad, need_weights=not self.training and i == last)
            if i == 0:
                keep = valid.unsqueeze(-1)
                body = self.ppeg(t[:, 1:] * keep, side) * keep
                t = torch.cat([t[:, :1], body], dim=1)
        logits = self.head(self.norm(t[:, 0]))
        if w is None:  # training: no attention map needed
            return MILOutput(logits, mask.float() / mask.sum(1, keepdim=True).clamp(min=1))
        cls_att = F.pad(w[:, 0, 1:], (0, 1))  # class token -> grid cells, last layer
        attention = cls_att.gather(1, pos) * mask  # back in tile order
        attention = attention / attention.sum(1, keepdim=True).clamp(min=1e-12)
        return MILOutput(logits, attention)


@register_mil_model("clam_sb", CLAMParams)
def _clam_sb(in_dim: int, n_out: int, p: CLAMParams) -> nn.Module:
    """CLAM single-branch: one attention branch shared by the classes + instance loss."""
    return CLAM(in_dim, n_out, p, multi_branch=False)


@register_mil_model("clam_mb", CLAMParams)
def _clam_mb(in_dim: int, n_out: int, p: CLAMParams) -> nn.Module:
    """CLAM multi-branch: one attention branch and classifier per class + instance loss."""
    return CLAM(in_dim, n_out, p, multi_branch=True)


def build_model(name: str, spec: ModelSpec) -> nn.Module:
    """Instantiate a registered MIL model (hyper-parameters validated for that model)."""
    entry = get_model_entry(name)
    return entry.build(spec.in_dim, spec.n_out, model_params(name, spec.params))
