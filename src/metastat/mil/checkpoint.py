"""Checkpoints: weights as safetensors + a JSON config (model, head, calibration, encoder).

No pickle anywhere: ``model.safetensors`` holds tensors only, ``mil.json`` everything else.
Loading checks the feature dimension and the encoder of the bags against the checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from metastat.atomic import atomic_path, atomic_write
from metastat.core.provenance import run_provenance
from metastat.errors import ModelError
from metastat.mil.infer import Head
from metastat.mil.models import ModelSpec, build_model, resolve_params

WEIGHTS, META = "model.safetensors", "mil.json"
FORMAT = "metastat-mil/1"


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
    """Write ``model.safetensors`` and ``mil.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "model": name})
    meta = {
        "format": FORMAT,
        "model": name,
        "spec": asdict(spec),
        "head": head.to_dict(),
        "encoder": encoder,
        **run_provenance(),
        **(extra or {}),
    }
    atomic_write(out / META, json.dumps(meta, indent=2, default=str))
    return out


def _spec(name: str, raw: dict[str, Any]) -> ModelSpec:
    """The stored spec; checkpoints from before the registry hold flat hyper-parameters."""
    if "params" in raw:
        return ModelSpec(raw["in_dim"], raw["n_out"], raw["params"])
    from metastat.mil.config import LEGACY_PARAMS

    flat = {LEGACY_PARAMS[k]: v for k, v in raw.items() if k in LEGACY_PARAMS}
    return ModelSpec(raw["in_dim"], raw["n_out"], resolve_params(name, flat))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint folder (or its ``mil.json`` / ``model.safetensors``)."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
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
    h = meta["head"]
    head = Head(
        h["task"],
        h["classes"],
        h["survival_loss"],
        h["edges"],
        h["horizon"],
        h.get("calibration") or {},
    )
    model = build_model(meta["model"], spec)
    try:
        state = load_file(str(folder / WEIGHTS))
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"cannot load weights '{folder / WEIGHTS}': {exc}") from exc
    model.eval()
    return Checkpoint(meta["model"], model, spec, head, meta.get("encoder"), meta, folder)
