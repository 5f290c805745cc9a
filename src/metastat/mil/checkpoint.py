"""Checkpoints: weights as safetensors + a JSON config (model, head, calibration, encoder).

Written as a :mod:`metastat.core.bundle` folder (``manifest.json``, ``weights.safetensors``,
``arrays.safetensors``; format ``metastat.mil.model/1``) by :func:`save_checkpoint` (``metastat
mil train``) and :func:`save_bundle` (the :class:`~metastat.mil.estimator.MILRiskModel`). Folders
of earlier versions (``model.safetensors`` + ``mil.json``, format ``metastat-mil/1``) still load.

Loading checks the feature dimension and the encoder of the bags against the checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file
from torch import nn

from metastat.core.bundle import MANIFEST, read_bundle, write_bundle
from metastat.core.calibration import Calibrator
from metastat.errors import ModelError
from metastat.mil.infer import Head
from metastat.mil.models import ModelSpec, build_model, resolve_params

WEIGHTS, META = "model.safetensors", "mil.json"  # the earlier layout (read only)
FORMAT = "metastat-mil/1"
BUNDLE_FORMAT = "metastat.mil.model/1"
CALIBRATION = "calibration."  # prefix of the calibration arrays in a bundle


@dataclass
class Checkpoint:
    """A loaded model, its head and the encoder its training bags came from."""

    name: str
    model: nn.Module
    spec: ModelSpec
    head: Head
    encoder: str | None
    meta: dict[str, Any]
    path: Path | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # a bundle's other arrays

    def check_bag(self, slide_id: str, dim: int, encoder: str | None, where: str = "") -> None:
        """Raise if a bag's features cannot have come from this model's encoder."""
        at = f" ('{where}')" if where else ""
        if dim != self.spec.in_dim:
            raise ModelError(
                f"slide '{slide_id}'{at} has {dim}-d features but checkpoint '{self.path}' expects "
                f"{self.spec.in_dim}-d ({self.encoder or 'unknown encoder'}): extract features "
                "with the same encoder as the training bags"
            )
        if encoder and self.encoder and encoder != self.encoder:
            raise ModelError(
                f"slide '{slide_id}'{at} was embedded with encoder '{encoder}' but checkpoint "
                f"'{self.path}' was trained on '{self.encoder}' features: re-extract the features "
                f"with '{self.encoder}' or use a model trained on '{encoder}'"
            )


def save_checkpoint(
    out_dir: str | Path,
    *,
    name: str,
    model: nn.Module,
    spec: ModelSpec,
    head: Head,
    encoder: str | None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a trained MIL model into ``out_dir`` as a :mod:`metastat.core.bundle` folder
    (``extra``: run information recorded in the manifest)."""
    return save_bundle(out_dir, Checkpoint(name, model, spec, head, encoder, {}), info=extra)


def _spec(name: str, raw: dict[str, Any]) -> ModelSpec:
    """The stored spec; checkpoints from before the registry hold flat hyper-parameters."""
    if "params" in raw:
        return ModelSpec(raw["in_dim"], raw["n_out"], raw["params"])
    from metastat.mil.config import LEGACY_PARAMS

    flat = {LEGACY_PARAMS[k]: v for k, v in raw.items() if k in LEGACY_PARAMS}
    return ModelSpec(raw["in_dim"], raw["n_out"], resolve_params(name, flat))


def _head(h: dict[str, Any], calibration: dict[str, Any]) -> Head:
    return Head(h["task"], h["classes"], h["survival_loss"], h["edges"], h["horizon"], calibration)


def _model(name: str, spec: ModelSpec, state: dict[str, Any], where: Path) -> nn.Module:
    model = build_model(name, spec)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"cannot load weights '{where}': {exc}") from exc
    return model.eval()


def save_bundle(
    out_dir: str | Path,
    ckpt: Checkpoint,
    *,
    state: dict[str, Any] | None = None,
    arrays: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write ``ckpt`` as a :mod:`metastat.core.bundle` folder: the weights as
    ``weights.safetensors``, the calibration baseline and ``arrays`` as ``arrays.safetensors``,
    the model, spec, head, encoder and ``state`` in the manifest."""
    head, arrs = ckpt.head.to_dict(), dict(arrays or {})
    if ckpt.head.calibration:
        head["calibration"], cal = Calibrator.from_dict(ckpt.head.calibration).to_state()
        arrs |= {CALIBRATION + k: v for k, v in cal.items()}
    meta = {"model": ckpt.name, "spec": asdict(ckpt.spec), "head": head, "encoder": ckpt.encoder}
    weights = {k: v.detach() for k, v in ckpt.model.state_dict().items()}
    return write_bundle(
        out_dir, BUNDLE_FORMAT, meta | (state or {}), arrs, weights=weights, info=info
    )


def _load_bundle(folder: Path) -> Checkpoint:
    bundle = read_bundle(folder, [BUNDLE_FORMAT])
    meta, h = bundle.manifest, bundle.manifest["head"]
    cal = {
        k.removeprefix(CALIBRATION): v
        for k, v in bundle.arrays.items()
        if k.startswith(CALIBRATION)
    }
    calibration = Calibrator.from_state(h["calibration"], cal).to_dict() if h["calibration"] else {}
    spec = _spec(meta["model"], meta["spec"])
    model = _model(meta["model"], spec, bundle.weights(), folder / "weights.safetensors")
    other = {k: v for k, v in bundle.arrays.items() if not k.startswith(CALIBRATION)}
    head = _head(h, calibration)
    return Checkpoint(meta["model"], model, spec, head, meta.get("encoder"), meta, folder, other)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint folder (or one of its files): a bundle (``manifest.json``) or the
    ``mil.json`` + ``model.safetensors`` folder of ``metastat mil train``."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    if (folder / MANIFEST).is_file():
        return _load_bundle(folder)
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"'{folder}' is not a metastat MIL checkpoint (cannot read {META}: "
            f"{exc}); pass the folder written by 'metastat mil train'"
        ) from exc
    if meta.get("format") != FORMAT:
        raise ModelError(f"'{folder / META}' has format {meta.get('format')!r}, expected {FORMAT}")
    spec = _spec(meta["model"], meta["spec"])
    try:
        state = load_file(str(folder / WEIGHTS))
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"cannot load weights '{folder / WEIGHTS}': {exc}") from exc
    model = _model(meta["model"], spec, state, folder / WEIGHTS)
    head = _head(meta["head"], meta["head"].get("calibration") or {})
    return Checkpoint(meta["model"], model, spec, head, meta.get("encoder"), meta, folder)
