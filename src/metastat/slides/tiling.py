"""Tile grids at a physical resolution: tile size in µm and px, level-0 coordinates only."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from metastat.slides.errors import ResolutionError
from metastat.slides.reader import SlideReader
from metastat.slides.tissue import TissueMask
from metastat.slides.units import Microns, MicronsPerPixel


class TilingConfig(BaseModel):
    """Tile geometry: ``tile_size_px`` pixels at ``target_mpp`` µm/px (e.g. 224 px at 0.5)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tile_size_px: int = Field(224, ge=8, le=4096)
    target_mpp: float = Field(0.5, gt=0, description="µm/px of the tiles given to the encoder")
    overlap_um: float = Field(0.0, ge=0, description="overlap of neighbouring tiles in µm")
    min_tissue_fraction: float = Field(0.5, ge=0, le=1)
    max_upsample: float = Field(
        1.1, ge=1, description="largest allowed upsampling when the slide is coarser than asked"
    )

    @property
    def tile_size_um(self) -> Microns:
        """Tile side in µm."""
        return Microns(self.tile_size_px * self.target_mpp)


@dataclass(frozen=True)
class TileGrid:
    """Tiles kept on a slide; coordinates are level-0 top-left pixels (x, y)."""

    coords_px0: np.ndarray  # (n, 2) int64
    tissue_fraction: np.ndarray  # (n,) float32
    tile_size_px0: int  # tile side in level-0 px (rounded)
    tile_size_px: int  # tile side given to the encoder
    tile_size_um: Microns
    slide_mpp: MicronsPerPixel
    read_level: int  # pyramid level read for each tile
    read_size_px: int  # tile side read at ``read_level`` (then resized to tile_size_px)
    n_candidates: int  # grid positions before the tissue filter

    def __len__(self) -> int:
        return int(self.coords_px0.shape[0])

    @property
    def coords_um(self) -> np.ndarray:
        """Tile top-left in µm."""
        return self.coords_px0.astype(np.float64) * float(self.slide_mpp)


def _integral(mask: np.ndarray) -> np.ndarray:
    s = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
    s[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    return s


def tissue_fraction_of_boxes(
    mask: TissueMask, coords_px0: np.ndarray, size_px0: float
) -> np.ndarray:
    """Fraction of mask pixels set inside each level-0 square (exact on the mask grid)."""
    sat = _integral(mask.mask)
    h, w = mask.mask.shape
    dx, dy = mask.downsample
    x0 = np.clip(np.floor(coords_px0[:, 0] / dx).astype(np.int64), 0, w)
    y0 = np.clip(np.floor(coords_px0[:, 1] / dy).astype(np.int64), 0, h)
    x1_full = np.ceil((coords_px0[:, 0] + size_px0) / dx).astype(np.int64)
    y1_full = np.ceil((coords_px0[:, 1] + size_px0) / dy).astype(np.int64)
    x1, y1 = np.clip(x1_full, 0, w), np.clip(y1_full, 0, h)
    # relative to the whole tile: a part beyond the slide's edge counts as background
    area = np.maximum((x1_full - x0) * (y1_full - y0), 1)
    inside = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    return (inside / area).astype(np.float32)


#: Cells per tile side compared with the lower level (4 x 4 cells of a tile).
REFERENCE_CELLS = 4


def reference_colours(mask: TissueMask, grid: TileGrid) -> np.ndarray | None:
    """Mean colour of each tile's 4 x 4 cells on the mask's image, (n, 4, 4, 3), when that
    image comes from another pyramid level than the tiles: an independent copy to check
    decoded tiles against. None when both come from the same level."""
    if mask.level == grid.read_level:
        return None
    thumb = mask.thumbnail
    h, w = thumb.shape[:2]
    dx, dy = mask.downsample
    k = REFERENCE_CELLS
    steps = np.arange(k + 1) / k * grid.tile_size_px0
    c = grid.coords_px0.astype(np.float64)
    xb = np.clip(np.rint((c[:, :1] + steps) / dx).astype(np.int64), 0, w)  # (n, k+1)
    yb = np.clip(np.rint((c[:, 1:] + steps) / dy).astype(np.int64), 0, h)
    x0, x1 = xb[:, None, :-1], np.maximum(xb[:, None, 1:], xb[:, None, :-1] + 1).clip(max=w)
    y0, y1 = yb[:, :-1, None], np.maximum(yb[:, 1:, None], yb[:, :-1, None] + 1).clip(max=h)
    x0, y0 = np.minimum(x0, x1 - 1), np.minimum(y0, y1 - 1)
    area = (x1 - x0) * (y1 - y0)
    out = np.empty((len(c), k, k, 3), np.float32)
    for ch in range(3):
        s = _integral(thumb[:, :, ch])
        out[..., ch] = (s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0]) / area
    return out


def plan_tiles(slide: SlideReader, mask: TissueMask, config: TilingConfig) -> TileGrid:
    """Grid of tiles over ``slide`` with at least ``min_tissue_fraction`` tissue."""
    mpp = slide.mpp
    scale = config.target_mpp / mpp  # level-0 px per output px
    if scale < 1 / config.max_upsample:
        raise ResolutionError(
            f"slide '{slide.path.name}' is scanned at {mpp:.3f} µm/px, coarser than the requested "
            f"{config.target_mpp} µm/px: lower the resolution asked (--target-mpp "
            f"{math.ceil(mpp * 100) / 100}), check the slide's µm/px, or raise max_upsample"
        )
    size_px0_f = config.tile_size_px * scale
    tile_px0 = max(1, round(size_px0_f))
    stride_px0 = max(1, round((config.tile_size_um - config.overlap_um) / mpp))
    if config.overlap_um >= config.tile_size_um:
        raise ValueError("overlap_um must be smaller than the tile size in µm")
    w0, h0 = slide.dimensions_px0
    # tiles may run past the right/bottom edge (read as white) so edge tissue is covered
    xs = np.arange(0, w0, stride_px0, dtype=np.int64)
    ys = np.arange(0, h0, stride_px0, dtype=np.int64)
    gx, gy = np.meshgrid(xs, ys)
    coords = np.stack([gx.ravel(), gy.ravel()], axis=1)
    frac = tissue_fraction_of_boxes(mask, coords, size_px0_f)
    keep = frac >= max(config.min_tissue_fraction, 1e-9)
    level, _ = slide.level_for_mpp(config.target_mpp)
    read_px = max(1, round(size_px0_f / slide.level_downsamples[level]))
    return TileGrid(
        coords_px0=coords[keep],
        tissue_fraction=frac[keep],
        tile_size_px0=tile_px0,
        tile_size_px=config.tile_size_px,
        tile_size_um=config.tile_size_um,
        slide_mpp=mpp,
        read_level=level,
        read_size_px=read_px,
        n_candidates=int(coords.shape[0]),
    )
