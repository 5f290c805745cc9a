"""Tissue detection and tiling on real tiles, real slides and synthetic slides with known layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metastat.slides import open_slide
from metastat.slides.errors import ResolutionError
from metastat.slides.qc import render_qc, save_png_atomic
from metastat.slides.synthetic import write_synthetic_slide
from metastat.slides.tiling import TilingConfig, plan_tiles
from metastat.slides.tissue import TissueConfig, detect_tissue, detect_tissue_rgb, pen_marks

DATA = Path(__file__).parent / "data"
SHARED_TILES = Path(__file__).resolve().parents[1].parent / "shared/data/images/tiles"
# small areas: the test tiles are a few hundred µm across
SMALL = TissueConfig(min_area_um2=2000, max_hole_um2=2000, closing_um=4)


def _tiles(pattern: str) -> list[Path]:
    found = sorted((DATA / "tiles").glob(pattern))
    if SHARED_TILES.is_dir():
        found += [
            p for p in sorted(SHARED_TILES.glob(pattern)) if p.name not in {f.name for f in found}
        ]
    return found


def _frac(p: Path) -> float:
    rgb = np.asarray(Image.open(p).convert("RGB"))
    return float(detect_tissue_rgb(rgb, 2.0, SMALL).mean())


@pytest.mark.parametrize("p", _tiles("no-tissue*.png") + _tiles("almost-white-1.png"), ids=str)
def test_background_and_pen_tiles_have_little_tissue(p: Path) -> None:
    limit = 0.3 if "red-pen" in p.name else 0.02  # dark-purple ink is haematoxylin-coloured
    assert _frac(p) <= limit


@pytest.mark.parametrize(
    "p",
    _tiles("tissue-level*.png")
    + _tiles("liver-level2-[15]*.png")
    + _tiles("high-nuclei-score-level0.png")
    + _tiles("medium-nuclei-score-level0.png"),
    ids=str,
)
def test_tissue_tiles_are_mostly_tissue(p: Path) -> None:
    assert _frac(p) >= 0.4


def test_pen_ink_is_flagged_not_tissue() -> None:
    rgb = np.asarray(Image.open(DATA / "tiles" / "no-tissue-green-pen.png").convert("RGB"))
    assert pen_marks(rgb).mean() > 0.5
    assert detect_tissue_rgb(rgb, 2.0, SMALL).mean() < 0.02
    liver = np.asarray(Image.open(DATA / "tiles" / "liver-level2-10907-7808-11707-8608.png"))
    assert pen_marks(liver[..., :3]).mean() < 0.05  # eosin/haematoxylin are not ink


def test_synthetic_layout_is_recovered(tmp_path: Path) -> None:
    p = write_synthetic_slide(
        tmp_path / "s.tiff", size_px0=(2048, 2048), mpp=0.5, seed=4, tissue_fraction=0.3
    )
    with open_slide(p) as s:
        m = detect_tissue(s)
    # the writer puts ~30% of the inner area (inside a 1/12 margin) under tissue
    assert 0.15 < m.tissue_fraction < 0.35
    # a 1 mm slide: the mask is at least min_mask_px (512) long, so 2 µm/px, from level 2
    assert m.mask_mpp == pytest.approx(2.0, rel=0.05) and m.level == 2


def test_tiles_at_physical_size_from_best_level(tmp_path: Path) -> None:
    p = write_synthetic_slide(tmp_path / "s.tiff", size_px0=(4096, 3072), mpp=0.25, seed=2)
    cfg = TilingConfig(tile_size_px=224, target_mpp=0.5, min_tissue_fraction=0.5)
    with open_slide(p) as s:
        m = detect_tissue(s)
        g = plan_tiles(s, m, cfg)
    assert g.tile_size_px0 == 448 and g.tile_size_um == 112.0
    assert g.read_level == 1 and g.read_size_px == 224  # level 1 is exactly 0.5 µm/px
    assert len(g) > 0 and np.all(g.tissue_fraction >= 0.5)
    assert np.all(g.coords_px0 % 448 == 0)
    assert np.all(g.coords_px0 < np.array([4096, 3072]))
    np.testing.assert_allclose(g.coords_um, g.coords_px0 * 0.25)


def test_overlap_halves_stride(tmp_path: Path) -> None:
    p = write_synthetic_slide(tmp_path / "s.tiff", size_px0=(2048, 2048), mpp=0.5, seed=2, levels=1)
    with open_slide(p) as s:
        m = detect_tissue(s)
        g0 = plan_tiles(s, m, TilingConfig(min_tissue_fraction=0))
        g1 = plan_tiles(s, m, TilingConfig(min_tissue_fraction=0, overlap_um=56))
    assert g1.n_candidates > 3 * g0.n_candidates
    assert np.diff(np.unique(g1.coords_px0[:, 0]))[0] == 112


def test_coarse_slide_refuses_silent_upsampling(tmp_path: Path) -> None:
    p = write_synthetic_slide(tmp_path / "c.tiff", size_px0=(1024, 1024), mpp=2.0, levels=1)
    with open_slide(p) as s, pytest.raises(ResolutionError, match="coarser"):
        plan_tiles(s, detect_tissue(s), TilingConfig(target_mpp=0.5))


def test_real_slide_qc_png(tmp_path: Path) -> None:
    with open_slide(DATA / "slides" / "CMU-1-Small-Region.svs") as s:
        m = detect_tissue(s)
        g = plan_tiles(s, m, TilingConfig())
        out = save_png_atomic(
            render_qc(m, g, title="CMU-1", display=s.thumbnail(800)), tmp_path / "qc.png"
        )
    assert 0.2 < m.tissue_fraction < 0.6  # a strip of skin on white glass
    assert 30 <= len(g) <= 80
    img = np.asarray(Image.open(out).convert("RGB"))
    green = np.all(img == (0, 170, 0), axis=2)
    assert green.sum() > 500  # the outline is drawn
