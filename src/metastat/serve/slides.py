"""Slides behind the portal: registration (server path or upload), background jobs, deep zoom.

A slide is known by a keyed pseudonym (``sl-<hash>``) only; its path stays on the server and
never appears in responses or messages. Jobs (state in :mod:`metastat.serve.jobs`, on disk) run
in worker threads: tiles and features through the same runner as ``metastat slides process``
(:func:`metastat.slides.runner.run_cohort`, in this process or on a Dask scheduler), then, with
a MIL checkpoint, the MIL heatmap (scores, top tiles) and the overlay PNG for the viewer.
Deep-zoom tiles come from :class:`metastat.slides.reader.SlideReader` (pyramid only: label and
macro images are never read).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import pandas as pd

from metastat.core.provenance import copy_with_digests
from metastat.errors import InputError, MetastatError, UnknownNameError
from metastat.serve.audit import AuditLog
from metastat.serve.deepzoom import DeepZoom
from metastat.serve.errors import UnsupportedMediaError
from metastat.serve.jobs import Job, JobStore
from metastat.serve.meaning import outcome_event
from metastat.serve.overlay import overlay_rgba, write_overlay
from metastat.serve.registry import ModelEntry, Registry
from metastat.serve.security import confine, load_secret, pseudonym
from metastat.serve.settings import ServeSettings
from metastat.slides.checksums import parse_digest

SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".svslide")
DZ_TILE, DZ_OVERLAP = 254, 1


@dataclass
class SlideRecord:
    """A registered slide: public pseudonym and private location."""

    slide_id: str
    path: Path
    source: Literal["path", "upload"]
    dimensions_px0: tuple[int, int]
    mpp: float | None
    #: ``verified``: the upload matched the digest its sender gave; ``unverified``: none given
    integrity: Literal["verified", "unverified"] = "unverified"

    def public(self) -> dict[str, Any]:
        """What clients may see."""
        return {
            "slide_id": self.slide_id,
            "source": self.source,
            "dimensions_px0": list(self.dimensions_px0),
            "mpp": self.mpp,
            "integrity": self.integrity,
        }

    def private(self) -> dict[str, Any]:
        """What the job record keeps on the server (with the path)."""
        return self.public() | {"path": str(self.path)}

    @classmethod
    def from_private(cls, d: dict[str, Any]) -> SlideRecord:
        """Back from :meth:`private`."""
        dims = (int(d["dimensions_px0"][0]), int(d["dimensions_px0"][1]))
        integrity = d.get("integrity", "unverified")  # absent in records written before
        return cls(d["slide_id"], Path(d["path"]), d["source"], dims, d["mpp"], integrity)


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
        self._dz: OrderedDict[str, DeepZoom] = OrderedDict()
        self._lock = threading.Lock()
        self._client: Any = None
        self._pool = ThreadPoolExecutor(
            max_workers=settings.slide_workers, thread_name_prefix="metastat-slide"
        )
        self.store = JobStore(self.out / "jobs", self.out / "uploads", audit)
        self.store.restore(self._requeue)
        for job in self.store.all():  # finished jobs' slides stay viewable
            record = SlideRecord.from_private(self.store.slide_of(job.job_id))
            if record.path.exists():
                self._slides.setdefault(record.slide_id, record)

    # -- registration -----------------------------------------------------------------------
    def register_path(self, path_text: str) -> SlideRecord:
        """A slide under one of the configured roots."""
        path = confine(path_text, self.settings.slide_roots)
        _check_suffix(path.name)
        return self._register(path, pseudonym(self._key, "sl", str(path)), "path", path_text)

    def register_upload(
        self, stream: IO[bytes], filename: str, expected: Mapping[str, str] | None = None
    ) -> SlideRecord:
        """An uploaded slide, stored under its content pseudonym (the file name is not kept).

        ``expected`` maps ``md5`` / ``sha256`` to the hex digest the sender computed (e.g. the
        GDC manifest's md5): an upload that differs, damaged or cut short in transit, is
        refused and not kept; one that matches is ``verified``."""
        suffix = _check_suffix(filename or "")
        wanted = {}
        for algo, value in (expected or {}).items():
            # malformed hex: refused before anything is stored
            if (digest := parse_digest(algo, value, f"the upload's {algo}")) is not None:
                wanted[algo] = digest[1]
        tmp = self.out / "uploads" / f".{uuid.uuid4().hex}.part"
        algorithms = ("sha256", *sorted(set(wanted) - {"sha256"}))
        try:
            found = copy_with_digests(stream, tmp, algorithms)
            for algo, hex_digest in wanted.items():
                if found[algo] != hex_digest:
                    raise InputError(
                        f"the uploaded slide does not match the {algo} its sender gave: it was "
                        "damaged or cut short in transit; upload it again (nothing was kept)"
                    )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        slide_id = pseudonym(self._key, "sl", found["sha256"])
        final = self.out / "uploads" / f"{slide_id}{suffix}"
        existed = final.exists()  # the same bytes uploaded before: its jobs may still use it
        tmp.replace(final)
        try:
            record = self._register(final, slide_id, "upload", filename)
        except Exception:
            if not existed:
                final.unlink(missing_ok=True)
            raise
        if wanted:
            record.integrity = "verified"
        return record

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
        """Record a queued job for ``record`` (on disk first), then run it in the background."""
        job = Job(uuid.uuid4().hex, record.slide_id, entry.name if entry else None)
        self.store.add(job, record.private())
        self.audit.write(
            "slide_submit", job_id=job.job_id, slide_id=record.slide_id, model=job.model,
            version=entry.version if entry else None, source=record.source, token_id=who,
        )  # fmt: skip
        self._pool.submit(self._run, job, record)
        return job

    def resume(self, job_id: str) -> Job:
        """Queue an interrupted or failed job again."""
        job = self.store.resume(job_id)
        self._requeue(job, self.store.slide_of(job_id))
        return job

    def _requeue(self, job: Job, slide: dict[str, Any]) -> None:
        record = SlideRecord.from_private(slide)
        if record.path.exists():
            with self._lock:
                self._slides.setdefault(record.slide_id, record)
        self._pool.submit(self._run, job, record)

    def job(self, job_id: str) -> Job:
        """A job by id."""
        return self.store.get(job_id)

    def jobs(self) -> list[dict[str, Any]]:
        """All jobs, newest first."""
        return [j.public() for j in self.store.all()]

    def _run(self, job: Job, record: SlideRecord) -> None:
        self.store.update(job, status="running", started=time.time(), runner=self.runner_name)
        try:
            entry = self.registry.get(job.model, "slide") if job.model else None
            result, status, error = self._process(job, record, entry), "done", None
        except MetastatError as exc:
            result, status, error = {}, "failed", str(exc)
        except Exception as exc:  # a job must never take the worker down
            result, status, error = {}, "failed", f"internal error ({type(exc).__name__})"
        self.store.update(job, status=status, error=error, result=result, finished=time.time())
        self.audit.write(
            "slide_result", job_id=job.job_id, slide_id=job.slide_id, model=job.model,
            status=job.status, error=job.error, probability=job.result.get("probability"),
        )  # fmt: skip

    @property
    def runner_name(self) -> str:
        """Where slide features are computed."""
        return f"dask {self.settings.scheduler}" if self.settings.scheduler else "in-process"

    def _scheduler(self) -> Any:
        """The Dask client (made once, on the first job), or None for in-process."""
        if not self.settings.scheduler:
            return None
        with self._lock:
            if self._client is None:
                from metastat.slides.distributed import dask_client

                self._client, _ = dask_client(self.settings.scheduler)
            return self._client

    def _process(self, job: Job, record: SlideRecord, entry: ModelEntry | None) -> dict[str, Any]:
        from metastat.slides.pipeline import SlideJob
        from metastat.slides.runner import run_cohort
        from metastat.slides.store import load_bag

        p = record.path
        if not p.exists():
            raise InputError(f"slide {record.slide_id} is no longer on the server")
        spec = SlideJob(p, record.slide_id, redact=(str(p), p.name, p.stem))
        run = run_cohort(
            [spec], self.out, self.settings.slide_process, workers=0,
            scheduler=self._scheduler(), progress=False,
        )  # fmt: skip
        (res,) = run.slides
        if res["status"] == "failed":
            raise InputError(f"slide {record.slide_id} could not be processed: {res['error']}")
        bag = load_bag(res["feature_file"])
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
        job.files["overlay"] = str(write_overlay(out_dir / "overlay.png", rgba))
        job.files["geojson"] = str(hm.geojson)
        top = table[table["selected"] == "top"].sort_values("rank")
        tiles = []
        for i, row in enumerate(top.itertuples(), start=1):
            job.files[f"tile{i}"] = str(row.crop)
            tiles.append(
                {"rank": int(row.rank), "score": float(row.score),
                 "percentile": float(row.percentile), "x_px0": int(row.x_px0),
                 "y_px0": int(row.y_px0), "size_px0": tile,
                 "url": f"/api/jobs/{job.job_id}/tiles/{i}.png"}
            )  # fmt: skip
        outcome = entry.manifest.get("outcome")
        return {
            "model_version": entry.version,
            "model_note": entry.manifest.get("note"),
            "probability": hm.prob,
            "outcome": outcome,
            "probability_of": outcome_event(outcome) if outcome else None,
            "task": (entry.manifest.get("head") or {}).get("task"),
            "heatmap": {
                "overlay_url": f"/api/jobs/{job.job_id}/overlay.png",
                "geojson_url": f"/api/jobs/{job.job_id}/tiles.geojson",
                "overlay_px": [int(rgba.shape[1]), int(rgba.shape[0])],
                "colour_map": "jet over attention-score percentiles",
            },
            "top_tiles": tiles,
        }

    def job_file(self, job_id: str, key: str) -> Path:
        """A private output file of a finished job (overlay, tiles, GeoJSON)."""
        job = self.job(job_id)
        if key not in job.files or not Path(job.files[key]).exists():
            raise UnknownNameError(f"job {job_id!r} has no {key} output (status {job.status})")
        return Path(job.files[key])

    # -- deep zoom --------------------------------------------------------------------------
    def _deepzoom(self, slide_id: str) -> DeepZoom:
        from metastat.slides.reader import open_slide

        with self._lock:
            if slide_id in self._dz:
                self._dz.move_to_end(slide_id)
                return self._dz[slide_id]
        dz = DeepZoom(open_slide(self.slide(slide_id).path), DZ_TILE, DZ_OVERLAP)
        with self._lock:
            self._dz[slide_id] = dz
            while len(self._dz) > 8:
                self._dz.popitem(last=False)[1].reader.close()
        return dz

    def dzi(self, slide_id: str) -> dict[str, Any]:
        """OpenSeadragon's inline DZI descriptor for ``slide_id``."""
        w, h = self._deepzoom(slide_id).size_px0
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
        try:
            return self._deepzoom(slide_id).jpeg(level, col, row)
        except ValueError as exc:
            raise UnknownNameError(f"no tile {level}/{col}_{row} in slide {slide_id}") from exc

    def close(self) -> None:
        """Stop taking jobs (running ones finish; queued ones stay queued on disk)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()
