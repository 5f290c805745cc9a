"""Intermediate fusion in torch: modality embeddings fused by concatenation, a gate or a
Kronecker product (Pathomic-fusion style), or gene-set x tile co-attention; modality dropout.

Any registered set of modalities (:mod:`metastat.fusion.registry`). Inputs are prepared per
training fold by each modality's encoder kind (:mod:`metastat.fusion.neural_inputs`): clinical
variables by the typed clinical encoder, expression by the expression preprocessor (most variable
genes, standardised; PCA-compressed for the embedding fusions), numeric tables (radiomics)
standardised, bags (tiles) standardised and pooled by gated attention (the ABMIL pooling of
:mod:`metastat.mil.models`). A patient lacking a modality gets a zero embedding and a presence
flag; training drops present modalities at random (never all) so the model learns to predict from
any subset. Early stopping and probability calibration use a patient-grouped validation split of
the training fold (never the test fold).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from metastat.core.calibration import Calibrator, median_cut
from metastat.core.contract import Explanation, no_survival, top_contributions
from metastat.core.cox import cox_nll
from metastat.data.target import Target
from metastat.errors import InputError
from metastat.evaluate.splits import train_validation_split
from metastat.fusion.coattention import CoAttentionNet
from metastat.fusion.modalities import MultimodalSet, single_thread
from metastat.fusion.neural_inputs import INPUTS, Input, Projection, Settings
from metastat.fusion.registry import get_modality
from metastat.mil.models import GatedAttention, masked_softmax

Fusion = Literal["concat", "gated", "kronecker", "coattention"]


__all__ = ["FusionNet", "NeuralFusion", "Projection"]


class FusionNet(nn.Module):
    """Per-modality encoders to ``hidden``-d embeddings (bag modalities pooled by gated
    attention), fused, then a risk head. ``present`` columns follow ``dims`` order."""

    def __init__(
        self,
        dims: dict[str, int],
        fusion: Fusion,
        hidden: int = 32,
        dropout: float = 0.25,
        bags: tuple[str, ...] = (),
    ):
        super().__init__()
        self.fusion, self.mods = fusion, [m for m in dims if dims[m]]
        h = hidden if fusion != "kronecker" else max(4, hidden // 4)
        self.enc = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(dims[m], h), nn.ReLU(), nn.Dropout(dropout))
                for m in self.mods
            }
        )
        self.bags = [m for m in self.mods if m in bags]
        self.pool = nn.ModuleDict({m: GatedAttention(h, h, 1, dropout) for m in self.bags})
        k = len(self.mods)
        if fusion == "concat":
            width = h * k + k
        elif fusion == "gated":
            self.gate = nn.Linear(h * k + k, k)
            width = h + k
        else:
            width = (h + 1) ** k
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def embed(self, batch: dict[str, torch.Tensor], present: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, m in enumerate(self.mods):
            e = self.enc[m](batch[m])
            if m in self.pool:
                a = masked_softmax(self.pool[m](e)[:, 0], batch[f"{m}.mask"])
                e = torch.einsum("bn,bnd->bd", a, e)
            out.append(e * present[:, i].unsqueeze(1))
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
    def _settings(self) -> Settings:
        return Settings(
            self.fusion, self.n_components, self.n_genes, self.gene_sets, self.n_gene_sets,
            self.max_tiles, self.seed,
        )  # fmt: skip

    def _fit_inputs(self, data: MultimodalSet) -> None:
        self.mods_ = list(data.modalities)
        if self.fusion == "coattention":
            self._coattention_roles()
        s = self._settings()
        self.inputs_: dict[str, Input] = {
            m: INPUTS[get_modality(m).neural]().fit(data, m, s) for m in self.mods_
        }

    def _coattention_roles(self) -> tuple[str, str]:
        """The (expression, bag) modalities co-attention pairs; the others join as tables."""
        kinds = {m: get_modality(m).neural for m in self.mods_}
        genes = [m for m, k in kinds.items() if k == "expression"]
        bags = [m for m, k in kinds.items() if k == "bag"]
        if not genes or not bags:
            raise InputError("co-attention fusion needs expression and histology in training.")
        if len(bags) > 1:
            raise InputError(f"co-attention pairs genes with one bag modality, not {bags}.")
        return genes[0], bags[0]

    @property
    def gene_index_(self) -> list[list[int]] | None:
        """Gene-set indices of the co-attention tokens (None for the other fusions)."""
        if self.fusion != "coattention":
            return None
        return self.inputs_[self._coattention_roles()[0]].gene_index  # type: ignore[union-attr]

    def _inputs(self, data: MultimodalSet) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        p = data.present.reindex(columns=self.mods_, fill_value=False).to_numpy(dtype=bool)
        batch: dict[str, torch.Tensor] = {}
        for j, m in enumerate(self.mods_):
            batch |= self.inputs_[m].tensors(data, m, p[:, j])
        return batch, torch.as_tensor(p.astype(np.float32))

    # -- training ---------------------------------------------------------------------------------
    def _net(self) -> nn.Module:
        widths = {m: self.inputs_[m].width for m in self.mods_}
        if self.fusion == "coattention":
            genes, bag = self._coattention_roles()
            cols = {m: j for j, m in enumerate(self.mods_)}
            return CoAttentionNet(
                self.gene_index_,  # type: ignore[arg-type]
                widths[bag],
                {m: w for m, w in widths.items() if m not in (genes, bag)},
                self.hidden,
                dropout=self.dropout,
                columns=cols,
                genes=genes,
                bag=bag,
            )
        bags = tuple(m for m in self.mods_ if get_modality(m).form == "bag")
        return FusionNet(widths, self.fusion, self.hidden, self.dropout, bags)  # type: ignore[arg-type]

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

    def fit(self, data: MultimodalSet, target: Target | None = None) -> NeuralFusion:
        """Fit on ``data`` (its outcome, or ``target`` instead)."""
        if target is not None:
            data = data.with_target(target)
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
        tr, va = train_validation_split(data.patient_ids, data.labels, fraction=0.2, seed=self.seed)
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
        """Risk per patient, each from its own forward pass over its own tiles (no padding): in a
        float32 batch a patient's risk would depend, in the last bits, on the others scored."""
        self.net_.eval()
        rows = []
        with torch.no_grad():
            for i in range(len(present)):
                one = {k: v[i : i + 1] for k, v in batch.items()}
                for key in [k for k in one if k.endswith(".mask")]:
                    n, bag = int(one[key].sum()), key.removesuffix(".mask")
                    one[key], one[bag] = one[key][:, :n], one[bag][:, :n]
                rows.append(self.net_(one, present[i : i + 1]))
        return torch.cat(rows).numpy().astype(float)

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
        risk = self.predict_risk(data)
        out = pd.DataFrame(
            {"risk": risk, "prob": self.probability(risk), "high_risk": risk > self.risk_cut_},
            index=data.patient_ids,
        )
        if surv_times is not None and self.calibrator_.cox_slope is not None:
            sp = self.survival_at(risk, surv_times)
            for i in range(sp.shape[1]):
                out[f"surv_{i}"] = sp[:, i]
        for k, v in data.provenance(data.used(self.mods_)).items():
            out[k] = v
        return out

    # -- the risk-model contract (metastat.core.contract) -----------------------------------------
    @property
    def kind(self) -> str:
        return self.kind_

    @property
    def horizon(self) -> float | None:
        return self.horizon_

    def predict_risk(self, data: MultimodalSet) -> np.ndarray:
        batch, present = self._inputs(data)
        with single_thread():
            return self._predict(batch, present)

    def predict_probability(self, data: MultimodalSet) -> np.ndarray:
        return self.probability(self.predict_risk(data))

    def predict_survival(self, data: MultimodalSet, times: np.ndarray) -> np.ndarray:
        if self.kind_ != "survival":
            raise no_survival(self)
        return self.survival_at(self.predict_risk(data), np.asarray(times, dtype=float))

    def explain(self, data: MultimodalSet, top: int = 10) -> list[Explanation]:
        """Per patient, each modality it has: its risk minus its risk with that modality masked
        as missing (the presence flag the network was trained with; one extra pass each)."""
        risk = self.predict_risk(data)
        mods = [m for m in self.mods_ if m in data.present]
        delta = np.full((len(data), len(mods)), np.nan)
        for j, m in enumerate(mods):
            has = data.has(m)
            delta[has, j] = (risk - self.predict_risk(data.without(m)))[has]
        # modalities a patient lacks (NaN) contribute nothing
        return top_contributions(data.patient_ids, mods, delta, top)

    def save(self, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
        """:func:`metastat.fusion.persist_neural.save_neural` (a core bundle)."""
        from metastat.fusion.persist_neural import save_neural

        return save_neural(self, path, info=info)

    @classmethod
    def load(cls, path: str | Path) -> NeuralFusion:
        from metastat.fusion.persist_neural import load_neural

        return load_neural(path)
