"""One slide, any task, never raising: resume, per-slide lock, time limit, error capture.

:func:`run_slide` is what every scheduler (in process, worker processes, Dask, the portal)
calls. The task follows from the config: :class:`~metastat.slides.coords.TileConfig` writes
coordinates only, :class:`~metastat.slides.pipeline.ProcessConfig` also embeds the tiles.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metastat.errors import MetastatError
from metastat.slides.checksums import verify_checksum
from metastat.slides.errors import SlideLockedError, SlideTimeoutError
from metastat.slides.results import SlideJob, SlideResult

if TYPE_CHECKING:
    from metastat.slides.coords import TileConfig
    from metastat.slides.pipeline import ProcessConfig

LOCK_DIR = "locks"


@contextlib.contextmanager
def slide_lock(out_dir: Path, slide_id: str) -> Iterator[None]:
    """Hold ``DIR/locks/<slide_id>.lock`` exclusively, or raise :class:`SlideLockedError`.

    An ``flock`` lock: the kernel drops it when its process dies, so no stale locks remain.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no cross-run lock
        yield
        return
    path = out_dir / LOCK_DIR / f"{slide_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise SlideLockedError(
                f"slide '{slide_id}' is being computed by another run (pid {holder}) in "
                f"'{out_dir}': wait for it to finish, then re-run to pick the slide up"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def time_limit(seconds: float | None, slide_id: str) -> Iterator[None]:
    """Raise :class:`SlideTimeoutError` in this (main) thread after ``seconds``.

    Python-level work is interrupted; a worker stuck in native code is killed by its parent.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise SlideTimeoutError(timeout_message(slide_id, seconds))

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def timeout_message(slide_id: str, seconds: float) -> str:
    """The message of a slide that ran past ``--slide-timeout``."""
    return (
        f"slide '{slide_id}' took longer than the limit of {seconds:g} s and was stopped: the "
        "file may be damaged (check it with 'metastat slides info'), or raise --slide-timeout"
    )


def _redact(message: str, job: SlideJob) -> str:
    for s in sorted(job.redact, key=len, reverse=True):
        if s:
            message = message.replace(s, job.slide_id)
    return message


def run_slide(
    job: SlideJob,
    out_dir: str | os.PathLike[str],
    config: TileConfig | ProcessConfig,
    *,
    timeout: float | None = None,
) -> SlideResult:
    """Run ``config``'s task on one slide; a problem with the slide gives a failed result."""
    from metastat.slides.coords import TileConfig

    out = Path(out_dir)
    if isinstance(config, TileConfig):
        from metastat.slides.coords import resume, tile_slide

        body = functools.partial(tile_slide, job, out, config)
    else:
        from metastat.slides.pipeline import embed_slide
        from metastat.slides.pipeline import resume_features as resume

        body = functools.partial(embed_slide, job, out, config)
    t0 = time.perf_counter()
    result = SlideResult(job.slide_id, "done")
    try:
        with slide_lock(out, job.slide_id), time_limit(timeout, job.slide_id):
            verify_checksum(job, config.checksums, result)  # before any decode
            previous = resume(out, job.slide_id, config.fingerprint())
            if previous is not None:
                previous.integrity, previous.checksum = result.integrity, result.checksum
                return previous
            body(result)
    except MetastatError as exc:
        result.fail(type(exc).__name__, _redact(str(exc), job))
    except Exception as exc:  # a bug or an unexpected backend failure: record, don't stop
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
        result.fail(
            type(exc).__name__, _redact(f"unexpected {type(exc).__name__}: {exc}{where}", job)
        )
    finally:
        gc.collect()  # release per-slide buffers before the next slide
    if result.message:
        result.message = _redact(result.message, job)
    result.seconds = round(time.perf_counter() - t0, 3)
    return result
