"""Cohort runs on a Dask cluster (``--scheduler tcp://HOST:8786`` or a LocalCluster)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from metastat.errors import InputError
from metastat.slides.execute import run_slide
from metastat.slides.results import SlideJob, SlideResult, failed


def dask_client(scheduler: Any) -> tuple[Any, bool]:
    """A Dask ``Client`` for ``scheduler`` (an address or a Client) and whether the caller owns
    it (must close it); a missing ``distributed`` or an unreachable scheduler is a one-line
    :class:`~metastat.errors.InputError`."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise InputError(
            "Dask runs need the 'distributed' extra: pip install 'metastat[distributed]', or "
            "drop --scheduler to run in a local process pool"
        ) from exc
    if isinstance(scheduler, Client):
        return scheduler, False
    try:
        return Client(scheduler, timeout="20s"), True
    except OSError as exc:
        raise InputError(
            f"cannot reach the Dask scheduler {scheduler!r}: {exc}. Check the address "
            "(tcp://HOST:8786), that 'dask scheduler' is running and reachable, or run locally"
        ) from exc


def run_dask(
    jobs: list[SlideJob],
    out_dir: Path,
    config: Any,
    *,
    scheduler: Any,
    on_result: Callable[[SlideResult], None],
    timeout: float | None = None,
) -> None:
    """Submit one task per slide; a lost worker fails that slide only.

    The output folder must be shared by all workers (same path on every node).
    """
    from distributed import as_completed

    client, owned = dask_client(scheduler)
    try:
        futures = {
            client.submit(
                run_slide,
                job,
                out_dir,
                config,
                timeout=timeout,
                pure=False,
                key=f"metastat-slide-{job.slide_id}",
                retries=0,
            ): job
            for job in jobs
        }
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                on_result(fut.result())
            except Exception as exc:  # KilledWorker, cancelled, scheduler lost ...
                on_result(failed(job, type(exc).__name__, f"Dask task failed: {exc}"))
            finally:
                fut.release()
    finally:
        if owned:
            client.close()
