"""QC thumbnail: the slide with its tissue-mask outline and the kept tile grid, as a PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage.segmentation import find_boundaries

from metastat.atomic import atomic_path
from metastat.slides.tiling import TileGrid
from metastat.slides.tissue import TissueMask

MASK_COLOUR = (0, 170, 0)
TILE_COLOUR = (20, 60, 220)
PEN_NOTE_THRESHOLD = 0.005


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:  # matplotlib ships DejaVu Sans, which has µ and ²
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except Exception:  # fall back to Pillow's built-in font
        return ImageFont.load_default(size=size)


def render_qc(
    mask: TissueMask,
    grid: TileGrid,
    *,
    title: str,
    display: np.ndarray | None = None,
    max_px: int = 1600,
) -> Image.Image:
    """QC image: thumbnail, green tissue outline, blue tile squares, a caption with figures.

    ``display`` is an optional sharper thumbnail of the same slide to draw on (any size).
    """
    base = Image.fromarray(display if display is not None else mask.thumbnail)
    scale = min(max_px / max(base.size), 4.0)
    size = (max(1, round(base.width * scale)), max(1, round(base.height * scale)))
    up = size[0] > base.width  # enlarging a coarse mask image: bilinear is enough
    img = base.resize(size, Image.Resampling.BILINEAR if up else Image.Resampling.LANCZOS)
    edge = find_boundaries(mask.mask, mode="inner")
    edge_img = Image.fromarray(edge.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
    edge_arr = np.asarray(edge_img) > 0
    edge_arr = edge_arr | np.roll(edge_arr, 1, 0) | np.roll(edge_arr, 1, 1)  # 2 px wide
    arr = np.asarray(img).copy()
    arr[edge_arr] = MASK_COLOUR
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img, "RGBA")
    fx = size[0] / (mask.thumbnail.shape[1] * mask.downsample[0])
    fy = size[1] / (mask.thumbnail.shape[0] * mask.downsample[1])
    t = grid.tile_size_px0
    for x, y in grid.coords_px0.tolist():
        draw.rectangle(
            [x * fx, y * fy, (x + t) * fx, (y + t) * fy],
            outline=(*TILE_COLOUR, 200),
            fill=(*TILE_COLOUR, 28),
        )
    caption = (
        f"{title} | {grid.slide_mpp:.3f} µm/px | tiles: {len(grid)} of {grid.n_candidates} "
        f"({grid.tile_size_px} px = {grid.tile_size_um:g} µm, level {grid.read_level}) | "
        f"tissue {mask.tissue_area_mm2:.2f} mm²"
    )
    if mask.pen_fraction > PEN_NOTE_THRESHOLD:
        caption += f" | pen marks {100 * mask.pen_fraction:.1f}% (excluded)"
    font_px = max(12, size[0] // 80)
    font = _font(font_px)
    bar_h = int(font_px * 1.8)
    canvas = Image.new("RGB", (size[0], size[1] + bar_h), (255, 255, 255))
    canvas.paste(img, (0, bar_h))
    ImageDraw.Draw(canvas).text((6, bar_h * 0.2), caption, fill=(0, 0, 0), font=font)
    return canvas


def save_png_atomic(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Save a PNG atomically (temp file in the same folder, fsync, rename)."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=False, compress_level=1)
    return Path(path)
