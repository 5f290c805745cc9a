"""Cohort runs: find slides (folder or manifest), run a task on each (coordinates only or
features) in worker processes or on a Dask cluster, and keep ``run_summary.json`` current."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metastat.atomic import atomic_write
from metastat.errors import InputError
from metastat.slides.gdc import is_gdc_manifest, read_gdc_manifest
from metastat.slides.results import SlideJob, SlideResult

if TYPE_CHECKING:
    from metastat.slides.coords import TileConfig
    from metastat.slides.pipeline import ProcessConfig

#: File extensions OpenSlide / tiffslide read (DICOM folders: list the .dcm file in a manifest).
SLIDE_EXTENSIONS = frozenset(
    {
        ".svs",
        ".tif",
        ".tiff",
        ".ndpi",
        ".vms",
        ".vmu",
        ".scn",
        ".mrxs",
        ".svslide",
        ".bif",
        ".dcm",
        ".qptiff",
    }
)
MANIFEST_EXTENSIONS = frozenset({".csv", ".tsv"})
PSEUDONYM_ENV = "METASTAT_PSEUDONYM_KEY"


def pseudonym(slide_id: str, key: str) -> str:
    """Stable, non-reversible id for ``slide_id`` (HMAC-SHA256 with a secret ``key``)."""
    digest = hmac.new(key.encode(), slide_id.encode(), hashlib.sha256).hexdigest()
    return f"slide-{digest[:16]}"


def _job(
    path: Path, slide_id: str, mpp: float | None, fallback: float | None, key: str | None
) -> SlideJob:
    if key is None:
        return SlideJob(path, slide_id, mpp_override=mpp, mpp_fallback=fallback)
    redact = (str(path), path.name, path.stem, slide_id)
    return SlideJob(path, pseudonym(slide_id, key), mpp, fallback, redact)


def discover_slides(
    source: str | os.PathLike[str],
    *,
    mpp_fallback: float | None = None,
    pseudonym_key: str | None = None,
    checksum_manifest: str | os.PathLike[str] | None = None,
) -> list[SlideJob]:
    """Slides of a folder (by extension, not recursive), a manifest CSV/TSV, a GDC download
    manifest (:mod:`metastat.slides.gdc`), or one file.

    A manifest has a ``path`` column (relative paths are relative to the manifest), and may have
    ``slide_id``, ``mpp`` (a per-slide µm/px override) and ``md5`` / ``sha256`` columns. Known
    digests (see :mod:`metastat.slides.checksums`) are attached to the jobs.
    """
    src = Path(source)
    if src.is_dir():
        files = sorted(
            p
            for p in src.iterdir()
            if p.suffix.lower() in SLIDE_EXTENSIONS and not p.name.startswith(".")
        )
        if not files:
            raise InputError(
                f"no slide files in '{src}' (looked for {', '.join(sorted(SLIDE_EXTENSIONS))}): "
                "pass the folder holding the slides, a manifest CSV with a 'path' column, or "
                "one slide file"
            )
        jobs = [_job(p, p.stem, None, mpp_fallback, pseudonym_key) for p in files]
    elif is_gdc_manifest(src):  # what gdc-client downloads: <dir>/<id>/<filename> + md5
        jobs = [
            replace(
                _job(g.path, g.slide_id, None, mpp_fallback, pseudonym_key), checksum=g.checksum
            )
            for g in read_gdc_manifest(src, SLIDE_EXTENSIONS)
        ]
    elif src.is_file() and src.suffix.lower() in MANIFEST_EXTENSIONS:
        jobs = _read_manifest(src, mpp_fallback, pseudonym_key)
    elif src.is_file():
        jobs = [_job(src, src.stem, None, mpp_fallback, pseudonym_key)]
    else:
        raise InputError(
            f"'{src}' does not exist: pass a folder of slides, a manifest CSV, or a slide file"
        )
    ids = [j.slide_id for j in jobs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(
            f"duplicate slide ids {dupes[:5]} in '{src}': outputs are named by slide id; give "
            "each slide a unique 'slide_id' column in a manifest or rename the files"
        )
    from metastat.slides.checksums import attach_checksums

    return attach_checksums(jobs, checksum_manifest)


def _read_manifest(path: Path, fallback: float | None, key: str | None) -> list[SlideJob]:
    import pandas as pd

    from metastat.slides.checksums import ALGORITHMS, parse_digest

    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        df = pd.read_csv(path, sep=sep)
    except Exception as exc:
        raise InputError(f"cannot read manifest '{path}': {exc}") from exc
    if "path" not in df.columns:
        raise InputError(
            f"manifest '{path}' has no 'path' column (columns: {list(df.columns)}): add one "
            "with each slide's file path (relative to the manifest or absolute)"
        )
    jobs = []
    for row_no, row in enumerate(df.itertuples(index=False), start=2):
        p = Path(str(row.path))
        p = p if p.is_absolute() else (path.parent / p)
        sid = str(getattr(row, "slide_id", "") or "").strip() or p.stem
        if sid == "nan":
            sid = p.stem
        mpp = getattr(row, "mpp", None)
        try:
            mpp_val = None if mpp is None or pd.isna(mpp) else float(mpp)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"manifest '{path}' line {row_no}: mpp {mpp!r} is not a number (µm/px, e.g. 0.25)"
            ) from exc
        job = _job(p, sid, mpp_val, fallback, key)
        where = f"manifest '{path.name}' line {row_no}"
        digest = next(
            (d for a in ALGORITHMS if (d := parse_digest(a, getattr(row, a, None), where))), None
        )
        jobs.append(replace(job, checksum=digest) if digest else job)
    return jobs


@dataclass
class RunSummary:
    """What a cohort run did; written as ``run_summary.json`` after every slide.

    ``slides[]`` holds one record per slide finished so far (``slide_id``, ``status`` =
    ``done | degraded | failed``, ``counts``, ``message``, ``resumed`` ...).
    """

    out_dir: str
    task: str
    n_slides: int
    done: int
    degraded: int
    failed: int
    resumed: int
    pending: int
    tiles: int
    seconds: float
    scheduler: str
    config: dict[str, Any]
    versions: dict[str, Any]
    complete: bool = False
    slides: list[dict[str, Any]] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Slides reused from an earlier run (same as ``resumed``)."""
        return self.resumed

    @property
    def tiles_per_s(self) -> float:
        """Tiles of this run's new slides per second of wall time."""
        return self.tiles / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> str:
        """The summary as JSON."""
        d = dict(self.__dict__)
        d["tiles_per_s"] = round(self.tiles_per_s, 2)
        return json.dumps(d, indent=2, default=str)


def _summary(
    job_list: list[SlideJob],
    results: dict[str, SlideResult],
    out: Path,
    config: Any,
    where: str,
    seconds: float,
    *,
    complete: bool,
) -> RunSummary:
    from metastat.slides.coords import TileConfig

    ordered = [results[j.slide_id] for j in job_list if j.slide_id in results]
    new = [r for r in ordered if not r.resumed and r.status != "failed"]
    return RunSummary(
        out_dir=str(out),
        task="tile" if isinstance(config, TileConfig) else "process",
        n_slides=len(job_list),
        done=sum(r.status == "done" for r in ordered),
        degraded=sum(r.status == "degraded" for r in ordered),
        failed=sum(r.status == "failed" for r in ordered),
        resumed=sum(r.resumed for r in ordered),
        pending=len(job_list) - len(ordered),
        tiles=sum(r.n_tiles for r in new),
        seconds=round(seconds, 3),
        scheduler=where,
        config=config.model_dump(),
        versions=_versions(),
        complete=complete,
        slides=[r.to_dict() for r in ordered],
    )


def _versions() -> dict[str, Any]:
    import platform
    import sys

    from metastat import __version__

    v = {"metastat_version": __version__, "python": platform.python_version()}
    if "torch" in sys.modules:
        v["torch"] = sys.modules["torch"].__version__
    return v


def _progress(total: int, enabled: bool) -> Any:
    import sys

    from tqdm.auto import tqdm

    from metastat.progress import is_quiet

    off = not enabled or is_quiet()
    return tqdm(total=total, unit="slide", disable=off, desc="slides", file=sys.stderr)


def run_local(
    jobs: list[SlideJob],
    out_dir: Path,
    config: Any,
    *,
    workers: int,
    on_result: Callable[[SlideResult], None],
    timeout: float | None = None,
) -> None:
    """Process ``jobs`` on ``workers`` processes (0: in this process).

    Workers die with this process; a worker that dies or runs past ``timeout`` fails only its
    slide and is replaced.
    """
    from metastat.slides.execute import run_slide

    if workers <= 0:
        for job in jobs:
            on_result(run_slide(job, out_dir, config, timeout=timeout))
        return
    from metastat.slides.workers import run_pool

    threads = max(1, (os.cpu_count() or 1) // workers)
    run_pool(
        jobs,
        out_dir,
        config,
        workers=workers,
        timeout=timeout,
        on_result=on_result,
        torch_threads=threads,
    )


def run_cohort(
    jobs: Iterable[SlideJob],
    out_dir: str | os.PathLike[str],
    config: ProcessConfig | TileConfig | None = None,
    *,
    workers: int = 1,
    scheduler: Any = None,
    progress: bool = True,
    slide_timeout: float | None = None,
    on_slide: Callable[[SlideResult], None] | None = None,
) -> RunSummary:
    """Run ``config``'s task (coordinates or features) on every slide; never raises for a slide.

    ``run_summary.json`` is rewritten atomically after every slide, so a killed run leaves a
    valid summary of what finished. ``on_slide`` is called with each result as it arrives.
    """
    if config is None:
        from metastat.slides.pipeline import ProcessConfig

        config = ProcessConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job_list = list(jobs)
    results: dict[str, SlideResult] = {}
    t0 = time.perf_counter()
    if scheduler is not None:
        where = "dask"
    else:
        where = f"local ({workers} worker process{'es' if workers != 1 else ''})"
    bar = _progress(len(job_list), progress)

    def write(complete: bool) -> RunSummary:
        s = _summary(
            job_list, results, out, config, where, time.perf_counter() - t0, complete=complete
        )
        atomic_write(out / "run_summary.json", s.to_json())
        return s

    def on_result(r: SlideResult) -> None:
        results[r.slide_id] = r
        write(complete=False)
        if on_slide is not None:
            on_slide(r)
        bar.update(1)
        bar.set_postfix(failed=sum(x.status == "failed" for x in results.values()))

    write(complete=False)
    try:
        if scheduler is not None:
            from metastat.slides.distributed import run_dask

            run_dask(
                job_list, out, config, scheduler=scheduler, on_result=on_result,
                timeout=slide_timeout,
            )  # fmt: skip
        else:
            run_local(
                job_list, out, config, workers=workers, on_result=on_result, timeout=slide_timeout
            )
    finally:
        bar.close()
    return write(complete=True)
