"""One slide end to end: open -> tissue -> tiles -> embeddings -> feature file + QC PNG.

:func:`process_slide` never raises for a problem with the slide: it returns a failed (or
degraded) :class:`SlideResult` with a clear message, so a cohort run records it and goes on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from metastat import __version__
from metastat.core.provenance import settings_digest, weights_digest
from metastat.slides.checksums import ChecksumMode
from metastat.slides.coords import no_tissue, plan_slide, qc_path, record_problems
from metastat.slides.encoders import TileEncoder, create_encoder
from metastat.slides.extract import embed_grid
from metastat.slides.featurestore import HDF5Store
from metastat.slides.integrity import DecodeLog, capture_decoder_reports
from metastat.slides.reader import SlideReader, open_slide
from metastat.slides.results import SlideJob, SlideResult, Status
from metastat.slides.stain import StainNormaliser
from metastat.slides.store import read_marker
from metastat.slides.tiling import TilingConfig, reference_colours
from metastat.slides.tissue import TissueConfig

__all__ = ["ProcessConfig", "SlideJob", "SlideResult", "Status", "process_slide", "qc_path"]


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
    checksums: ChecksumMode = Field("auto", description="check slide files against digests")
    stain: str | None = Field(
        None, description="fitted stain normaliser as JSON (StainNormaliser.to_json); None: off"
    )

    @field_validator("stain", mode="before")
    @classmethod
    def _stain_json(cls, value: object) -> str | None:
        """A fitted :class:`StainNormaliser` or its JSON, kept as canonical JSON ("none": None)."""
        if value is None:
            return None
        try:
            if isinstance(value, StainNormaliser):
                norm = value
            else:
                norm = StainNormaliser.from_json(str(value))
            text = norm.to_json()
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"stain: not a fitted stain normaliser ({exc})") from exc
        return None if norm.name == "none" else text

    def stain_normaliser(self) -> StainNormaliser:
        """The fitted stain normaliser applied to every tile (``"none"``: identity)."""
        return StainNormaliser.from_json(self.stain) if self.stain else StainNormaliser("none", {})

    def fingerprint(self) -> str:
        """Hash of the settings that determine the features (not device or batching)."""
        key = {
            "tiling": self.tiling.model_dump(),
            "tissue": self.tissue.model_dump(),
            "encoder": self.encoder,
            "weights": weights_digest(self.encoder_weights),  # identity, not file name
            "encoder_input_px": self.encoder_input_px,
        }
        if self.stain is not None:  # absent when off: earlier runs' fingerprints stay valid
            key["stain"] = self.stain_normaliser().digest()
        return settings_digest(key)


def feature_store(out_dir: Path) -> HDF5Store:
    """The run's feature store (``OUT/features``, one bag per slide)."""
    return HDF5Store(out_dir / "features")


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


def resume_features(out_dir: Path, slide_id: str, fingerprint: str) -> SlideResult | None:
    """The outcome of an earlier run with the same settings (valid marker), if any."""
    features = feature_store(out_dir)
    if not features.is_complete(slide_id, fingerprint=fingerprint):
        return None
    fpath = features.path_for(slide_id)
    marker = read_marker(fpath) or {}
    r = SlideResult(slide_id, "done", n_tiles=int(marker.get("n_tiles", 0)), resumed=True)
    r.feature_file = str(fpath)
    try:
        with h5py.File(fpath, "r") as h5:
            r.status = str(h5.attrs.get("status", "done"))  # type: ignore[assignment]
            r.counts = json.loads(str(h5.attrs.get("counts", "{}")))
            r.message = str(h5.attrs["message"]) if "message" in h5.attrs else None
    except (OSError, ValueError):
        pass
    return r


def embed_slide(job: SlideJob, out_dir: Path, config: ProcessConfig, result: SlideResult) -> None:
    """Tissue, tiles, checked reads and embeddings of one slide into a feature file."""
    log = DecodeLog()
    threads_before = torch.get_num_threads()
    if config.torch_threads is not None:  # same threads -> same float reduction order
        torch.set_num_threads(config.torch_threads)
    try:
        with (
            capture_decoder_reports(log),
            open_slide(
                job.path, mpp_override=job.mpp_override, mpp_fallback=job.mpp_fallback
            ) as slide,
        ):
            _embed(job, out_dir, config, result, slide, log)
    finally:
        torch.set_num_threads(threads_before)


def _embed(
    job: SlideJob,
    out_dir: Path,
    config: ProcessConfig,
    result: SlideResult,
    slide: SlideReader,
    log: DecodeLog,
) -> None:
    mask, grid = plan_slide(slide, job, out_dir, config, result, log)
    if len(grid) == 0:
        raise no_tissue(job, mask, config.tiling)
    encoder = cached_encoder(config)
    stain = config.stain_normaliser()
    feats, ok = embed_grid(
        slide,
        grid,
        encoder,
        batch_size=config.batch_size,
        threads=config.read_threads,
        prefetch=config.prefetch_batches,
        references=reference_colours(mask, grid),
        log=log,
        transform=None if stain.name == "none" else stain.normalise_batch,
    )
    record_problems(result, log, len(grid), config.max_unreadable_fraction)
    meta = slide.safe_metadata()
    path = feature_store(out_dir).write(
        job.slide_id,
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
            "n_unreadable_tiles": result.n_unreadable,
            "status": result.status,
            "counts": json.dumps(result.counts),
            "message": result.message,
            "fingerprint": config.fingerprint(),
            **stain.feature_attrs(),
        },
        fingerprint=config.fingerprint(),
    )
    result.n_tiles = int(ok.sum())
    result.feature_file = str(path)


def process_slide(
    job: SlideJob, out_dir: str | Path, config: ProcessConfig, *, timeout: float | None = None
) -> SlideResult:
    """Process one slide; finished slides (valid marker, same settings) are resumed."""
    from metastat.slides.execute import run_slide

    return run_slide(job, out_dir, config, timeout=timeout)


def run_metadata() -> dict[str, Any]:
    """Versions recorded in the run summary."""
    import platform

    return {
        "metastat_version": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
