"""Saving and loading neural fusion models without pickle (a :mod:`metastat.core.bundle` folder).

Stored: the constructor settings, the fitted input preparation of each modality (its
:mod:`~metastat.fusion.neural_inputs` state: clinical encoder, expression preprocessing and PCA or
gene-set indices, table and tile-feature scaling), calibration and the network weights
(``safetensors.torch``). Loading rebuilds the network from the settings and loads the weights
(no code is executed from the files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metastat.core.bundle import read_bundle, write_bundle
from metastat.core.calibration import Calibrator
from metastat.fusion.intermediate import NeuralFusion
from metastat.fusion.neural_inputs import INPUTS, Input

FORMAT = "metastat.fusion.neural/2"  # /2: one input state per registered modality
SETTINGS = (
    "fusion", "hidden", "dropout", "modality_dropout", "n_components", "n_genes", "n_gene_sets",
    "max_tiles", "epochs", "patience", "lr", "weight_decay", "seed",
)  # fmt: skip


def _kind(inp: Input) -> str:
    return next(k for k, cls in INPUTS.items() if type(inp) is cls)


def save_neural(
    model: NeuralFusion, path: str | Path, *, info: dict[str, Any] | None = None
) -> Path:
    """Write a fitted :class:`NeuralFusion` to bundle folder ``path`` (its ``state`` entry)."""
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
    weights = model.net_.state_dict()
    return write_bundle(path, FORMAT, {"state": state}, arrays, weights=weights, info=info)


def load_neural(path: str | Path, manifest: dict[str, Any] | None = None) -> NeuralFusion:
    """Load a neural fusion model folder (checksums verified; ``manifest`` is read again)."""
    bundle = read_bundle(path, [FORMAT])
    s, a = bundle.manifest["state"], bundle.arrays
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
    model.net_.load_state_dict(bundle.weights())
    model.net_.eval()
    return model
