"""Worker processes that never outlive their run, and a per-slide time limit.

Each worker is a spawned process that handles one slide at a time over a pipe. It dies with
its parent: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux, and on every platform a watchdog
thread that exits when the parent's pid changes. The parent kills a worker whose slide runs
past the time limit (plus a grace period for the worker's own limit to fire) and starts a fresh
one, and records a worker that dies as that slide's failure only.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from metastat.slides.execute import run_slide, timeout_message
from metastat.slides.results import SlideJob, SlideResult, failed

#: Seconds a worker gets beyond ``--slide-timeout`` before its parent kills it.
KILL_GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Make this process exit when ``parent_pid`` dies (kernel signal + watchdog thread)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker_main(conn: Connection, parent_pid: int, torch_threads: int | None) -> None:
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which cleans up
    if torch_threads is not None:  # read when torch is imported (lazily, by the first slide)
        os.environ["OMP_NUM_THREADS"] = str(torch_threads)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job, out_dir, config, timeout = msg
        conn.send(run_slide(job, out_dir, config, timeout=timeout))


class _Worker:
    def __init__(self, ctx: Any, torch_threads: int | None) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main,
            args=(child, os.getpid(), torch_threads),
            name="metastat-slide-worker",
            daemon=True,
        )
        self.proc.start()
        child.close()
        self.job: SlideJob | None = None
        self.deadline = float("inf")

    def give(self, job: SlideJob, out_dir: Path, config: Any, timeout: float | None) -> None:
        self.job = job
        self.deadline = time.monotonic() + timeout + KILL_GRACE_S if timeout else float("inf")
        self.conn.send((job, out_dir, config, timeout))

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


def _crashed(job: SlideJob, exitcode: int | None) -> SlideResult:
    return failed(
        job,
        "WorkerCrashed",
        f"the worker process died (exit code {exitcode}) while processing slide "
        f"'{job.slide_id}' (a native crash in a decoder or out of memory): check the file, "
        "or run it alone with --workers 1",
    )


def run_pool(
    jobs: list[SlideJob],
    out_dir: Path,
    config: Any,
    *,
    workers: int,
    timeout: float | None,
    on_result: Callable[[SlideResult], None],
    torch_threads: int | None = None,
) -> None:
    """Run ``jobs`` on ``workers`` spawned processes, one slide per worker at a time."""
    ctx = mp.get_context("spawn")
    todo = deque(jobs)
    pool: list[_Worker] = []
    try:
        for _ in range(min(workers, len(todo))):
            pool.append(_Worker(ctx, torch_threads))
        for w in pool:
            if todo:
                w.give(todo.popleft(), out_dir, config, timeout)
        while any(w.job is not None for w in pool):
            busy = [w for w in pool if w.job is not None]
            nearest = min(w.deadline for w in busy) - time.monotonic()
            ready = wait(
                [w.conn for w in busy] + [w.proc.sentinel for w in busy],
                timeout=None if nearest == float("inf") else max(0.0, nearest),
            )
            for i, w in enumerate(pool):
                if w.job is None:
                    continue
                job = w.job
                result: SlideResult | None = None
                replace = False
                if w.conn in ready:
                    try:
                        result = w.conn.recv()
                    except (EOFError, OSError):
                        replace = True
                elif w.proc.sentinel in ready:
                    replace = True
                elif time.monotonic() >= w.deadline:
                    assert timeout is not None
                    result = failed(
                        job, "SlideTimeoutError", timeout_message(job.slide_id, timeout)
                    )
                    replace = True
                else:
                    continue
                w.job = None
                if replace:
                    w.kill()
                if result is None:  # the worker died without answering
                    result = _crashed(job, w.proc.exitcode)
                if replace and todo:
                    w = pool[i] = _Worker(ctx, torch_threads)
                on_result(result)
                if todo:
                    w.give(todo.popleft(), out_dir, config, timeout)
    finally:
        for w in pool:
            if w.job is None:
                with contextlib.suppress(Exception):
                    w.conn.send(None)
            w.proc.join(0.5 if w.job is None else 0)
            if w.proc.is_alive():
                w.kill()
