"""Embed the real H&E tile pools of the planted MIL benchmark (run once; output ships in tests/).

Tumour pool: random 224 px crops (with flips / 90° rotations) of the real H&E tumour region
``images/he_tumour_region_1000px.png``. Background pool: tissue tiles of the two real slides
(CMU-1-Small-Region, TCGA-CR-7395 frozen section), the CRC normal-mucosa tile and the labelled
real tissue tiles. All embedded with the default encoder (EfficientNet-Lite0, ImageNet) on CPU and
stored as fp16 in ``tests/data/mil/planted_pools.npz``.

Usage: python benchmarks/bench_mil_planted_pools.py [--shared ../shared/data] [--out PATH]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from metastat.slides import open_slide
from metastat.slides.encoders import create_encoder
from metastat.slides.tiling import TilingConfig, plan_tiles
from metastat.slides.tissue import detect_tissue

TILE = 224


def _augment(tile: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    tile = np.rot90(tile, int(rng.integers(4)))
    return np.ascontiguousarray(tile[:, ::-1] if rng.random() < 0.5 else tile)


def random_crops(img: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random TILE x TILE crops (flipped / rotated) of an RGB image."""
    h, w = img.shape[:2]
    out = []
    for _ in range(n):
        y, x = int(rng.integers(0, h - TILE + 1)), int(rng.integers(0, w - TILE + 1))
        out.append(_augment(img[y : y + TILE, x : x + TILE], rng))
    return np.stack(out)


def slide_tiles(path: Path, stride_frac: float = 0.5) -> np.ndarray:
    """Tissue tiles of a real slide at its native resolution (half-overlapping grid)."""
    slide = open_slide(path, mpp_override=None if "CMU" in path.name else 0.5)
    mask = detect_tissue(slide)
    cfg = TilingConfig(
        tile_size_px=TILE,
        target_mpp=float(slide.mpp),
        overlap_um=TILE * float(slide.mpp) * (1 - stride_frac),
        min_tissue_fraction=0.6,
    )
    grid = plan_tiles(slide, mask, cfg)
    return np.stack([slide.read((int(x), int(y)), (TILE, TILE)) for x, y in grid.coords_px0])


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--out", default="tests/data/mil/planted_pools.npz")
    ap.add_argument("--n-tumour", type=int, default=256)
    ap.add_argument("--n-background", type=int, default=1024)
    args = ap.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    shared = Path(args.shared)
    tumour = random_crops(_rgb(shared / "images/he_tumour_region_1000px.png"), args.n_tumour, rng)
    parts: dict[str, np.ndarray] = {}
    for name in ("CMU-1-Small-Region.svs", "TCGA-CR-7395-01A-01-TS1.svs"):
        parts[name] = slide_tiles(shared / "slides" / name)
    mucosa = _rgb(shared / "images/crc_normal_mucosa_tile.tif")[:TILE, :TILE]
    parts["crc_normal_mucosa_tile"] = np.stack([_augment(mucosa, rng) for _ in range(16)])
    labelled = sorted((shared / "images/tiles").glob("*tissue*level*.png")) + sorted(
        (shared / "images/tiles").glob("*nuclei-score*.png")
    )
    crops = []
    for p in labelled:
        img = _rgb(p)
        if min(img.shape[:2]) >= TILE and "no-tissue" not in p.name:
            crops.append(random_crops(img, 24, rng))
    parts["labelled_tiles"] = np.concatenate(crops)
    names = list(parts)
    source = np.concatenate([np.full(len(parts[n]), i) for i, n in enumerate(names)])
    background = np.concatenate([parts[n] for n in names])
    pick = np.sort(
        rng.choice(len(background), min(args.n_background, len(background)), replace=False)
    )
    background, source = background[pick], source[pick]
    enc = create_encoder("efficientnet_lite0", device="cpu")
    t0 = time.perf_counter()

    def embed(tiles: np.ndarray) -> np.ndarray:
        return np.concatenate([enc.encode(tiles[i : i + 64]) for i in range(0, len(tiles), 64)])

    f_t, f_b = embed(tumour), embed(background)
    dt = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        tumour=f_t.astype(np.float16),
        background=f_b.astype(np.float16),
        background_source=source.astype(np.int8),
        source_names=np.array(names),
        encoder=np.array(enc.name),
        encoder_version=np.array(enc.spec.version),
    )
    print(
        f"tumour {f_t.shape}, background {f_b.shape} "
        f"({dict(zip(names, np.bincount(source), strict=True))})"
        f"; embedded in {dt:.1f} s on CPU -> {out} ({out.stat().st_size / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
