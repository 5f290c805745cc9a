"""Attention overlay: per-tile scores -> a transparent RGBA PNG covering the whole slide.

The PNG spans level 0 exactly (its aspect ratio is the slide's), so the viewer can lay it over
the deep-zoom image at ``x=0, width=1``. Colours are the MIL heatmap's (``jet`` over score
percentiles), tiles without a score stay fully transparent *and black* (RGBA 0, 0, 0, 0): a
viewer that composites without premultiplying alpha (OpenSeadragon's WebGL drawer) would
otherwise add the colour of "transparent" pixels to the slide.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image

from metastat.mil.heatmap import percentile_scores, rasterise

MAX_SIDE_PX = 2048
ALPHA = 0.6


def overlay_rgba(
    coords_px0: np.ndarray, tile_px0: int, scores: np.ndarray, size_px0: tuple[int, int]
) -> np.ndarray:
    """(h, w, 4) uint8 image: jet colour of each tile's score percentile, alpha 0 elsewhere."""
    w0, h0 = size_px0
    scale = min(1.0, MAX_SIDE_PX / max(w0, h0, 1))
    hw = (max(1, round(h0 * scale)), max(1, round(w0 * scale)))
    grid = rasterise(np.asarray(coords_px0), int(tile_px0), percentile_scores(scores), size_px0, hw)
    rgba = colormaps["jet"](np.nan_to_num(grid, nan=0.0))
    rgba[..., 3] = np.where(np.isfinite(grid), ALPHA, 0.0)
    rgba[~np.isfinite(grid)] = 0.0
    return (rgba * 255).round().astype(np.uint8)


def write_overlay(path: Path, rgba: np.ndarray) -> Path:
    """Save the overlay PNG atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(rgba, "RGBA").save(tmp, format="PNG", optimize=True)
    tmp.replace(path)
    return path
