"""Saving and loading neural fusion models without pickle (JSON manifest + safetensors).

Stored: the constructor settings, the fitted input preparation of each modality (its
:mod:`~metastat.fusion.neural_inputs` state: clinical encoder, expression preprocessing and PCA or
gene-set indices, table and tile-feature scaling), calibration and the network weights
(``safetensors.torch``). Loading rebuilds the network from the settings and loads the weights
(no code is executed from the files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.numpy import load_file as load_np
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

from metastat.atomic import atomic_path, atomic_write, save_arrays
from metastat.core.calibration import Calibrator
from metastat.core.provenance import run_provenance, sha256_file, verify_sha256
from metastat.errors import ModelError
from metastat.fusion.intermediate import NeuralFusion
from metastat.fusion.neural_inputs import INPUTS, Input

FORMAT = "metastat.fusion.neural/2"  # /2: one input state per registered modality
MANIFEST, ARRAYS, WEIGHTS = "manifest.json", "arrays.safetensors", "weights.safetensors"
SETTINGS = (
    "fusion", "hidden", "dropout", "modality_dropout", "n_components", "n_genes", "n_gene_sets",
    "max_tiles", "epochs", "patience", "lr", "weight_decay", "seed",
)  # fmt: skip


def _kind(inp: Input) -> str:
    return next(k for k, cls in INPUTS.items() if isinstance(inp, cls))


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
    state |= {"platt": cal["platt"], "slope": cal["cox_slope"]}
    state["inputs"] = {m: model.inputs_[m].state(arrays, f"input.{m}") for m in model.mods_}
    state["input_kinds"] = {m: _kind(model.inputs_[m]) for m in model.mods_}
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
    settings = model._settings()
    model.inputs_ = {
        m: INPUTS[s["input_kinds"][m]].from_state(s["inputs"][m], a, f"input.{m}", settings)
        for m in model.mods_
    }
    model.net_ = model._net()
    model.net_.load_state_dict(load_torch(str(path / WEIGHTS)))
    model.net_.eval()
    return model
