"""Tissue detection on the slide's own pyramid: saturation/Otsu, pen-mark and background
filtering, morphology with physical (µm) sizes, hole filling and a minimum region area.

The mask is computed on the finest pyramid level at or coarser than ``mask_mpp`` (8 µm/px by
default); when no level is that coarse, the coarsest level is read in strips and box-averaged
on the fly, so a single-level slide never holds its full level 0 in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage
from skimage import filters, morphology

from metastat.slides.reader import SlideReader
from metastat.slides.units import MicronsPerPixel


class TissueConfig(BaseModel):
    """Settings of tissue detection (areas in µm², lengths in µm)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mask_mpp: float = Field(8.0, gt=0, description="resolution of the mask in µm/px (at most)")
    min_mask_px: int = Field(
        512, ge=32, description="finer mask for small images: at least this many px long"
    )
    min_saturation: float = Field(0.07, ge=0, le=1, description="floor of the Otsu threshold")
    max_saturation_threshold: float = Field(0.2, ge=0, le=1, description="cap of the threshold")
    min_brightness: float = Field(0.12, ge=0, le=1, description="darker pixels: marker/debris")
    pen_filter: bool = True
    closing_um: float = Field(16.0, ge=0)
    min_area_um2: float = Field(20_000.0, ge=0, description="smaller tissue regions are dropped")
    max_hole_um2: float = Field(40_000.0, ge=0, description="smaller holes are filled")
    keep_lumens: bool = Field(False, description="keep holes (lumens, vessels) unfilled")


@dataclass(frozen=True)
class TissueMask:
    """Boolean tissue mask at thumbnail resolution, with its scale to level 0."""

    mask: np.ndarray  # (h, w) bool
    thumbnail: np.ndarray  # (h, w, 3) uint8, the image the mask was computed on
    downsample: tuple[float, float]  # level-0 px per mask px along (x, y)
    mask_mpp: MicronsPerPixel
    pen_fraction: float  # fraction of the thumbnail flagged as pen marks
    level: int = 0  # pyramid level the thumbnail was read from
    unreadable_blocks: int = 0  # blocks of that level that could not be read (shown white)

    @property
    def tissue_fraction(self) -> float:
        """Fraction of the slide area covered by tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def tissue_area_mm2(self) -> float:
        """Tissue area in mm²."""
        return float(self.mask.sum()) * (self.mask_mpp / 1000.0) ** 2


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue, saturation and value in 0-1 (float32), channel-wise (no reductions over axis 2)."""
    r8, g8, b8 = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx8 = np.maximum(np.maximum(r8, g8), b8)
    mn8 = np.minimum(np.minimum(r8, g8), b8)
    mx = mx8.astype(np.float32)
    delta = mx - mn8
    sat = delta / np.maximum(mx, 1.0)
    d = np.maximum(delta, 1e-6)
    r, g, b = (c.astype(np.float32) for c in (r8, g8, b8))
    hue = np.where(mx8 == r8, ((g - b) / d) % 6.0, np.where(mx8 == g8, (b - r) / d + 2.0,
                                                             (r - g) / d + 4.0))  # fmt: skip
    hue = np.where(delta > 0, hue * np.float32(1 / 6), np.float32(0))
    return hue, sat, mx * np.float32(1 / 255)


def _pen(hue: np.ndarray, sat: np.ndarray, val: np.ndarray) -> np.ndarray:
    red = ((hue >= 0.955) | (hue <= 0.04)) & (sat > 0.45)
    green = (hue >= 0.15) & (hue < 0.55) & (sat > 0.2)
    blue = (hue >= 0.55) & (hue < 0.7) & (sat > 0.55)
    black = val < 0.2
    return red | green | blue | black


def pen_marks(rgb: np.ndarray) -> np.ndarray:
    """Pixels of red, green/teal, blue and black marker ink (H&E is pink-to-purple)."""
    return _pen(*_hsv(rgb))


def _disk(radius: float) -> np.ndarray:
    r = int(radius)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= radius * radius


def _dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary dilation by a disk: a footprint for small radii, else exact distance maps."""
    if not mask.any():
        return mask.copy()
    if radius < 5:
        return ndimage.binary_dilation(mask, structure=_disk(radius))
    return ndimage.distance_transform_edt(~mask) <= radius


def _close(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary closing by a disk of ``radius`` px (dilation, then erosion)."""
    r = int(radius) + 1
    grown = _dilate(np.pad(mask, r), radius)
    if radius < 5:
        closed = ndimage.binary_erosion(grown, structure=_disk(radius))
    else:
        closed = ndimage.distance_transform_edt(grown) > radius
    return closed[r:-r, r:-r]


def _detect(rgb: np.ndarray, mpp: float, cfg: TissueConfig) -> tuple[np.ndarray, float]:
    hue, sat, val = _hsv(rgb)
    bright = val > cfg.min_brightness
    candidates = sat[bright]
    if candidates.size and np.ptp(candidates) > 0:
        thr = float(filters.threshold_otsu(candidates))
    else:
        thr = cfg.min_saturation
    thr = min(max(thr, cfg.min_saturation), max(cfg.max_saturation_threshold, cfg.min_saturation))
    mask = (sat > thr) & bright
    pen_fraction = 0.0
    if cfg.pen_filter:
        pen = _pen(hue, sat, val)
        pen_fraction = float(pen.mean())
        mask &= ~_dilate(pen, max(1.0, 8.0 / mpp))
    px_area = mpp * mpp
    radius = cfg.closing_um / mpp
    if radius >= 1:
        mask = _close(mask, radius)
    max_hole_px = 4 if cfg.keep_lumens else int(cfg.max_hole_um2 / px_area)
    if max_hole_px > 0:
        mask = morphology.remove_small_holes(mask, max_size=max_hole_px)
    if cfg.min_area_um2 > 0:
        mask = morphology.remove_small_objects(mask, max_size=int(cfg.min_area_um2 / px_area))
    return mask, pen_fraction


def detect_tissue_rgb(
    rgb: np.ndarray, mpp: float, config: TissueConfig | None = None
) -> np.ndarray:
    """Tissue mask of an RGB image whose pixels are ``mpp`` µm wide."""
    return _detect(rgb, mpp, config or TissueConfig())[0]


def mask_source(slide: SlideReader, config: TissueConfig) -> tuple[int, int]:
    """(level, integer box factor) giving a mask of about ``config.mask_mpp`` µm/px.

    A level at or coarser than the target (at most twice) is used as it is; otherwise the
    coarsest finer level is box-averaged by the largest integer factor not past the target.
    """
    w0, h0 = slide.dimensions_px0
    long_um = max(w0, h0) * float(slide.mpp)
    target = min(config.mask_mpp, max(long_um / config.min_mask_px, float(slide.mpp)))
    mpps = [float(slide.mpp) * d for d in slide.level_downsamples]
    coarser = [i for i, m in enumerate(mpps) if target * (1 - 1e-6) <= m <= 2 * target]
    if coarser:
        return min(coarser, key=lambda i: mpps[i]), 1
    finer = [i for i, m in enumerate(mpps) if m < target] or [0]
    level = max(finer, key=lambda i: mpps[i])
    return level, max(1, int(target / mpps[level]))


def detect_tissue(slide: SlideReader, config: TissueConfig | None = None) -> TissueMask:
    """Detect tissue on ``slide``'s pyramid at about ``config.mask_mpp`` µm/px."""
    cfg = config or TissueConfig()
    level, factor = mask_source(slide, cfg)
    before = slide.unreadable_blocks
    thumb = slide.read_level_downsampled(level, factor)
    (w0, h0), (lw, lh) = slide.dimensions_px0, slide.level_dimensions[level]
    ds = (w0 / lw * factor, h0 / lh * factor)
    mask_mpp = MicronsPerPixel(slide.mpp * (ds[0] + ds[1]) / 2)
    mask, pen = _detect(thumb, mask_mpp, cfg)
    return TissueMask(mask, thumb, ds, mask_mpp, pen, level, slide.unreadable_blocks - before)
