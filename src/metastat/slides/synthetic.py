"""Synthetic whole-slide images for tests and benchmarks: real pyramidal tiled TIFFs (tifffile).

Tissue-like pink/purple regions on a near-white background, written tile by tile (bounded memory),
with a known µm/px in the TIFF resolution tags or an Aperio-style description. Only for format
and speed tests: the textures are random, never evidence that a model works.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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


#: Distinct tissue / background tile textures per level (tiles are reused, not re-rendered).
BANK_SIZE = 16
JPEG_QUALITY = 80


def _texture(rng: np.random.Generator, tissue: bool) -> np.ndarray:
    shape = (TILE_PX, TILE_PX)
    if not tissue:
        img = _BACKGROUND + rng.normal(0, 2, (*shape, 3))
    else:
        nuclei = (rng.random(shape, dtype=np.float32) > 0.93)[:, :, None]
        img = np.where(nuclei, _HAEMATOXYLIN, _EOSIN) + rng.normal(0, 8, (*shape, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


class _TileSource:
    """Tiles of one level: bank textures where a tile is all tissue or all glass, a composite
    (cached by its mask) on tissue borders; JPEG-encoded once per distinct tile."""

    def __init__(self, layout: np.ndarray, mask_ds: int, ds: int, rng: np.random.Generator,
                 encode: Callable[[np.ndarray], bytes | np.ndarray]) -> None:  # fmt: skip
        self.layout, self.mask_ds, self.ds, self.encode = layout, mask_ds, ds, encode
        self.tissue = [_texture(rng, True) for _ in range(BANK_SIZE)]
        self.glass = [_texture(rng, False) for _ in range(BANK_SIZE)]
        self.cache: dict[tuple[int, bytes | int], bytes | np.ndarray] = {}

    def tile(self, tx: int, ty: int) -> bytes | np.ndarray:
        """The tile whose top-left is (``tx``, ``ty``) px of this level."""
        ys = (ty + np.arange(TILE_PX) * 1) * self.ds // self.mask_ds
        xs = (tx + np.arange(TILE_PX) * 1) * self.ds // self.mask_ds
        mh, mw = self.layout.shape
        cells_y, cells_x = np.unique(ys), np.unique(xs)
        inside = self.layout[np.ix_(cells_y[cells_y < mh], cells_x[cells_x < mw])]
        full = inside.size == cells_y.size * cells_x.size
        k = (tx // TILE_PX * 7 + ty // TILE_PX * 13) % BANK_SIZE
        if full and inside.all():
            key: tuple[int, bytes | int] = (k, 1)
        elif not inside.any():
            key = (k, 0)
        else:
            m = np.zeros((TILE_PX, TILE_PX), bool)
            ok_y, ok_x = ys < mh, xs < mw
            m[np.ix_(ok_y, ok_x)] = self.layout[np.ix_(ys[ok_y], xs[ok_x])]
            key = (k, np.packbits(m).tobytes())
        if key not in self.cache:
            if key[1] == 1:
                img = self.tissue[k]
            elif key[1] == 0:
                img = self.glass[k]
            else:
                img = np.where(m[:, :, None], self.tissue[k], self.glass[k])
            tile = self.encode(img)
            if isinstance(tile, bytes) or not isinstance(key[1], bytes):
                self.cache[key] = tile  # raw composites are not kept (196 kB each)
            return tile
        return self.cache[key]


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
    show_progress: bool = False,
) -> Path:
    """Write a pyramidal tiled TIFF (level downsamples 1, 2, 4, ...) and return its path.

    ``mpp=None`` writes no resolution (to test the missing-µm/px path). ``flavour="aperio"``
    writes an Aperio-style description (read by OpenSlide's SVS backend); ``label_text`` adds a
    label image and embeds the text in the description (to test that PHI never leaks).
    ``photometric="minisblack"`` writes a greyscale slide (non-RGB input). Tiles are drawn
    from a small bank of textures and each distinct tile is encoded once, so a 40,000² slide
    takes seconds; ``show_progress`` shows a bar per level on stderr.
    """
    import imagecodecs
    import tifffile

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    w, h = size_px0
    mask_ds = 32
    layout = tissue_layout(
        size_px0, seed=seed, mask_downsample=mask_ds, tissue_fraction=tissue_fraction
    )
    grey = photometric != "rgb"
    pre_encoded = compression == "jpeg" and not grey

    def encode(img: np.ndarray) -> bytes | np.ndarray:
        if grey:
            img = img.mean(axis=2, keepdims=True).astype(np.uint8)
        if pre_encoded:  # what tifffile itself writes for RGB + JPEG: YCbCr 4:2:0
            return imagecodecs.jpeg8_encode(
                img, level=JPEG_QUALITY, colorspace="RGB", outcolorspace="YCBCR",
                subsampling=(2, 2),
            )  # fmt: skip
        return img

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
            src = _TileSource(layout, mask_ds, ds, np.random.default_rng([seed, level]), encode)
            positions = [(tx, ty) for ty in range(0, lh, TILE_PX) for tx in range(0, lw, TILE_PX)]
            if show_progress:
                from metastat.progress import progress

                positions = progress(positions, f"level {level}", unit="tile")  # type: ignore[assignment]
            tif.write(
                # all tiles are bytes (pre-encoded JPEG) or all arrays; tifffile's overloads
                # take an iterator of one or the other, not of the union
                (src.tile(tx, ty) for tx, ty in positions),  # type: ignore[arg-type]
                shape=(lh, lw) if grey else (lh, lw, 3),
                dtype=np.uint8,
                tile=(TILE_PX, TILE_PX),
                photometric=photometric,
                compression=None if compression == "none" else compression,
                description=desc if level == 0 else None,
                subfiletype=0 if level == 0 else 1,
                metadata=None,
                resolution=None if resolution is None else (resolution[0] / ds, resolution[1] / ds),
                resolutionunit=None if resolution is None else "CENTIMETER",
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


def tile_location(
    path: str | os.PathLike[str], tile_index: int, level: int = 0
) -> tuple[int, int, bytes | None]:
    """(byte offset, byte count, JPEG tables) of one stored tile of a TIFF page."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[level]
        tables = page.jpegtables
        return int(page.dataoffsets[tile_index]), int(page.databytecounts[tile_index]), tables


def corrupt_tile(path: str | os.PathLike[str], tile_index: int, *, level: int = 0) -> None:
    """Overwrite the compressed bytes of one tile with garbage (to test mid-slide read errors)."""
    offset, count, _ = tile_location(path, tile_index, level)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes(np.random.default_rng(tile_index).integers(0, 256, count, dtype=np.uint8)))


def plant_garbage_tile(
    path: str | os.PathLike[str],
    tile_index: int,
    *,
    level: int = 0,
    kind: Literal["stripes", "flat", "shift"] = "stripes",
) -> None:
    """Replace one JPEG tile by a valid JPEG of what damaged data decodes to, without errors.

    ``stripes``: rows of vivid out-of-gamut colour; ``flat``: blocks of one flat colour (a
    decoder that gave up); ``shift``: the tile's own content with a strong colour cast (a
    flipped DC coefficient). The new stream is padded after its end marker, so every decoder
    reads it silently, as it would read a bit-flipped tile.
    """
    import imagecodecs

    offset, count, tables = tile_location(path, tile_index, level)
    with open(path, "rb") as fh:
        fh.seek(offset)
        tile = imagecodecs.jpeg8_decode(fh.read(count), tables=tables)
    h = tile.shape[0]
    img = np.array(tile[:, :, :3], np.int16)
    if kind == "stripes":
        colours = np.array([[0, 255, 255], [255, 255, 0], [0, 255, 0], [255, 0, 255]], np.int16)
        img[h // 2 :] = colours[(np.arange(h - h // 2) // 8) % 4][:, None, :]
    elif kind == "flat":
        img[h // 3 :] = (128, 96, 140)
    else:
        img += np.array([-60, 50, -60], np.int16)
    pixels = np.clip(img, 0, 255).astype(np.uint8)
    for quality in (95, 40):  # the garbage must fit in the tile's bytes
        data = imagecodecs.jpeg8_encode(
            pixels, level=quality, colorspace="RGB", outcolorspace="YCBCR", subsampling=(2, 2)
        )
        if len(data) <= count:
            break
    else:
        raise ValueError(f"tile {tile_index} is too small ({count} bytes) to hold the garbage")
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data + bytes(count - len(data)))
