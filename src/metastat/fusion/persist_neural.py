"""Saving and loading neural fusion models without pickle (JSON manifest + safetensors).

Stored: the constructor settings, the fitted input preparation (clinical encoder state,
expression preprocessing statistics and gene lists, PCA projection, tile-feature scaling, gene-set
indices), calibration and the network weights (``safetensors.torch``). Loading rebuilds the
network from the settings and loads the weights (no code is executed from the files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file as load_np
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

from metastat.atomic import atomic_path, atomic_write, save_arrays
from metastat.clinical.encoder import ClinicalEncoder
from metastat.core.calibration import Calibrator
from metastat.core.provenance import run_provenance, sha256_file, verify_sha256
from metastat.errors import ModelError
from metastat.expression.preprocess import ExpressionPreprocessor
from metastat.fusion.intermediate import NeuralFusion, Projection

FORMAT = "metastat.fusion.neural/1"
MANIFEST, ARRAYS, WEIGHTS = "manifest.json", "arrays.safetensors", "weights.safetensors"
SETTINGS = (
    "fusion", "hidden", "dropout", "modality_dropout", "n_components", "n_genes", "n_gene_sets",
    "max_tiles", "epochs", "patience", "lr", "weight_decay", "seed",
)  # fmt: skip


def save_neural(
    model: NeuralFusion, path: str | Path, *, info: dict[str, Any] | None = None
) -> Path:
    """Write a fitted :class:`NeuralFusion` to directory ``path``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {k: getattr(model, k) for k in SETTINGS}
    state |= {
        "mods": model.mods_,
        "kind": model.kind_,
        "horizon": model.horizon_,
        "risk_cut": model.risk_cut_,
    }
    cal, arrays = model.calibrator_.to_state()
    state |= {"platt": cal["platt"], "slope": cal["cox_slope"]}  # keys of format /1
    if "clinical" in model.mods_:
        state["clinical_encoder"] = model.clin_.to_dict()
    if "expression" in model.mods_:
        pre = model.pre_
        state["expression"] = {
            "log": bool(pre.log_),
            "genes_in": [str(g) for g in pre.genes_in_],
            "genes": [str(g) for g in pre.genes_],
        }
        arrays |= {"median_in": pre.median_in_, "mean": pre.mean_, "sd": pre.sd_}
        if hasattr(model, "pca_"):
            arrays["pca_mean"], arrays["pca_components"] = model.pca_.mean_, model.pca_.components_
        if hasattr(model, "gene_index_"):
            state["gene_index"] = model.gene_index_
    if "histology" in model.mods_:
        arrays["tile_mean"], arrays["tile_sd"] = model.tile_mean_, model.tile_sd_
    save_arrays(out / ARRAYS, arrays)
    with atomic_path(out / WEIGHTS) as tmp:
        save_torch({k: v.contiguous() for k, v in model.net_.state_dict().items()}, str(tmp))
    manifest = {
        "format": FORMAT,
        **run_provenance(),
        "state": state,
        "sha256": {ARRAYS: sha256_file(out / ARRAYS), WEIGHTS: sha256_file(out / WEIGHTS)},
        **(info or {}),
    }
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=2, default=str))
    return out


def load_neural(path: str | Path, manifest: dict[str, Any] | None = None) -> NeuralFusion:
    """Load a neural fusion model directory (checksums verified)."""
    path = Path(path)
    if manifest is None:
        manifest = json.loads((path / MANIFEST).read_text())
    for name, digest in manifest["sha256"].items():
        if not verify_sha256(path / name, digest):
            raise ModelError(f"{path / name}: missing or checksum mismatch; the model is corrupt.")
    s, a = manifest["state"], load_np(str(path / ARRAYS))
    model = NeuralFusion(**{k: s[k] for k in SETTINGS})
    model.mods_, model.kind_, model.horizon_ = s["mods"], s["kind"], s["horizon"]
    model.calibrator_ = Calibrator.from_state({"platt": s["platt"], "cox_slope": s["slope"]}, a)
    model.risk_cut_ = s["risk_cut"]
    if "clinical" in model.mods_:
        model.clin_ = ClinicalEncoder.from_dict(s["clinical_encoder"])
    if "expression" in model.mods_:
        e = s["expression"]
        pre = ExpressionPreprocessor(n_genes=model.n_genes)
        pre.log_ = e["log"]
        pre.genes_in_ = np.asarray(e["genes_in"], dtype=object)
        pre.genes_ = np.asarray(e["genes"], dtype=object)
        pre.median_in_, pre.mean_, pre.sd_ = a["median_in"], a["mean"], a["sd"]
        pre.combat_ = None
        model.pre_ = pre
        if "pca_mean" in a:
            model.pca_ = Projection(a["pca_mean"], a["pca_components"])
        if "gene_index" in s:
            model.gene_index_ = s["gene_index"]
    if "histology" in model.mods_:
        model.tile_mean_, model.tile_sd_ = a["tile_mean"], a["tile_sd"]
    model.net_ = model._net()
    model.net_.load_state_dict(load_torch(str(path / WEIGHTS)))
    model.net_.eval()
    return model
