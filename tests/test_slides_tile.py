"""Coordinates-only runs (``metastat slides tile``): tissue on the pyramid, polygons with holes,
CSV/GeoJSON/QC outputs, damaged tiles counted (``degraded``), resume."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from metastat.cli.main import app
from metastat.slides import open_slide
from metastat.slides.coords import TileConfig
from metastat.slides.execute import run_slide
from metastat.slides.polygons import _signed_area, tissue_polygons
from metastat.slides.results import SlideJob
from metastat.slides.synthetic import plant_garbage_tile, write_synthetic_slide
from metastat.slides.tiling import TilingConfig
from metastat.slides.tissue import TissueConfig, TissueMask, detect_tissue, mask_source

DATA = Path(__file__).parent / "data"
runner = CliRunner()


def test_tile_cli_writes_coordinates_geojson_qc_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "DIR"
    args = ["slides", "tile", str(DATA / "slides"), "--out", str(out), "--workers", "0"]
    res = runner.invoke(app, [*args, "--tile-size-px", "256", "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "run_summary.json").read_text())
    (s,) = summary["slides"]
    assert (s["slide_id"], s["status"], s["counts"], s["message"]) == (
        "CMU-1-Small-Region", "done", {}, None
    )  # fmt: skip
    assert summary["complete"] and summary["task"] == "tile"
    rows = list(csv.DictReader((out / "coords" / "CMU-1-Small-Region.csv").open()))
    assert len(rows) == s["n_tiles"] > 20
    x, y = int(rows[0]["x_px0"]), int(rows[0]["y_px0"])
    assert float(rows[0]["x_um"]) == pytest.approx(x * 0.499, abs=0.01)
    assert x % 257 == 0 and y % 257 == 0  # 256 px at 0.5 µm/px = 257 level-0 px at 0.499
    gj = json.loads((out / "tissue" / "CMU-1-Small-Region.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and gj["features"]
    f = gj["features"][0]
    assert f["geometry"]["type"] == "Polygon"
    assert f["properties"]["classification"]["name"] == "Tissue"
    ring = np.asarray(f["geometry"]["coordinates"][0])
    assert np.all(ring >= 0) and ring[:, 0].max() <= 2220 and ring[:, 1].max() <= 2967
    assert (out / "qc" / "CMU-1-Small-Region.png").stat().st_size > 10_000
    again = runner.invoke(app, [*args, "--tile-size-px", "256", "--no-progress"])
    assert "resumed (already finished) 1" in again.output
    s2 = json.loads((out / "run_summary.json").read_text())["slides"][0]
    assert s2["resumed"] and s2["status"] == "done" and s2["n_tiles"] == s["n_tiles"]


def test_mask_comes_from_the_pyramid_level_at_or_coarser_than_8um(tmp_path: Path) -> None:
    p = write_synthetic_slide(tmp_path / "p.tiff", size_px0=(16384, 8192), mpp=0.25, levels=6)
    with open_slide(p) as s:
        assert mask_source(s, TissueConfig()) == (5, 1)  # level 5 = 8 µm/px, read as it is
        m = detect_tissue(s)
        assert m.level == 5 and m.mask_mpp == pytest.approx(8.0) and m.mask.shape == (256, 512)
    for compression in ("zlib", "jpeg"):  # strips + box average; JPEG: DCT-scaled decode
        single = write_synthetic_slide(tmp_path / f"s-{compression}.tiff", size_px0=(4096, 2048),
                                       mpp=0.5, levels=1, compression=compression)  # fmt: skip
        with open_slide(single, max_read_px=2**20) as s:  # forces many strips
            assert mask_source(s, TissueConfig()) == (0, 8)
            small = s.read_level_downsampled(0, 8)
        with open_slide(single) as s:
            full = s.read((0, 0), (4096, 2048), 0)
        box = full.reshape(256, 8, 512, 8, 3).mean(axis=(1, 3))
        assert small.shape == (256, 512, 3)
        diff = np.abs(small.astype(float) - box)
        if compression == "zlib":
            assert diff.max() <= 1.0  # strips give exactly the box average
        else:
            assert diff.mean() < 1.0 and diff.max() <= 12


def _ring_mask(holes: bool) -> TissueMask:
    m = np.zeros((100, 120), bool)
    m[10:90, 10:110] = True
    if holes:
        m[30:50, 30:50] = False  # a lumen
        m[60:70, 70:95] = False
    return TissueMask(m, np.zeros((100, 120, 3), np.uint8), (4.0, 4.0), 2.0, 0.0)  # type: ignore[arg-type]


def test_polygons_have_holes_with_opposite_winding() -> None:
    (poly,) = tissue_polygons(_ring_mask(holes=True))
    assert len(poly) == 3  # exterior + 2 holes
    areas = [_signed_area(np.asarray(r) * [1, -1]) for r in poly]  # y up
    assert areas[0] > 0 and all(a < 0 for a in areas[1:])
    ext = np.asarray(poly[0])
    assert ext[:, 0].min() == pytest.approx(40, abs=4) and ext[:, 0].max() == pytest.approx(
        440, abs=4
    )
    assert abs(areas[1]) == pytest.approx(80 * 80, rel=0.1)  # 20x20 mask px of 4x4 px0


def test_keep_lumens_keeps_small_holes(tmp_path: Path) -> None:
    from metastat.slides.tissue import detect_tissue_rgb

    rgb = np.full((200, 200, 3), 240, np.uint8)
    rgb[20:180, 20:180] = (200, 100, 170)
    rgb[90:110, 90:110] = 240  # a 20x20 px lumen = 1,600 µm² at 2 µm/px
    filled = detect_tissue_rgb(rgb, 2.0, TissueConfig(closing_um=0))
    kept = detect_tissue_rgb(rgb, 2.0, TissueConfig(closing_um=0, keep_lumens=True))
    assert filled[100, 100] and not kept[100, 100]


@pytest.mark.parametrize("kind", ["stripes", "flat", "shift"])
def test_tiles_that_decode_to_garbage_make_the_slide_degraded(tmp_path: Path, kind: str) -> None:
    p = write_synthetic_slide(
        tmp_path / "g.tiff", size_px0=(4096, 4096), mpp=0.25, levels=4, seed=3, tissue_fraction=0.6
    )
    cfg = TileConfig(tiling=TilingConfig(tile_size_px=256, target_mpp=0.25), qc=False)
    clean = run_slide(SlideJob(p, "g"), tmp_path / "clean", cfg)
    assert clean.status == "done" and clean.counts == {}, clean
    rows = list(csv.DictReader(Path(clean.coords_file).read_text().splitlines()))
    inside = [(int(r["x_px0"]), int(r["y_px0"])) for r in rows if float(r["tissue_fraction"]) == 1]
    x, y = inside[len(inside) // 2]
    damaged = tmp_path / "d.tiff"
    shutil.copy(p, damaged)
    plant_garbage_tile(damaged, (y // 256) * 16 + x // 256, level=0, kind=kind)
    r = run_slide(SlideJob(damaged, "d"), tmp_path / "bad", cfg)
    assert r.status == "degraded" and r.counts == {"implausible_tiles": 1}, r
    assert f"({x}, {y})" in r.message and "QC PNG" in r.message
    assert r.n_tiles == clean.n_tiles - 1  # the garbage tile is left out, not hidden
    strict = cfg.model_copy(update={"max_unreadable_fraction": 0.0})
    assert run_slide(SlideJob(damaged, "d"), tmp_path / "strict", strict).status == "failed"


def test_lock_held_by_another_run_fails_the_slide_not_the_run(tmp_path: Path) -> None:
    from metastat.slides.execute import slide_lock

    out = tmp_path / "out"
    with slide_lock(out, "CMU-1-Small-Region"):
        r = run_slide(SlideJob(DATA / "slides" / "CMU-1-Small-Region.svs", "CMU-1-Small-Region"),
                      out, TileConfig(qc=False, verify=False))  # fmt: skip
    assert r.status == "failed" and r.error_type == "SlideLockedError"
    assert "another run" in r.message
