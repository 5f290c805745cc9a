"""Coordinates only (``metastat slides tile``): tissue on the pyramid -> tile grid -> CSV,
tissue GeoJSON and QC PNG per slide; no encoder, no torch.

Per slide, under ``--out DIR``: ``coords/<id>.csv`` (one row per kept tile), ``tissue/<id>.geojson``
(tissue polygons with holes, level-0 px; QuPath opens it), ``qc/<id>.png`` and, written last,
``coords/<id>.json`` (status, counts, settings fingerprint) from which a re-run resumes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from metastat.atomic import atomic_path, atomic_write
from metastat.core.provenance import settings_digest
from metastat.slides.checksums import ChecksumMode
from metastat.slides.errors import NoTissueError
from metastat.slides.extract import verify_grid
from metastat.slides.integrity import DecodeLog, capture_decoder_reports, judge
from metastat.slides.polygons import tissue_geojson, write_geojson
from metastat.slides.qc import render_qc, save_png_atomic
from metastat.slides.reader import SlideReader, open_slide
from metastat.slides.results import SlideJob, SlideResult
from metastat.slides.tiling import TileGrid, TilingConfig, plan_tiles, reference_colours
from metastat.slides.tissue import TissueConfig, TissueMask, detect_tissue

if TYPE_CHECKING:
    from metastat.slides.pipeline import ProcessConfig

CSV_COLUMNS = ("x_px0", "y_px0", "x_um", "y_um", "tissue_fraction")


class TileConfig(BaseModel):
    """Settings of a coordinates-only run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiling: TilingConfig = TilingConfig()
    tissue: TissueConfig = TissueConfig()
    verify: bool = Field(True, description="read every kept tile and check its pixels")
    read_threads: int = Field(2, ge=1, le=64)
    max_unreadable_fraction: float = Field(0.05, ge=0, le=1)
    qc: bool = True
    qc_max_px: int = Field(1200, ge=128)
    checksums: ChecksumMode = Field("auto", description="check slide files against digests")

    def fingerprint(self) -> str:
        """Hash of the settings that determine the coordinates."""
        key: dict[str, Any] = {
            "tiling": self.tiling.model_dump(),
            "tissue": self.tissue.model_dump(),
        }
        key["verify"] = self.verify
        return settings_digest(key)


def coords_path(out_dir: Path, slide_id: str) -> Path:
    """Where a slide's tile coordinates go."""
    return out_dir / "coords" / f"{slide_id}.csv"


def qc_path(out_dir: Path, slide_id: str) -> Path:
    """Where a slide's QC PNG goes."""
    return out_dir / "qc" / f"{slide_id}.png"


def _marker(out_dir: Path, slide_id: str) -> Path:
    return out_dir / "coords" / f"{slide_id}.json"


def qc_image(
    slide: SlideReader, mask: TissueMask, grid: TileGrid, title: str, max_px: int
) -> Image.Image:
    """The QC image; drawn on the mask's own image when it is sharp enough (no second read)."""
    display = mask.thumbnail
    if max(display.shape[:2]) < max_px // 3:
        display = slide.thumbnail(max_px)
    return render_qc(mask, grid, title=title, display=display, max_px=max_px)


def plan_slide(
    slide: SlideReader,
    job: SlideJob,
    out_dir: Path,
    config: TileConfig | ProcessConfig,
    result: SlideResult,
    log: DecodeLog,
) -> tuple[TissueMask, TileGrid]:
    """Tissue mask, tile grid and QC PNG of an open slide (shared by ``tile`` and ``process``);
    unreadable blocks of the mask's level are counted in ``log``."""
    mask = detect_tissue(slide, config.tissue)
    grid = plan_tiles(slide, mask, config.tiling)
    if mask.unreadable_blocks:
        what = f"{mask.unreadable_blocks} blocks of level {mask.level} unreadable"
        log.add("unreadable_thumbnail_blocks", what, mask.unreadable_blocks)
    if config.qc:
        img = qc_image(slide, mask, grid, job.slide_id, config.qc_max_px)
        result.qc_file = str(save_png_atomic(img, qc_path(out_dir, job.slide_id)))
    return mask, grid


def record_problems(
    result: SlideResult, log: DecodeLog, n_tiles: int, max_bad_fraction: float
) -> None:
    """Counts and message of ``log`` into ``result``: degraded if anything was off (raises
    :class:`~metastat.slides.errors.SlideReadError` past ``max_bad_fraction``)."""
    result.message = judge(
        log, slide_id=result.slide_id, n_tiles=n_tiles, max_bad_fraction=max_bad_fraction
    )
    result.counts = {k: int(v) for k, v in log.counts.items() if v}
    if result.message:
        result.status = "degraded"


def no_tissue(job: SlideJob, mask: TissueMask, tiling: TilingConfig) -> NoTissueError:
    """The error of a slide without a single tile with enough tissue."""
    return NoTissueError(
        f"no tile of slide '{job.slide_id}' has >= {tiling.min_tissue_fraction:.0%} tissue "
        f"(tissue found: {mask.tissue_area_mm2:.3f} mm²): check the QC PNG, lower "
        "--min-tissue-fraction, or exclude the slide"
    )


def write_coords_csv(path: Path, grid: TileGrid, keep: np.ndarray) -> Path:
    """Kept tiles as CSV (level-0 px and µm, tissue fraction), written atomically."""
    c = grid.coords_px0[keep]
    um = c.astype(np.float64) * float(grid.slide_mpp)
    frac = grid.tissue_fraction[keep]
    lines = [",".join(CSV_COLUMNS)]
    lines += [
        f"{x},{y},{ux:.2f},{uy:.2f},{f:.4f}"
        for (x, y), (ux, uy), f in zip(c.tolist(), um.tolist(), frac.tolist(), strict=True)
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def resume(out_dir: Path, slide_id: str, fingerprint: str) -> SlideResult | None:
    """The recorded outcome of an earlier run with the same settings, if its files are there."""
    try:
        record = json.loads(_marker(out_dir, slide_id).read_text())
        if record.get("fingerprint") != fingerprint:
            return None
        r = SlideResult.from_dict(record["result"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (r.coords_file and Path(r.coords_file).is_file()):
        return None
    r.resumed = True
    return r


def tile_slide(job: SlideJob, out_dir: Path, config: TileConfig, result: SlideResult) -> None:
    """Coordinates, tissue polygons and QC of one slide into ``result`` (raises on failure)."""
    log = DecodeLog()
    t0 = time.perf_counter()
    with (
        capture_decoder_reports(log),
        open_slide(job.path, mpp_override=job.mpp_override, mpp_fallback=job.mpp_fallback) as s,
    ):
        mask, grid = plan_slide(s, job, out_dir, config, result, log)
        gj = tissue_geojson(
            mask, slide_id=job.slide_id, mpp=float(s.mpp), size_px0=s.dimensions_px0
        )
        path = out_dir / "tissue" / f"{job.slide_id}.geojson"
        result.geojson_file = str(write_geojson(gj, path))
        if len(grid) == 0:
            raise no_tissue(job, mask, config.tiling)
        keep = np.ones(len(grid), bool)
        if config.verify:
            refs = reference_colours(mask, grid)
            keep = verify_grid(s, grid, log=log, references=refs, threads=config.read_threads)
    record_problems(result, log, len(grid), config.max_unreadable_fraction)
    result.coords_file = str(write_coords_csv(coords_path(out_dir, job.slide_id), grid, keep))
    result.n_tiles = int(keep.sum())
    result.seconds = round(time.perf_counter() - t0, 3)
    record = {"fingerprint": config.fingerprint(), "result": result.to_dict()}
    atomic_write(_marker(out_dir, job.slide_id), json.dumps(record, indent=2))
