"""Intermediate fusion in torch: modality embeddings fused by concatenation, a gate or a
Kronecker product (Pathomic-fusion style), or gene-set x tile co-attention; modality dropout.

Inputs are prepared per training fold: clinical variables by the typed clinical encoder,
expression by the expression preprocessor (most variable genes, standardised; PCA-compressed for
the embedding fusions), tiles standardised and pooled by gated attention (the ABMIL pooling of
:mod:`metastat.mil.models`). A patient lacking a modality gets a zero embedding and a presence
flag; training drops present modalities at random (never all) so the model learns to predict from
any subset. Early stopping and probability calibration use a patient-grouped validation split of
the training fold (never the test fold).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from torch import nn

from metastat.clinical.encoder import ClinicalEncoder
from metastat.core.calibration import Calibrator, median_cut
from metastat.core.cox import cox_nll
from metastat.errors import InputError
from metastat.evaluate.splits import train_validation_split
from metastat.expression.preprocess import ExpressionPreprocessor
from metastat.fusion.coattention import CoAttentionNet, cluster_gene_sets
from metastat.fusion.modalities import MODALITIES, MultimodalSet, single_thread
from metastat.mil.bags import collate
from metastat.mil.models import GatedAttention, masked_softmax

Fusion = Literal["concat", "gated", "kronecker", "coattention"]


class Projection:
    """A fitted linear projection (PCA): ``(x - mean) @ components.T``."""

    def __init__(self, mean: np.ndarray, components: np.ndarray) -> None:
        self.mean_, self.components_ = np.asarray(mean), np.asarray(components)

    @property
    def n_components_(self) -> int:
        return int(self.components_.shape[0])

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x) - self.mean_) @ self.components_.T


class FusionNet(nn.Module):
    """Per-modality encoders to ``hidden``-d embeddings, fused, then a risk head."""

    def __init__(
        self, dims: dict[str, int], fusion: Fusion, hidden: int = 32, dropout: float = 0.25
    ):
        super().__init__()
        self.fusion, self.mods = fusion, [m for m in MODALITIES if dims.get(m)]
        h = hidden if fusion != "kronecker" else max(4, hidden // 4)
        self.enc = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(dims[m], h), nn.ReLU(), nn.Dropout(dropout))
                for m in self.mods
            }
        )
        if "histology" in self.mods:
            self.tile_attn = GatedAttention(h, h, 1, dropout)
        if fusion == "concat":
            width = h * len(self.mods) + len(MODALITIES)
        elif fusion == "gated":
            self.gate = nn.Linear(h * len(self.mods) + len(MODALITIES), len(self.mods))
            width = h + len(MODALITIES)
        else:
            width = (h + 1) ** len(self.mods)
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def embed(self, batch: dict[str, torch.Tensor], present: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for m in self.mods:
            if m == "histology":
                t = self.enc[m](batch["tiles"])
                a = masked_softmax(self.tile_attn(t)[:, 0], batch["tile_mask"])
                e = torch.einsum("bn,bnd->bd", a, t)
            else:
                e = self.enc[m](batch[m])
            out.append(e * present[:, MODALITIES.index(m)].unsqueeze(1))
        return out

    def forward(self, batch: dict[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        emb = self.embed(batch, present)
        if self.fusion == "concat":
            z = torch.cat([*emb, present], 1)
        elif self.fusion == "gated":
            g = torch.sigmoid(self.gate(torch.cat([*emb, present], 1)))
            mix = sum((g[:, i : i + 1] * e for i, e in enumerate(emb)), torch.zeros_like(emb[0]))
            z = torch.cat([mix, present], 1)
        else:  # Kronecker: outer product of [e, 1] over modalities keeps uni- and cross-terms
            one = torch.ones(present.shape[0], 1)
            z = torch.cat([emb[0], one], 1)
            for e in emb[1:]:
                z = torch.einsum("bi,bj->bij", z, torch.cat([e, one], 1)).flatten(1)
        return self.head(z).squeeze(-1)


class NeuralFusion:
    """Fit / predict wrapper around :class:`FusionNet` or :class:`CoAttentionNet`."""

    def __init__(
        self,
        fusion: Fusion = "concat",
        *,
        hidden: int = 32,
        dropout: float = 0.25,
        modality_dropout: float = 0.3,
        n_components: int = 32,
        n_genes: int = 2000,
        gene_sets: dict[str, list[str]] | None = None,
        n_gene_sets: int = 8,
        max_tiles: int = 256,
        epochs: int = 300,
        patience: int = 30,
        lr: float = 3e-3,
        weight_decay: float = 1e-3,
        seed: int = 0,
    ) -> None:
        self.fusion = fusion
        self.hidden, self.dropout, self.modality_dropout = hidden, dropout, modality_dropout
        self.n_components, self.n_genes = n_components, n_genes
        self.gene_sets, self.n_gene_sets, self.max_tiles = gene_sets, n_gene_sets, max_tiles
        self.epochs, self.patience, self.lr, self.weight_decay = epochs, patience, lr, weight_decay
        self.seed = seed

    # -- inputs -----------------------------------------------------------------------------------
    def _fit_inputs(self, data: MultimodalSet) -> None:
        self.mods_ = [m for m in data.modalities]
        if self.fusion == "coattention" and not {"expression", "histology"} <= set(self.mods_):
            raise InputError("co-attention fusion needs expression and histology in training.")
        p = data.present
        if "clinical" in self.mods_:
            assert data.clinical is not None
            self.clin_ = ClinicalEncoder(data.variables).fit(
                data.clinical[p["clinical"].to_numpy()]
            )
        if "expression" in self.mods_:
            assert data.expression is not None
            x = data.expression[p["expression"].to_numpy()]
            self.pre_ = ExpressionPreprocessor(n_genes=self.n_genes).fit(x)
            z = self.pre_.transform(x)
            if self.fusion == "coattention":
                sets = self.gene_sets or cluster_gene_sets(
                    z.to_numpy(), list(z.columns), self.n_gene_sets, self.seed
                )
                cols = {g: i for i, g in enumerate(z.columns)}
                self.gene_index_ = [[cols[g] for g in s if g in cols] for s in sets.values()]
                self.gene_index_ = [ix for ix in self.gene_index_ if ix]
                if not self.gene_index_:
                    raise InputError("no gene of the given gene sets is among the model's genes.")
            else:
                k = max(1, min(self.n_components, z.shape[0] - 1, z.shape[1]))
                pca = PCA(k, random_state=self.seed).fit(z.to_numpy())
                self.pca_ = Projection(pca.mean_, pca.components_)
        if "histology" in self.mods_:
            tiles = np.concatenate(
                [b for b, ok in zip(data.histology or [], p["histology"], strict=True) if ok]
            )
            self.tile_mean_, self.tile_sd_ = tiles.mean(0), tiles.std(0) + 1e-6

    def _inputs(self, data: MultimodalSet) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        n, p = len(data), data.present.reindex(columns=list(MODALITIES), fill_value=False)
        p = p & pd.Series({m: m in self.mods_ for m in MODALITIES})
        batch: dict[str, torch.Tensor] = {}
        if "clinical" in self.mods_:
            x = np.zeros((n, len(self.clin_.feature_names_)))
            has = p["clinical"].to_numpy()
            if has.any():
                assert data.clinical is not None
                x[has] = self.clin_.transform(data.clinical[has]).to_numpy()
            batch["clinical"] = torch.as_tensor(x, dtype=torch.float32)
        if "expression" in self.mods_:
            width = (
                len(self.pre_.genes_) if self.fusion == "coattention" else self.pca_.n_components_
            )
            x = np.zeros((n, width))
            has = p["expression"].to_numpy()
            if has.any():
                assert data.expression is not None
                z = self.pre_.transform(data.expression[has]).to_numpy()
                x[has] = z if self.fusion == "coattention" else self.pca_.transform(z)
            batch["expression"] = torch.as_tensor(x, dtype=torch.float32)
        if "histology" in self.mods_:
            rng = np.random.default_rng(self.seed)
            dim = len(self.tile_mean_)
            bags = []
            for b, ok in zip(data.histology or [None] * n, p["histology"], strict=True):
                if ok and b is not None:
                    if len(b) > self.max_tiles:
                        b = b[np.sort(rng.choice(len(b), self.max_tiles, replace=False))]
                    bags.append((b - self.tile_mean_) / self.tile_sd_)
                else:
                    bags.append(np.zeros((1, dim), np.float32))
            batch["tiles"], batch["tile_mask"] = collate(bags)
        return batch, torch.as_tensor(p.to_numpy(dtype=np.float32))

    # -- training ---------------------------------------------------------------------------------
    def _net(self) -> nn.Module:
        if self.fusion == "coattention":
            return CoAttentionNet(
                self.gene_index_,
                len(self.tile_mean_),
                len(self.clin_.feature_names_) if "clinical" in self.mods_ else 0,
                self.hidden,
                dropout=self.dropout,
            )
        dims = {"clinical": len(self.clin_.feature_names_) if "clinical" in self.mods_ else 0}
        dims["expression"] = self.pca_.n_components_ if "expression" in self.mods_ else 0
        dims["histology"] = len(self.tile_mean_) if "histology" in self.mods_ else 0
        return FusionNet(dims, self.fusion, self.hidden, self.dropout)  # type: ignore[arg-type]

    def _loss(
        self, risk: torch.Tensor, y: dict[str, torch.Tensor], rows: torch.Tensor
    ) -> torch.Tensor:
        if self.kind_ == "survival":
            return cox_nll(risk[rows], y["time"][rows], y["event"][rows])
        known = rows & ~torch.isnan(y["binary"])
        return nn.functional.binary_cross_entropy_with_logits(risk[known], y["binary"][known])

    def _drop(self, present: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        keep = (torch.rand(present.shape, generator=gen) > self.modality_dropout).float() * present
        empty = keep.sum(1) == 0
        keep[empty] = present[empty]  # never drop every modality of a patient
        return keep

    def fit(self, data: MultimodalSet) -> NeuralFusion:
        with single_thread():
            return self._fit(data)

    def _fit(self, data: MultimodalSet) -> NeuralFusion:
        torch.manual_seed(self.seed)
        self.kind_, self.horizon_ = data.kind, data.horizon
        self._fit_inputs(data)
        batch, present = self._inputs(data)
        y = {
            k: torch.as_tensor(data.target[k].astype(np.float32))
            for k in ("time", "event", "binary")
        }
        tr, va = train_validation_split(data.ids, data.labels, fraction=0.2, seed=self.seed)
        tr_rows = torch.zeros(len(data), dtype=torch.bool)
        tr_rows[tr] = True
        va_rows = ~tr_rows
        self.net_ = self._net()
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        gen = torch.Generator().manual_seed(self.seed)
        best, best_state, wait = np.inf, None, 0
        for _ in range(self.epochs):
            self.net_.train()
            opt.zero_grad()
            loss = self._loss(self.net_(batch, self._drop(present, gen)), y, tr_rows)
            loss.backward()
            opt.step()
            self.net_.eval()
            with torch.no_grad():
                val = float(self._loss(self.net_(batch, present), y, va_rows))
            if val < best - 1e-4:
                best, wait = val, 0
                best_state = {k: v.clone() for k, v in self.net_.state_dict().items()}
            else:
                wait += 1
                if wait >= self.patience:
                    break
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        risk = self._predict(batch, present)
        self._calibrate(risk[va], data.target[va])
        self.risk_cut_ = median_cut(risk[tr])
        return self

    def _predict(self, batch: dict[str, torch.Tensor], present: torch.Tensor) -> np.ndarray:
        self.net_.eval()
        with torch.no_grad():
            return self.net_(batch, present).numpy().astype(float)

    def _calibrate(self, risk: np.ndarray, y: np.ndarray) -> None:
        cal = Calibrator()
        if self.kind_ == "survival":
            cal.fit_cox(risk, y["time"], y["event"])
        else:
            cal.fit_platt(risk, y["binary"], fallback=(0.0, 1.0))
        self.calibrator_ = cal

    def probability(self, risk: np.ndarray) -> np.ndarray:
        return self.calibrator_.probability(risk, self.horizon_)

    def survival_at(self, risk: np.ndarray, times: np.ndarray) -> np.ndarray:
        return self.calibrator_.survival_at(risk, times)

    def predict_frame(
        self, data: MultimodalSet, surv_times: np.ndarray | None = None
    ) -> pd.DataFrame:
        batch, present = self._inputs(data)
        with single_thread():
            risk = self._predict(batch, present)
        out = pd.DataFrame(
            {"risk": risk, "prob": self.probability(risk), "high_risk": risk > self.risk_cut_},
            index=data.ids,
        )
        if surv_times is not None and self.calibrator_.cox_slope is not None:
            sp = self.survival_at(risk, surv_times)
            for i in range(sp.shape[1]):
                out[f"surv_{i}"] = sp[:, i]
        used = data.used(self.mods_)
        out["modalities"] = used
        out["expression_generated"] = data.generated & np.array(["expression" in u for u in used])
        return out
