"""Synthetic whole-slide images for tests and benchmarks: real pyramidal tiled TIFFs (tifffile).

Tissue-like pink/purple regions on a near-white background, written tile by tile (bounded memory),
with a known µm/px in the TIFF resolution tags or an Aperio-style description.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

TILE_PX = 256
_EOSIN = np.array([232, 160, 200], np.float32)
_HAEMATOXYLIN = np.array([110, 60, 150], np.float32)
_BACKGROUND = np.array([243, 242, 245], np.float32)


def tissue_layout(
    size_px0: tuple[int, int],
    *,
    seed: int,
    mask_downsample: int = 32,
    tissue_fraction: float = 0.35,
) -> np.ndarray:
    """Low-resolution boolean tissue layout (smooth random blobs) of a slide of ``size_px0``."""
    w, h = size_px0
    mw, mh = max(1, -(-w // mask_downsample)), max(1, -(-h // mask_downsample))
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((mh, mw)), sigma=max(mw, mh) / 14)
    if tissue_fraction <= 0:
        return np.zeros((mh, mw), bool)
    # keep a margin free of tissue, like a real glass slide
    margin_y, margin_x = max(1, mh // 12), max(1, mw // 12)
    inner = field[margin_y : -margin_y or None, margin_x : -margin_x or None]
    thr = np.quantile(inner, 1 - tissue_fraction) if inner.size else np.inf
    mask = np.zeros((mh, mw), bool)
    mask[margin_y : -margin_y or None, margin_x : -margin_x or None] = inner > thr
    return mask


def _render_tile(
    layout: np.ndarray,
    mask_downsample: int,
    x0_px0: int,
    y0_px0: int,
    downsample: int,
    shape_px: tuple[int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    th, tw = shape_px
    ys = (y0_px0 + np.arange(th) * downsample) // mask_downsample
    xs = (x0_px0 + np.arange(tw) * downsample) // mask_downsample
    inside = (ys[:, None] < layout.shape[0]) & (xs[None, :] < layout.shape[1])
    m = np.zeros((th, tw), bool)
    m[inside] = layout[
        np.minimum(ys, layout.shape[0] - 1)[:, None].repeat(tw, 1)[inside],
        np.minimum(xs, layout.shape[1] - 1)[None, :].repeat(th, 0)[inside],
    ]
    noise = rng.random((th, tw), dtype=np.float32)
    nuclei = (noise > 0.93)[:, :, None]
    tissue = np.where(nuclei, _HAEMATOXYLIN, _EOSIN) + rng.normal(0, 8, (th, tw, 3))
    background = _BACKGROUND + rng.normal(0, 2, (th, tw, 3))
    img = np.where(m[:, :, None], tissue, background)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_synthetic_slide(
    path: str | os.PathLike[str],
    *,
    size_px0: tuple[int, int] = (4096, 3072),
    mpp: float | None = 0.5,
    levels: int = 3,
    seed: int = 0,
    tissue_fraction: float = 0.35,
    compression: Literal["jpeg", "zlib", "none"] = "jpeg",
    flavour: Literal["generic", "aperio"] = "generic",
    label_text: str | None = None,
    photometric: Literal["rgb", "minisblack"] = "rgb",
) -> Path:
    """Write a pyramidal tiled TIFF (level downsamples 1, 2, 4, ...) and return its path.

    ``mpp=None`` writes no resolution (to test the missing-µm/px path). ``flavour="aperio"``
    writes an Aperio-style description (read by OpenSlide's SVS backend); ``label_text`` adds a
    label image and embeds the text in the description (to test that PHI never leaks).
    ``photometric="minisblack"`` writes a greyscale slide (non-RGB input).
    """
    import tifffile

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    w, h = size_px0
    mask_ds = 32
    layout = tissue_layout(
        size_px0, seed=seed, mask_downsample=mask_ds, tissue_fraction=tissue_fraction
    )
    comp = None if compression == "none" else compression
    ch = 3 if photometric == "rgb" else 1

    def tiles(level: int) -> Iterator[np.ndarray]:
        ds = 2**level
        lw, lh = -(-w // ds), -(-h // ds)
        rng = np.random.default_rng([seed, level])
        for ty in range(0, lh, TILE_PX):
            for tx in range(0, lw, TILE_PX):
                t = _render_tile(layout, mask_ds, tx * ds, ty * ds, ds, (TILE_PX, TILE_PX), rng)
                yield t if ch == 3 else t.mean(axis=2, keepdims=True).astype(np.uint8)

    desc = None
    if flavour == "aperio":
        parts = [f"Aperio Image Library v12.0.0\n{w}x{h} ({TILE_PX}x{TILE_PX}) JPEG/RGB Q=80"]
        if mpp is not None:
            parts.append(f"MPP = {mpp}")
            parts.append(f"AppMag = {round(10 / mpp)}")
        if label_text:
            parts.append(f"Patient = {label_text}")
        desc = "|".join(parts)
    resolution = None if mpp is None else (1e4 / mpp, 1e4 / mpp)
    with tifffile.TiffWriter(out, bigtiff=w * h * 3 > 2**31) as tif:
        for level in range(levels):
            ds = 2**level
            lw, lh = -(-w // ds), -(-h // ds)
            if level > 0 and min(lw, lh) < TILE_PX // 2:
                break
            kwargs = {}
            if resolution is not None:
                kwargs = {
                    "resolution": (resolution[0] / ds, resolution[1] / ds),
                    "resolutionunit": "CENTIMETER",
                }
            tif.write(
                tiles(level),
                shape=(lh, lw, ch) if ch == 3 else (lh, lw),
                dtype=np.uint8,
                tile=(TILE_PX, TILE_PX),
                photometric=photometric,
                compression=comp,
                description=desc if level == 0 else None,
                subfiletype=0 if level == 0 else 1,
                metadata=None,
                **kwargs,
            )
        if label_text:
            label = np.full((240, 320, 3), 255, np.uint8)
            label[100:140, 20:300] = 0
            tif.write(
                label,
                photometric="rgb",
                subfiletype=1,
                metadata=None,
                description=f"Aperio Image Library v12.0.0\nlabel 320x240 {label_text}",
            )
    return out


def corrupt_tile(path: str | os.PathLike[str], tile_index: int, *, level: int = 0) -> None:
    """Overwrite the compressed bytes of one tile with garbage (to test mid-slide read errors)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[level]
        offset = int(page.dataoffsets[tile_index])
        count = int(page.databytecounts[tile_index])
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes(np.random.default_rng(tile_index).integers(0, 256, count, dtype=np.uint8)))
