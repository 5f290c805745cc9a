"""Saving and loading neural fusion models without pickle (JSON manifest + safetensors).

Stored: the constructor settings, the fitted input preparation of each modality (its
:mod:`~metastat.fusion.neural_inputs` state: clinical encoder, expression preprocessing and PCA or
gene-set indices, table and tile-feature scaling), calibration and the network weights
(``safetensors.torch``). Loading rebuilds the network from the settings and loads the weights
(no code is executed from the files).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file as load_np
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

from metastat import __version__
from metastat.atomic import atomic_path, atomic_write, save_arrays
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


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_neural(
    model: NeuralFusion, path: str | Path, *, info: dict[str, Any] | None = None
) -> Path:
    """Write a fitted :class:`NeuralFusion` to directory ``path``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    state: dict[str, Any] = {k: getattr(model, k) for k in SETTINGS}
    state |= {
        "mods": model.mods_,
        "kind": model.kind_,
        "horizon": model.horizon_,
        "platt": model.platt_,
        "slope": model.slope_,
        "risk_cut": model.risk_cut_,
    }
    if model.slope_ is not None:
        arrays["base_times"], arrays["base_cumhaz"] = model.base_times_, model.base_cumhaz_
    state["inputs"] = {m: model.inputs_[m].state(arrays, f"input.{m}") for m in model.mods_}
    state["input_kinds"] = {m: _kind(model.inputs_[m]) for m in model.mods_}
    save_arrays(out / ARRAYS, arrays)
    with atomic_path(out / WEIGHTS) as tmp:
        save_torch({k: v.contiguous() for k, v in model.net_.state_dict().items()}, str(tmp))
    manifest = {
        "format": FORMAT,
        "metastat": __version__,
        "torch": torch.__version__,
        "state": state,
        "sha256": {ARRAYS: _sha(out / ARRAYS), WEIGHTS: _sha(out / WEIGHTS)},
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
        if not (path / name).exists() or _sha(path / name) != digest:
            raise ModelError(f"{path / name}: missing or checksum mismatch; the model is corrupt.")
    s, a = manifest["state"], load_np(str(path / ARRAYS))
    model = NeuralFusion(**{k: s[k] for k in SETTINGS})
    model.mods_, model.kind_, model.horizon_ = s["mods"], s["kind"], s["horizon"]
    model.platt_ = tuple(s["platt"]) if s["platt"] else None
    model.slope_, model.risk_cut_ = s["slope"], s["risk_cut"]
    if model.slope_ is not None:
        model.base_times_, model.base_cumhaz_ = a["base_times"], a["base_cumhaz"]
    settings = model._settings()
    model.inputs_ = {
        m: INPUTS[s["input_kinds"][m]].from_state(s["inputs"][m], a, f"input.{m}", settings)
        for m in model.mods_
    }
    model.net_ = model._net()
    model.net_.load_state_dict(load_torch(str(path / WEIGHTS)))
    model.net_.eval()
    return model
