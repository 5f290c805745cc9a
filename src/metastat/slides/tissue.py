"""Tissue detection on a slide thumbnail: saturation/Otsu, pen-mark and background filtering,
morphology with physical (µm) sizes, hole filling and a minimum region area."""

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

    mask_mpp: float = Field(4.0, gt=0, description="resolution of the mask in µm/px")
    max_mask_px: int = Field(4096, ge=64, description="longest side of the mask in px")
    min_saturation: float = Field(0.07, ge=0, le=1, description="floor of the Otsu threshold")
    max_saturation_threshold: float = Field(0.2, ge=0, le=1, description="cap of the threshold")
    min_brightness: float = Field(0.12, ge=0, le=1, description="darker pixels: marker/debris")
    pen_filter: bool = True
    closing_um: float = Field(16.0, ge=0)
    min_area_um2: float = Field(20_000.0, ge=0, description="smaller tissue regions are dropped")
    max_hole_um2: float = Field(40_000.0, ge=0, description="smaller holes are filled")


@dataclass(frozen=True)
class TissueMask:
    """Boolean tissue mask at thumbnail resolution, with its scale to level 0."""

    mask: np.ndarray  # (h, w) bool
    thumbnail: np.ndarray  # (h, w, 3) uint8, the image the mask was computed on
    downsample: tuple[float, float]  # level-0 px per mask px along (x, y)
    mask_mpp: MicronsPerPixel
    pen_fraction: float  # fraction of the thumbnail flagged as pen marks

    @property
    def tissue_fraction(self) -> float:
        """Fraction of the slide area covered by tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def tissue_area_mm2(self) -> float:
        """Tissue area in mm²."""
        return float(self.mask.sum()) * (self.mask_mpp / 1000.0) ** 2


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = rgb.astype(np.float32) / 255.0
    mx, mn = a.max(axis=2), a.min(axis=2)
    delta = mx - mn
    sat = np.where(mx > 0, delta / np.maximum(mx, 1e-6), 0.0)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    d = np.maximum(delta, 1e-6)
    hue = (
        np.select(
            [mx == r, mx == g],
            [((g - b) / d) % 6.0, (b - r) / d + 2.0],
            (r - g) / d + 4.0,
        )
        / 6.0
    )
    hue = np.where(delta > 0, hue, 0.0)
    return hue, sat, mx


def pen_marks(rgb: np.ndarray) -> np.ndarray:
    """Pixels of red, green/teal, blue and black marker ink (H&E is pink-to-purple)."""
    hue, sat, val = _hsv(rgb)
    red = ((hue >= 0.955) | (hue <= 0.04)) & (sat > 0.45)
    green = (hue >= 0.15) & (hue < 0.55) & (sat > 0.2)
    blue = (hue >= 0.55) & (hue < 0.7) & (sat > 0.55)
    black = val < 0.2
    return red | green | blue | black


def detect_tissue_rgb(
    rgb: np.ndarray, mpp: float, config: TissueConfig | None = None
) -> np.ndarray:
    """Tissue mask of an RGB image whose pixels are ``mpp`` µm wide."""
    cfg = config or TissueConfig()
    hue, sat, val = _hsv(rgb)
    del hue
    candidates = sat[val > cfg.min_brightness]
    if candidates.size and np.ptp(candidates) > 0:
        thr = float(filters.threshold_otsu(candidates))
    else:
        thr = cfg.min_saturation
    thr = min(max(thr, cfg.min_saturation), max(cfg.max_saturation_threshold, cfg.min_saturation))
    mask = (sat > thr) & (val > cfg.min_brightness)
    if cfg.pen_filter:
        pen = pen_marks(rgb)
        pen = ndimage.binary_dilation(pen, iterations=max(1, round(8.0 / mpp)))
        mask &= ~pen
    px_area = mpp * mpp
    radius = round(cfg.closing_um / mpp)
    if radius >= 1:
        mask = morphology.closing(mask, morphology.disk(radius))
    if cfg.max_hole_um2 > 0:
        mask = morphology.remove_small_holes(mask, max_size=int(cfg.max_hole_um2 / px_area))
    if cfg.min_area_um2 > 0:
        mask = morphology.remove_small_objects(mask, max_size=int(cfg.min_area_um2 / px_area))
    return mask


def detect_tissue(slide: SlideReader, config: TissueConfig | None = None) -> TissueMask:
    """Detect tissue on a thumbnail of ``slide`` at about ``config.mask_mpp`` µm/px."""
    cfg = config or TissueConfig()
    w0, h0 = slide.dimensions_px0
    target_ds = max(cfg.mask_mpp / slide.mpp, max(w0, h0) / cfg.max_mask_px, 1.0)
    thumb = slide.thumbnail(max(1, round(max(w0, h0) / target_ds)))
    ds = (w0 / thumb.shape[1], h0 / thumb.shape[0])
    mask_mpp = MicronsPerPixel(slide.mpp * (ds[0] + ds[1]) / 2)
    mask = detect_tissue_rgb(thumb, mask_mpp, cfg)
    pen = float(pen_marks(thumb).mean()) if cfg.pen_filter else 0.0
    return TissueMask(mask, thumb, ds, mask_mpp, pen)
