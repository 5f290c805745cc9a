"""One slide end to end: open -> tissue -> tiles -> embeddings -> feature file + QC PNG.

:func:`process_slide` never raises for a problem with the slide: it returns a failed
:class:`SlideResult` with a clear message, so a cohort run records it and goes on.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from metastat import __version__
from metastat.core.provenance import weights_digest
from metastat.errors import MetastatError
from metastat.slides.encoders import TileEncoder, create_encoder
from metastat.slides.errors import NoTissueError, SlideReadError
from metastat.slides.extract import embed_grid
from metastat.slides.qc import render_qc, save_png_atomic
from metastat.slides.reader import open_slide
from metastat.slides.store import is_complete, read_marker, write_features
from metastat.slides.tiling import TilingConfig, plan_tiles
from metastat.slides.tissue import TissueConfig, detect_tissue

Status = Literal["done", "skipped", "failed"]


class ProcessConfig(BaseModel):
    """Settings of a slide run. Those that change the features enter :meth:`fingerprint`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiling: TilingConfig = TilingConfig()
    tissue: TissueConfig = TissueConfig()
    encoder: str = "efficientnet_lite0"
    encoder_weights: str | None = None
    encoder_input_px: int | None = Field(
        None, ge=16, le=4096, description="resize tiles to this for the encoder (default: native)"
    )
    device: str | None = None
    batch_size: int = Field(32, ge=1, le=4096)
    read_threads: int = Field(2, ge=1, le=64)
    prefetch_batches: int = Field(2, ge=1, le=64)
    max_unreadable_fraction: float = Field(0.05, ge=0, le=1)
    torch_threads: int | None = Field(
        None, ge=1, le=1024, description="intra-op threads for the encoder (default: as set)"
    )
    qc: bool = True
    qc_max_px: int = Field(1600, ge=128)

    def fingerprint(self) -> str:
        """Hash of the settings that determine the features (not device or batching)."""
        key = {
            "tiling": self.tiling.model_dump(),
            "tissue": self.tissue.model_dump(),
            "encoder": self.encoder,
            "weights": weights_digest(self.encoder_weights),  # identity, not file name
            "encoder_input_px": self.encoder_input_px,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SlideJob:
    """One slide to process; ``slide_id`` is what outputs are named by (maybe a pseudonym)."""

    path: Path
    slide_id: str
    mpp_override: float | None = None  # wins over the metadata
    mpp_fallback: float | None = None  # used only when the metadata has none
    redact: tuple[str, ...] = ()  # strings removed from messages (original names)


@dataclass
class SlideResult:
    """Outcome of one slide, as recorded in ``run_summary.json``."""

    slide_id: str
    status: Status
    n_tiles: int = 0
    n_unreadable: int = 0
    seconds: float = 0.0
    error_type: str | None = None
    error: str | None = None
    feature_file: str | None = None
    qc_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return asdict(self)


def feature_path(out_dir: Path, slide_id: str) -> Path:
    """Where a slide's feature file goes."""
    return out_dir / "features" / f"{slide_id}.h5"


def qc_path(out_dir: Path, slide_id: str) -> Path:
    """Where a slide's QC PNG goes."""
    return out_dir / "qc" / f"{slide_id}.png"


_ENCODERS: dict[tuple[str, str | None, str | None, int | None], TileEncoder] = {}


def cached_encoder(config: ProcessConfig) -> TileEncoder:
    """One encoder per process (pool and Dask workers build it once, then reuse it)."""
    key = (config.encoder, config.encoder_weights, config.device, config.encoder_input_px)
    if key not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[key] = create_encoder(
            config.encoder,
            device=config.device,
            weights=config.encoder_weights,
            input_size_px=config.encoder_input_px,
        )
    return _ENCODERS[key]


def _redact(message: str, job: SlideJob) -> str:
    for s in sorted(job.redact, key=len, reverse=True):
        if s:
            message = message.replace(s, job.slide_id)
    return message


def _run(job: SlideJob, out_dir: Path, config: ProcessConfig, result: SlideResult) -> None:
    with open_slide(
        job.path, mpp_override=job.mpp_override, mpp_fallback=job.mpp_fallback
    ) as slide:
        mask = detect_tissue(slide, config.tissue)
        grid = plan_tiles(slide, mask, config.tiling)
        if config.qc:
            display = slide.thumbnail(config.qc_max_px)
            img = render_qc(
                mask, grid, title=job.slide_id, display=display, max_px=config.qc_max_px
            )
            result.qc_file = str(save_png_atomic(img, qc_path(out_dir, job.slide_id)))
        if len(grid) == 0:
            raise NoTissueError(
                f"no tile of slide '{job.slide_id}' has >= "
                f"{config.tiling.min_tissue_fraction:.0%} tissue (tissue found: "
                f"{mask.tissue_area_mm2:.3f} mm²): check the QC PNG, lower "
                "--min-tissue-fraction, or exclude the slide"
            )
        encoder = cached_encoder(config)
        feats, ok = embed_grid(
            slide,
            grid,
            encoder,
            batch_size=config.batch_size,
            threads=config.read_threads,
            prefetch=config.prefetch_batches,
        )
        n_bad = int((~ok).sum())
        result.n_unreadable = n_bad
        if n_bad > config.max_unreadable_fraction * len(grid) or n_bad == len(grid):
            raise SlideReadError(
                f"{n_bad} of {len(grid)} tiles of slide '{job.slide_id}' could not be read "
                f"(limit {config.max_unreadable_fraction:.0%}): the file is damaged; re-copy or "
                "re-scan it, or raise --max-unreadable-fraction"
            )
        meta = slide.safe_metadata()
        path = write_features(
            feature_path(out_dir, job.slide_id),
            slide_id=job.slide_id,
            features=feats[ok],
            coords_px0=grid.coords_px0[ok],
            mpp=float(slide.mpp),
            tissue_fraction=grid.tissue_fraction[ok],
            attrs={
                "tile_size_px": grid.tile_size_px,
                "tile_size_um": float(grid.tile_size_um),
                "tile_size_px0": grid.tile_size_px0,
                "target_mpp": config.tiling.target_mpp,
                "read_level": grid.read_level,
                "encoder": encoder.name,
                "encoder_version": encoder.spec.version,
                "encoder_licence": encoder.spec.licence,
                "embedding_dim": encoder.embedding_dim,
                "reader": meta["reader"],
                "vendor": meta["vendor"],
                "mpp_source": meta["mpp_source"],
                "dimensions_px0": np.asarray(meta["dimensions_px0"], np.int64),
                "n_unreadable_tiles": n_bad,
                "fingerprint": config.fingerprint(),
            },
            fingerprint=config.fingerprint(),
        )
        result.n_tiles = int(ok.sum())
        result.feature_file = str(path)


def process_slide(job: SlideJob, out_dir: str | Path, config: ProcessConfig) -> SlideResult:
    """Process one slide; finished slides (valid marker, same settings) are skipped."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    fpath = feature_path(out, job.slide_id)
    if is_complete(fpath, fingerprint=config.fingerprint()):
        marker = read_marker(fpath) or {}
        return SlideResult(
            job.slide_id, "skipped", n_tiles=int(marker.get("n_tiles", 0)), feature_file=str(fpath)
        )
    result = SlideResult(job.slide_id, "done")
    threads_before = torch.get_num_threads()
    try:
        if config.torch_threads is not None:  # same threads -> same float reduction order
            torch.set_num_threads(config.torch_threads)
        _run(job, out, config, result)
    except MetastatError as exc:
        result.status, result.error_type = "failed", type(exc).__name__
        result.error = _redact(str(exc), job)
    except Exception as exc:  # a bug or an unexpected backend failure: record, don't stop the run
        result.status, result.error_type = "failed", type(exc).__name__
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
        result.error = _redact(f"unexpected {type(exc).__name__}: {exc}{where}", job)
    finally:
        torch.set_num_threads(threads_before)
        gc.collect()  # release per-slide buffers before the next slide
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def run_metadata() -> dict[str, Any]:
    """Versions recorded in the run summary."""
    import platform

    return {
        "metastat_version": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
