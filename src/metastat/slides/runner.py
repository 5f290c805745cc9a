"""Cohort runs: find slides (folder or manifest), process them in a local process pool or
on a Dask cluster, record every slide's outcome, write ``run_summary.json``."""

from __future__ import annotations

import hashlib
import hmac
import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from metastat.atomic import atomic_write
from metastat.errors import InputError
from metastat.slides.pipeline import ProcessConfig, SlideJob, SlideResult, process_slide

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
) -> list[SlideJob]:
    """Slides of a folder (by extension, not recursive), a manifest CSV/TSV, or one file.

    A manifest has a ``path`` column (relative paths are relative to the manifest), and may have
    ``slide_id`` and ``mpp`` (a per-slide µm/px override) columns.
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
    return jobs


def _read_manifest(path: Path, fallback: float | None, key: str | None) -> list[SlideJob]:
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
        jobs.append(_job(p, sid, mpp_val, fallback, key))
    return jobs


@dataclass
class RunSummary:
    """What a cohort run did; written as ``run_summary.json``."""

    out_dir: str
    n_slides: int
    done: int
    skipped: int
    failed: int
    tiles: int
    seconds: float
    scheduler: str
    config: dict[str, Any]
    versions: dict[str, Any]
    slides: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tiles_per_s(self) -> float:
        """Tiles embedded per second of wall time (this run's new slides)."""
        return self.tiles / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> str:
        """The summary as JSON."""
        d = dict(self.__dict__)
        d["tiles_per_s"] = round(self.tiles_per_s, 2)
        return json.dumps(d, indent=2, default=str)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="slide", disable=not enabled, desc="slides")


def _pool(workers: int) -> ProcessPoolExecutor:
    threads = max(1, (os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(
        workers,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads,),
    )


def _crashed(job: SlideJob) -> SlideResult:
    return SlideResult(
        job.slide_id,
        "failed",
        error_type="WorkerCrashed",
        error="the worker process died while processing this slide (a native crash in a "
        "decoder or out of memory): check the file, or run it alone with --workers 1",
    )


def run_local(
    jobs: list[SlideJob],
    out_dir: Path,
    config: ProcessConfig,
    *,
    workers: int,
    on_result: Callable[[SlideResult], None],
) -> None:
    """Process ``jobs`` in a pool of ``workers`` processes (0: in this process).

    If a worker dies, the unfinished slides are retried one per fresh process, so only the
    slide that kills its process is recorded as failed.
    """
    if workers <= 0:
        for job in jobs:
            on_result(process_slide(job, out_dir, config))
        return
    unfinished: list[SlideJob] = []
    with _pool(workers) as pool:
        futures = {pool.submit(process_slide, j, out_dir, config): j for j in jobs}
        for fut in as_completed(futures):
            try:
                on_result(fut.result())
            except BrokenProcessPool:
                unfinished.append(futures[fut])
    for job in unfinished:
        with _pool(1) as pool:
            try:
                on_result(pool.submit(process_slide, job, out_dir, config).result())
            except BrokenProcessPool:
                on_result(_crashed(job))


def run_cohort(
    jobs: Iterable[SlideJob],
    out_dir: str | os.PathLike[str],
    config: ProcessConfig | None = None,
    *,
    workers: int = 1,
    scheduler: Any = None,
    progress: bool = True,
) -> RunSummary:
    """Process all ``jobs`` (locally or on Dask: ``scheduler`` = address, Client or cluster)."""
    from metastat.slides.pipeline import run_metadata

    cfg = config or ProcessConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job_list = list(jobs)
    results: dict[str, SlideResult] = {}
    bar = _progress(len(job_list), progress)
    t0 = time.perf_counter()

    def on_result(r: SlideResult) -> None:
        results[r.slide_id] = r
        bar.update(1)
        bar.set_postfix(failed=sum(x.status == "failed" for x in results.values()))

    try:
        if scheduler is not None:
            from metastat.slides.distributed import run_dask

            run_dask(job_list, out, cfg, scheduler=scheduler, on_result=on_result)
            where = "dask"
        else:
            run_local(job_list, out, cfg, workers=workers, on_result=on_result)
            where = f"local ({workers} worker process{'es' if workers != 1 else ''})"
    finally:
        bar.close()
    ordered = [results[j.slide_id] for j in job_list if j.slide_id in results]
    summary = RunSummary(
        out_dir=str(out),
        n_slides=len(job_list),
        done=sum(r.status == "done" for r in ordered),
        skipped=sum(r.status == "skipped" for r in ordered),
        failed=sum(r.status == "failed" for r in ordered),
        tiles=sum(r.n_tiles for r in ordered if r.status == "done"),
        seconds=round(time.perf_counter() - t0, 3),
        scheduler=where,
        config=cfg.model_dump(),
        versions=run_metadata(),
        slides=[r.to_dict() for r in ordered],
    )
    atomic_write(out / "run_summary.json", summary.to_json())
    return summary
