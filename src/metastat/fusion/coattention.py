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
    """Gene-set tokens x instances (tiles) cross-attention, plus a branch per other table modality.

    ``columns`` maps every modality to its column of ``present``; ``genes`` / ``bag`` name the
    expression and bag modalities; ``tables`` the widths of the others (e.g. clinical, radiology).
    """

    def __init__(
        self,
        gene_index: list[list[int]],
        tile_dim: int,
        tables: dict[str, int] | None = None,
        hidden: int = 32,
        heads: int = 2,
        dropout: float = 0.25,
        *,
        columns: dict[str, int],
        genes: str = "expression",
        bag: str = "histology",
    ) -> None:
        super().__init__()
        self.columns, self.genes, self.bag = columns, genes, bag
        self.gene_index = [torch.as_tensor(ix, dtype=torch.long) for ix in gene_index]
        self.tokens = nn.ModuleList(
            nn.Sequential(nn.Linear(len(ix), hidden), nn.ReLU(), nn.Dropout(dropout))
            for ix in gene_index
        )
        self.missing_tokens = nn.Parameter(torch.zeros(len(gene_index), hidden))
        self.tiles = nn.Sequential(nn.Linear(tile_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.cross = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.pool_path, self.pool_gene = _Pool(hidden, dropout), _Pool(hidden, dropout)
        self.tables = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout))
                for m, d in (tables or {}).items()
                if d
            }
        )
        n_parts = 2 + len(self.tables)
        self.head = nn.Sequential(
            nn.Linear(n_parts * hidden + len(columns), hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )
        self.last_attention: torch.Tensor | None = None

    def forward(self, batch: dict[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """``batch``: genes (B, G), bag (B, N, D) with ``bag.mask`` (B, N), each table (B, C);
        ``present``: (B, modalities) float, columns as ``columns``."""
        expr = batch[self.genes]
        b = expr.shape[0]
        tok = torch.stack(
            [f(expr[:, ix]) for f, ix in zip(self.tokens, self.gene_index, strict=True)], 1
        )
        e_col = self.columns[self.genes]
        has_e = present[:, e_col : e_col + 1].unsqueeze(-1)
        tok = has_e * tok + (1 - has_e) * self.missing_tokens.unsqueeze(0).expand(b, -1, -1)
        tiles = self.tiles(batch[self.bag])
        has_h = present[:, self.columns[self.bag]] > 0
        tile_mask = batch[f"{self.bag}.mask"] & has_h.unsqueeze(1)
        # a patient without the bag attends to a single zero tile (masked out afterwards)
        safe_mask = tile_mask.clone()
        safe_mask[~has_h, 0] = True
        co, att = self.cross(tok, tiles, tiles, key_padding_mask=~safe_mask)
        self.last_attention = att.detach()
        co = co * has_h.float().view(-1, 1, 1)
        token_mask = torch.ones(co.shape[:2], dtype=torch.bool, device=co.device)
        path, _ = self.pool_path(co, token_mask)
        gene, _ = self.pool_gene(tok, token_mask)
        parts = [path, gene * present[:, e_col : e_col + 1]]
        for m, f in self.tables.items():
            c = self.columns[m]
            parts.append(f(batch[m]) * present[:, c : c + 1])
        return self.head(torch.cat([*parts, present], dim=1)).squeeze(-1)
