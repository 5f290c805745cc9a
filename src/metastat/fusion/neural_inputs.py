"""Per-fold input preparation of one modality for the neural fusions, by encoder kind.

A registry entry names its kind (:attr:`metastat.fusion.registry.Modality.neural`):

* ``clinical``: the typed clinical encoder;
* ``expression``: the expression preprocessor (most variable genes, standardised), PCA-compressed
  for the embedding fusions, or the genes themselves for co-attention (with gene-set indices);
* ``table``: any numeric per-patient table (e.g. radiomics), standardised on the training fold;
* ``bag``: instance features (e.g. tiles) standardised, sub-sampled to ``max_tiles``, padded.

Each input is fitted on the training patients who have the modality, turns a
:class:`~metastat.fusion.modalities.MultimodalSet` into tensors (zeros for absent patients) and
round-trips through JSON state + named arrays (no pickle).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA

from metastat.clinical.encoder import ClinicalEncoder
from metastat.core.seeds import keyed_rng, subsample
from metastat.errors import InputError
from metastat.expression.preprocess import ExpressionPreprocessor
from metastat.fusion.coattention import cluster_gene_sets
from metastat.fusion.modalities import MultimodalSet
from metastat.fusion.unimodal import StandardEncoder
from metastat.mil.bags import collate

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


@dataclass
class Settings:
    """What the inputs need from the fusion model's settings."""

    fusion: str
    n_components: int
    n_genes: int
    gene_sets: dict[str, list[str]] | None
    n_gene_sets: int
    max_tiles: int
    seed: int


class Projection:
    """A fitted linear projection (PCA): ``(x - mean) @ components.T``."""

    def __init__(self, mean: np.ndarray, components: np.ndarray) -> None:
        self.mean_, self.components_ = np.asarray(mean), np.asarray(components)

    @property
    def n_components_(self) -> int:
        return int(self.components_.shape[0])

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x) - self.mean_) @ self.components_.T


def _dense(values: np.ndarray, has: np.ndarray, width: int) -> torch.Tensor:
    x = np.zeros((len(has), width))
    if has.any():
        x[has] = values
    return torch.as_tensor(x, dtype=torch.float32)


class TableInput:
    """A numeric table, standardised (NaN -> training mean)."""

    encoder: StandardEncoder

    def fit(self, data: MultimodalSet, m: str, s: Settings) -> TableInput:
        self.encoder = StandardEncoder().fit(data.features(m)[data.has(m)])
        return self

    @property
    def width(self) -> int:
        return len(self.encoder.columns_)

    def tensors(self, data: MultimodalSet, m: str, has: np.ndarray) -> dict[str, torch.Tensor]:
        z = self.encoder.transform(data.features(m)[has]).to_numpy() if has.any() else None
        return {m: _dense(z, has, self.width)}  # type: ignore[arg-type]

    def state(self, arrays: Arrays, key: str) -> dict[str, Any]:
        arrays[f"{key}.mean"], arrays[f"{key}.sd"] = self.encoder.mean_, self.encoder.sd_
        return {"columns": list(map(str, self.encoder.columns_))}

    @classmethod
    def from_state(cls, state: dict[str, Any], a: Arrays, key: str, s: Settings) -> TableInput:
        out = cls()
        out.encoder = StandardEncoder()
        out.encoder.columns_, out.encoder.mean_ = state["columns"], a[f"{key}.mean"]
        out.encoder.sd_ = a[f"{key}.sd"]
        return out


class ClinicalInput(TableInput):
    """Typed clinical variables (:class:`~metastat.clinical.encoder.ClinicalEncoder`)."""

    encoder: ClinicalEncoder  # type: ignore[assignment]  # narrower than the base's

    def fit(self, data: MultimodalSet, m: str, s: Settings) -> ClinicalInput:
        self.encoder = ClinicalEncoder(data.variables).fit(data.features(m)[data.has(m)])
        return self

    @property
    def width(self) -> int:
        return len(self.encoder.feature_names_)

    def state(self, arrays: Arrays, key: str) -> dict[str, Any]:
        return {"encoder": self.encoder.to_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any], a: Arrays, key: str, s: Settings) -> ClinicalInput:
        out = cls()
        out.encoder = ClinicalEncoder.from_dict(state["encoder"])
        return out


class ExpressionInput:
    """Most variable genes, standardised; PCA-compressed, or gene sets for co-attention."""

    pca: Projection | None = None
    gene_index: list[list[int]] | None = None

    def fit(self, data: MultimodalSet, m: str, s: Settings) -> ExpressionInput:
        x = data.features(m)[data.has(m)]
        self.pre = ExpressionPreprocessor(n_genes=s.n_genes).fit(x)
        z = self.pre.transform(x, strict=False)  # a cohort: sparse profiles imputed, warned
        if s.fusion == "coattention":
            sets = s.gene_sets or cluster_gene_sets(
                z.to_numpy(), list(z.columns), s.n_gene_sets, s.seed
            )
            cols = {g: i for i, g in enumerate(z.columns)}
            index = [[cols[g] for g in genes if g in cols] for genes in sets.values()]
            self.gene_index = [ix for ix in index if ix]
            if not self.gene_index:
                raise InputError("no gene of the given gene sets is among the model's genes.")
        else:
            k = max(1, min(s.n_components, z.shape[0] - 1, z.shape[1]))
            pca = PCA(k, random_state=s.seed).fit(z.to_numpy())
            self.pca = Projection(pca.mean_, pca.components_)
        return self

    @property
    def width(self) -> int:
        return len(self.pre.genes_) if self.pca is None else self.pca.n_components_

    def tensors(self, data: MultimodalSet, m: str, has: np.ndarray) -> dict[str, torch.Tensor]:
        z = None
        if has.any():
            z = self.pre.transform(data.features(m)[has], strict=False).to_numpy()
            z = z if self.pca is None else self.pca.transform(z)
        return {m: _dense(z, has, self.width)}  # type: ignore[arg-type]

    def state(self, arrays: Arrays, key: str) -> dict[str, Any]:
        pre = self.pre
        arrays |= {f"{key}.median_in": pre.median_in_, f"{key}.mean": pre.mean_}
        arrays[f"{key}.sd"] = pre.sd_
        if self.pca is not None:
            arrays[f"{key}.pca_mean"] = self.pca.mean_
            arrays[f"{key}.pca_components"] = self.pca.components_
        return {
            "log": bool(pre.log_),
            "genes_in": [str(g) for g in pre.genes_in_],
            "genes": [str(g) for g in pre.genes_],
            "gene_index": self.gene_index,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], a: Arrays, key: str, s: Settings) -> ExpressionInput:
        out = cls()
        pre = ExpressionPreprocessor(n_genes=s.n_genes)
        pre.log_ = state["log"]
        pre.genes_in_ = np.asarray(state["genes_in"], dtype=object)
        pre.genes_ = np.asarray(state["genes"], dtype=object)
        pre.median_in_, pre.mean_, pre.sd_ = a[f"{key}.median_in"], a[f"{key}.mean"], a[f"{key}.sd"]
        pre.combat_ = None
        out.pre, out.gene_index = pre, state["gene_index"]
        if f"{key}.pca_mean" in a:
            out.pca = Projection(a[f"{key}.pca_mean"], a[f"{key}.pca_components"])
        return out


class BagInput:
    """Instance features standardised on the training fold, sub-sampled and padded."""

    def fit(self, data: MultimodalSet, m: str, s: Settings) -> BagInput:
        bags = [b for b, ok in zip(data.bags[m], data.has(m), strict=True) if ok]
        x: np.ndarray = np.concatenate(bags)  # type: ignore[arg-type]
        self.mean, self.sd, self.max_tiles, self.seed = (
            x.mean(0),
            x.std(0) + 1e-6,
            s.max_tiles,
            s.seed,
        )
        return self

    @property
    def width(self) -> int:
        return len(self.mean)

    def tensors(self, data: MultimodalSet, m: str, has: np.ndarray) -> dict[str, torch.Tensor]:
        bags = []
        rows = zip(data.patient_ids, data.bags.get(m) or [None] * len(data), has, strict=True)
        for pid, b, ok in rows:
            if ok and b is not None:
                # the subsample is the patient's own: the same alone or among others
                b = subsample(b, self.max_tiles, keyed_rng(self.seed, str(pid)))
                bags.append((b - self.mean) / self.sd)
            else:
                bags.append(np.zeros((1, self.width), np.float32))
        x, mask = collate(bags)
        return {m: x, f"{m}.mask": mask}

    def state(self, arrays: Arrays, key: str) -> dict[str, Any]:
        arrays[f"{key}.mean"], arrays[f"{key}.sd"] = self.mean, self.sd
        # the scaling runs in the training bags' precision: a loaded model scores bit for bit
        return {"dtype": str(np.asarray(self.mean).dtype), "subsample": "per-patient"}

    @classmethod
    def from_state(cls, state: dict[str, Any], a: Arrays, key: str, s: Settings) -> BagInput:
        out = cls()
        dtype = state.get("dtype")  # absent in models saved before: float64, as loaded then
        if state.get("subsample") != "per-patient":
            log.warning(
                "this fusion model was saved before tile subsamples were drawn per patient: a "
                "patient with over %d tiles now gets a subsample of its own, and its score can "
                "differ from the one made when the model was saved (which depended on the "
                "other patients scored with it)",
                s.max_tiles,
            )
        out.mean, out.sd, out.max_tiles, out.seed = (
            np.asarray(a[f"{key}.mean"], dtype=dtype),
            np.asarray(a[f"{key}.sd"], dtype=dtype),
            s.max_tiles,
            s.seed,
        )
        return out


Input = TableInput | ClinicalInput | ExpressionInput | BagInput
#: encoder kind (registry ``neural``) -> input class
INPUTS: dict[str, type[Input]] = {
    "table": TableInput,
    "clinical": ClinicalInput,
    "expression": ExpressionInput,
    "bag": BagInput,
}
