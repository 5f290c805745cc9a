"""Slides behind the portal: registration (server path or upload), background jobs, deep zoom.

A slide is known by a keyed pseudonym (``sl-<hash>``) only; its path stays on the server and
never appears in responses or messages. Jobs run one at a time in a worker thread: tiles and
features via :func:`metastat.slides.pipeline.process_slide`, then, with a MIL checkpoint, the
MIL heatmap (scores, top tiles) and the overlay PNG for the viewer. Deep-zoom tiles come from the
slide pyramid only (label and macro images are never read).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import pandas as pd

from metastat.errors import InputError, MetastatError, UnknownNameError
from metastat.serve.audit import AuditLog
from metastat.serve.errors import UnsupportedMediaError
from metastat.serve.overlay import overlay_rgba, write_overlay
from metastat.serve.registry import ModelEntry, Registry
from metastat.serve.security import confine, load_secret, pseudonym
from metastat.serve.settings import ServeSettings

SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".svslide")
DZ_TILE, DZ_OVERLAP = 254, 1
JobStatus = Literal["queued", "running", "done", "failed"]


@dataclass
class SlideRecord:
    """A registered slide: public pseudonym and private location."""

    slide_id: str
    path: Path
    source: Literal["path", "upload"]
    dimensions_px0: tuple[int, int]
    mpp: float | None

    def public(self) -> dict[str, Any]:
        """What clients may see."""
        return {
            "slide_id": self.slide_id,
            "source": self.source,
            "dimensions_px0": list(self.dimensions_px0),
            "mpp": self.mpp,
        }


@dataclass
class Job:
    """One slide-scoring job."""

    job_id: str
    slide_id: str
    model: str | None
    status: JobStatus = "queued"
    created: float = field(default_factory=time.time)
    finished: float | None = None
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # private: overlay, crops, geojson

    def public(self) -> dict[str, Any]:
        """Status and results (no paths)."""
        return {
            "job_id": self.job_id,
            "slide_id": self.slide_id,
            "model": self.model,
            "status": self.status,
            "created": self.created,
            "finished": self.finished,
            "error": self.error,
            "result": self.result,
        }


def _check_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in SLIDE_SUFFIXES:
        raise UnsupportedMediaError(
            f"unsupported slide format {suffix or '(none)'!r}; allowed: {', '.join(SLIDE_SUFFIXES)}"
        )
    return suffix


class SlideService:
    """Slides, jobs and deep-zoom generators of one running service."""

    def __init__(self, settings: ServeSettings, registry: Registry, audit: AuditLog) -> None:
        self.settings, self.registry, self.audit = settings, registry, audit
        self.out = settings.data_dir / "slides"
        (self.out / "uploads").mkdir(parents=True, exist_ok=True)
        self._key = load_secret(settings.data_dir)
        self._slides: dict[str, SlideRecord] = {}
        self._jobs: dict[str, Job] = {}
        self._dz: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metastat-slide")
        self._restore()

    # -- registration -----------------------------------------------------------------------
    def register_path(self, path_text: str) -> SlideRecord:
        """A slide under one of the configured roots."""
        path = confine(path_text, self.settings.slide_roots)
        _check_suffix(path.name)
        return self._register(path, pseudonym(self._key, "sl", str(path)), "path", path_text)

    def register_upload(self, stream: IO[bytes], filename: str) -> SlideRecord:
        """An uploaded slide, stored under its content pseudonym (the file name is not kept)."""
        suffix = _check_suffix(filename or "")
        tmp = self.out / "uploads" / f".{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        with open(tmp, "wb") as fh:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                fh.write(chunk)
        slide_id = pseudonym(self._key, "sl", digest.hexdigest())
        final = self.out / "uploads" / f"{slide_id}{suffix}"
        tmp.replace(final)
        try:
            return self._register(final, slide_id, "upload", filename)
        except InputError:
            final.unlink(missing_ok=True)
            raise

    def _register(self, path: Path, slide_id: str, source: Any, shown: str) -> SlideRecord:
        from metastat.slides import open_slide

        try:
            with open_slide(path) as reader:
                dims = reader.dimensions_px0
                mpp = float(reader.mpp) if reader.has_mpp else None
        except MetastatError as exc:
            msg = str(exc).replace(str(path), slide_id).replace(path.name, slide_id)
            raise InputError(f"cannot open slide {slide_id}: {msg}") from exc
        record = SlideRecord(slide_id, path, source, dims, mpp)
        with self._lock:
            self._slides[slide_id] = record
        return record

    def slide(self, slide_id: str) -> SlideRecord:
        """A registered slide by pseudonym."""
        with self._lock:
            if slide_id not in self._slides:
                raise UnknownNameError(f"unknown slide {slide_id!r}; submit it first")
            return self._slides[slide_id]

    def slides(self) -> list[dict[str, Any]]:
        """All registered slides (public view)."""
        with self._lock:
            return [s.public() for s in self._slides.values()]

    # -- jobs -------------------------------------------------------------------------------
    def mil_model(self, name: str | None) -> ModelEntry | None:
        """The named MIL checkpoint, the default one, or None (features only)."""
        entry = self.registry.get(name, "slide") if name else self.registry.first("slide")
        enc = self.settings.slide_process.encoder
        if entry is not None and entry.model.encoder and entry.model.encoder != enc:
            raise InputError(
                f"MIL model {entry.name!r} was trained on {entry.model.encoder!r} features but "
                f"this service extracts {enc!r} features"
            )
        return entry

    def submit(self, record: SlideRecord, entry: ModelEntry | None, who: str) -> Job:
        """Queue a job for ``record`` and return it."""
        job = Job(uuid.uuid4().hex, record.slide_id, entry.name if entry else None)
        with self._lock:
            self._jobs[job.job_id] = job
        self.audit.write(
            "slide_submit", job_id=job.job_id, slide_id=record.slide_id, model=job.model,
            version=entry.version if entry else None, source=record.source, token_id=who,
        )  # fmt: skip
        self._pool.submit(self._run, job, record, entry)
        return job

    def job(self, job_id: str) -> Job:
        """A job by id."""
        with self._lock:
            if job_id not in self._jobs:
                raise UnknownNameError(f"unknown job {job_id!r}")
            return self._jobs[job_id]

    def jobs(self) -> list[dict[str, Any]]:
        """All jobs, newest first."""
        with self._lock:
            return [j.public() for j in sorted(self._jobs.values(), key=lambda j: -j.created)]

    def _run(self, job: Job, record: SlideRecord, entry: ModelEntry | None) -> None:
        job.status = "running"
        try:
            job.result = self._process(job, record, entry)
            job.status = "done"
        except MetastatError as exc:
            job.error, job.status = str(exc), "failed"
        except Exception as exc:  # a job must never take the worker down
            job.error, job.status = f"internal error ({type(exc).__name__})", "failed"
        job.finished = time.time()
        self._save(job, record)
        self.audit.write(
            "slide_result", job_id=job.job_id, slide_id=job.slide_id, model=job.model,
            status=job.status, error=job.error, probability=job.result.get("probability"),
        )  # fmt: skip

    def _process(self, job: Job, record: SlideRecord, entry: ModelEntry | None) -> dict[str, Any]:
        from metastat.slides.pipeline import SlideJob, process_slide
        from metastat.slides.store import load_bag

        p = record.path
        spec = SlideJob(p, record.slide_id, redact=(str(p), p.name, p.stem))
        res = process_slide(spec, self.out, self.settings.slide_process)
        if res.status == "failed":
            raise InputError(f"slide {record.slide_id} could not be processed: {res.error}")
        bag = load_bag(res.feature_file)
        out: dict[str, Any] = {"n_tiles": bag.n_tiles, "tile_size_px0": bag.tile_size_px0}
        if entry is None:
            return out | {"note": "no MIL model in the models directory: features only"}
        return out | self._heatmap(job, record, entry, bag)

    def _heatmap(self, job: Job, record: SlideRecord, entry: ModelEntry, bag: Any) -> dict:
        from metastat.mil.heatmap import slide_heatmap

        out_dir = self.out / "jobs" / job.job_id
        hm = slide_heatmap(
            entry.model, slide_id=record.slide_id, features=bag.features,
            coords=bag.coords_px0, tile_size_px0=bag.tile_size_px0, out_dir=out_dir,
            slide_path=record.path, k=self.settings.top_tiles, encoder=bag.encoder,
        )  # fmt: skip
        table = pd.read_csv(hm.tiles_csv).sort_values("tile")
        tile = int(bag.tile_size_px0 or 256)
        coords = table[["x_px0", "y_px0"]].to_numpy()
        rgba = overlay_rgba(coords, tile, table["score"].to_numpy(), record.dimensions_px0)
        job.files["overlay"] = write_overlay(out_dir / "overlay.png", rgba)
        job.files["geojson"] = hm.geojson
        top = table[table["selected"] == "top"].sort_values("rank")
        tiles = []
        for i, row in enumerate(top.itertuples(), start=1):
            job.files[f"tile{i}"] = Path(str(row.crop))
            tiles.append(
                {"rank": int(row.rank), "score": float(row.score),
                 "percentile": float(row.percentile), "x_px0": int(row.x_px0),
                 "y_px0": int(row.y_px0), "size_px0": tile,
                 "url": f"/api/jobs/{job.job_id}/tiles/{i}.png"}
            )  # fmt: skip
        return {
            "model_version": entry.version,
            "model_note": entry.manifest.get("note"),
            "probability": hm.prob,
            "heatmap": {
                "overlay_url": f"/api/jobs/{job.job_id}/overlay.png",
                "geojson_url": f"/api/jobs/{job.job_id}/tiles.geojson",
                "overlay_px": [int(rgba.shape[1]), int(rgba.shape[0])],
                "colour_map": "jet over attention-score percentiles",
            },
            "top_tiles": tiles,
        }

    # -- persistence: finished jobs survive a restart ----------------------------------------
    def _save(self, job: Job, record: SlideRecord) -> None:
        from metastat.atomic import atomic_write

        folder = self.out / "jobs" / job.job_id
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            "job": job.public() | {"files": {k: str(v) for k, v in job.files.items()}},
            "slide": {**record.public(), "path": str(record.path)},  # server-side only
        }
        atomic_write(folder / "job.json", json.dumps(state, default=str))

    def _restore(self) -> None:
        for path in sorted((self.out / "jobs").glob("*/job.json")):
            try:
                state = json.loads(path.read_text())
                j, sl = state["job"], state["slide"]
                record = SlideRecord(
                    sl["slide_id"], Path(sl["path"]), sl["source"], tuple(sl["dimensions_px0"]),
                    sl["mpp"],
                )  # fmt: skip
                files = {k: Path(v) for k, v in j.pop("files").items()}
                job = Job(**j, files=files)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged record is skipped; its outputs stay on disk
            if record.path.exists():
                self._slides[record.slide_id] = record
            self._jobs[job.job_id] = job

    def job_file(self, job_id: str, key: str) -> Path:
        """A private output file of a finished job (overlay, tiles, GeoJSON)."""
        job = self.job(job_id)
        if key not in job.files or not job.files[key].exists():
            raise UnknownNameError(f"job {job_id!r} has no {key} output (status {job.status})")
        return job.files[key]

    # -- deep zoom --------------------------------------------------------------------------
    def _generator(self, slide_id: str) -> Any:
        from openslide.deepzoom import DeepZoomGenerator

        with self._lock:
            if slide_id in self._dz:
                self._dz.move_to_end(slide_id)
                return self._dz[slide_id]
        path = self.slide(slide_id).path
        try:
            import openslide

            obj: Any = openslide.OpenSlide(str(path))
        except Exception:  # formats only tiffslide reads
            import tiffslide

            obj = tiffslide.TiffSlide(path)
        dz = DeepZoomGenerator(obj, tile_size=DZ_TILE, overlap=DZ_OVERLAP, limit_bounds=False)
        with self._lock:
            self._dz[slide_id] = dz
            while len(self._dz) > 8:
                self._dz.popitem(last=False)
        return dz

    def dzi(self, slide_id: str) -> dict[str, Any]:
        """OpenSeadragon's inline DZI descriptor for ``slide_id``."""
        w, h = self._generator(slide_id).level_dimensions[-1]
        return {
            "Image": {
                "xmlns": "http://schemas.microsoft.com/deepzoom/2008",
                "Url": f"/api/slides/{slide_id}/dz/",
                "Format": "jpeg",
                "Overlap": str(DZ_OVERLAP),
                "TileSize": str(DZ_TILE),
                "Size": {"Width": str(w), "Height": str(h)},
            }
        }

    def dz_tile(self, slide_id: str, level: int, col: int, row: int) -> bytes:
        """One JPEG deep-zoom tile."""
        dz = self._generator(slide_id)
        try:
            tile = dz.get_tile(level, (col, row))
        except ValueError as exc:
            raise UnknownNameError(f"no tile {level}/{col}_{row} in slide {slide_id}") from exc
        buf = io.BytesIO()
        tile.convert("RGB").save(buf, format="JPEG", quality=80)
        return buf.getvalue()

    def close(self) -> None:
        """Stop the worker (running jobs finish)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
