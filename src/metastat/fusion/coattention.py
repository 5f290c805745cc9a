"""Co-attention between gene-set tokens and tiles (MCAT, Chen et al. ICCV 2021; SurvPath-like).

Each gene set becomes one token (a small MLP of its genes' standardised expression). Tokens are
queries over the slide's tile embeddings (multi-head cross-attention), so every gene set gathers
the tiles most relevant to it; the co-attended tokens and the gene-set tokens are each pooled by
gated attention and concatenated with the clinical embedding. A missing modality is replaced by a
learned placeholder token / zero embedding (and flagged), which modality dropout trains for.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from metastat.mil.models import GatedAttention, masked_softmax


def cluster_gene_sets(
    z: np.ndarray, genes: list[str], k: int, seed: int = 0
) -> dict[str, list[str]]:
    """Data-driven gene sets: k-means of genes on their (standardised) profiles across samples."""
    k = max(1, min(k, len(genes)))
    labels = KMeans(k, n_init=4, random_state=seed).fit_predict(np.nan_to_num(z.T))
    return {
        f"cluster_{c}": [g for g, lab in zip(genes, labels, strict=True) if lab == c]
        for c in range(k)
    }


class _Pool(nn.Module):
    """Gated-attention pooling of tokens (B, S, h) -> (B, h); returns weights too."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.attn = GatedAttention(dim, dim, 1, dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = masked_softmax(self.attn(h)[:, 0], mask)
        return torch.einsum("bn,bnd->bd", a, h), a


class CoAttentionNet(nn.Module):
    """Gene-set tokens x tiles cross-attention, plus an optional clinical branch."""

    def __init__(
        self,
        gene_index: list[list[int]],
        tile_dim: int,
        clinical_dim: int = 0,
        hidden: int = 32,
        heads: int = 2,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        self.gene_index = [torch.as_tensor(ix, dtype=torch.long) for ix in gene_index]
        self.tokens = nn.ModuleList(
            nn.Sequential(nn.Linear(len(ix), hidden), nn.ReLU(), nn.Dropout(dropout))
            for ix in gene_index
        )
        self.missing_tokens = nn.Parameter(torch.zeros(len(gene_index), hidden))
        self.tiles = nn.Sequential(nn.Linear(tile_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.cross = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.pool_path, self.pool_gene = _Pool(hidden, dropout), _Pool(hidden, dropout)
        self.clinical = (
            nn.Sequential(nn.Linear(clinical_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
            if clinical_dim
            else None
        )
        n_parts = 3 if clinical_dim else 2
        self.head = nn.Sequential(
            nn.Linear(n_parts * hidden + 3, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )
        self.last_attention: torch.Tensor | None = None

    def forward(self, batch: dict[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """``batch``: expression (B, G), tiles (B, N, D), tile_mask (B, N), clinical (B, C);
        ``present``: (B, 3) float for clinical, expression, histology."""
        expr = batch["expression"]
        b = expr.shape[0]
        tok = torch.stack(
            [f(expr[:, ix]) for f, ix in zip(self.tokens, self.gene_index, strict=True)], 1
        )
        has_e = present[:, 1:2].unsqueeze(-1)
        tok = has_e * tok + (1 - has_e) * self.missing_tokens.unsqueeze(0).expand(b, -1, -1)
        tiles = self.tiles(batch["tiles"])
        has_h = present[:, 2] > 0
        tile_mask = batch["tile_mask"] & has_h.unsqueeze(1)
        # a patient without histology attends to a single zero tile (masked out afterwards)
        safe_mask = tile_mask.clone()
        safe_mask[~has_h, 0] = True
        co, att = self.cross(tok, tiles, tiles, key_padding_mask=~safe_mask)
        self.last_attention = att.detach()
        co = co * has_h.float().view(-1, 1, 1)
        token_mask = torch.ones(co.shape[:2], dtype=torch.bool, device=co.device)
        path, _ = self.pool_path(co, token_mask)
        gene, _ = self.pool_gene(tok, token_mask)
        parts = [path, gene * present[:, 1:2]]
        if self.clinical is not None:
            parts.append(self.clinical(batch["clinical"]) * present[:, 0:1])
        return self.head(torch.cat([*parts, present], dim=1)).squeeze(-1)
