"""Process hygiene: a killed run leaves no worker behind and resumes; a slide that runs past
``--slide-timeout`` fails alone, whether it is stuck in Python or in native code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from metastat.slides.coords import TileConfig
from metastat.slides.execute import run_slide
from metastat.slides.results import SlideJob
from metastat.slides.runner import run_cohort
from metastat.slides.synthetic import write_synthetic_slide

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only")


class SlowPath(os.PathLike):
    """A path whose opening hangs for a minute, like a decoder stuck on a damaged file."""

    def __fspath__(self) -> str:
        time.sleep(60)
        return "/nonexistent"


class StuckPath(os.PathLike):
    """Hangs where no Python signal handler runs (as in native code): only a kill stops it."""

    def __fspath__(self) -> str:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)
        return "/nonexistent"


def _session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def test_sigkill_of_the_main_process_leaves_no_worker_and_the_rerun_resumes(
    tmp_path: Path,
) -> None:
    d = tmp_path / "in"
    for i in range(6):
        write_synthetic_slide(d / f"s{i}.tiff", size_px0=(6144, 6144), mpp=0.25, seed=i, levels=4)
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).with_name("metastat")), "slides", "tile", str(d), "--out",
           str(out), "--workers", "2", "--tile-size-px", "128", "--target-mpp", "0.25"]  # fmt: skip
    main = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    summary_file = out / "run_summary.json"
    deadline = time.monotonic() + 240
    finished: list[dict] = []
    while time.monotonic() < deadline and not finished:
        time.sleep(0.2)
        if summary_file.is_file():
            finished = json.loads(summary_file.read_text())["slides"]
    assert finished, "no slide finished within 240 s"
    workers = psutil.Process(main.pid).children(recursive=True)
    assert workers, "the run should have worker processes"
    main.send_signal(signal.SIGKILL)
    main.wait()
    time.sleep(10)
    left = _session_processes(main.pid)
    assert left == [], [p.cmdline() for p in left]
    summary = json.loads(summary_file.read_text())  # valid JSON: rewritten atomically
    assert not summary["complete"] and summary["pending"] == 6 - len(summary["slides"])
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    final = json.loads(summary_file.read_text())
    assert final["complete"] and final["done"] == 6 and final["failed"] == 0
    resumed = {s["slide_id"] for s in final["slides"] if s["resumed"]}
    assert {s["slide_id"] for s in summary["slides"]} <= resumed
    print(f"killed with {len(summary['slides'])} of 6 slides finished and {len(workers)} "
          f"workers; 10 s later {len(left)} left; re-run resumed {len(resumed)}")  # fmt: skip


def test_slide_timeout_in_a_worker_fails_only_that_slide(tmp_path: Path) -> None:
    good = write_synthetic_slide(tmp_path / "good.tiff", size_px0=(1024, 1024), levels=2)
    jobs = [
        SlideJob(SlowPath(), "slow"),  # type: ignore[arg-type]
        SlideJob(StuckPath(), "stuck"),  # type: ignore[arg-type]
        SlideJob(good, "good"),
    ]
    t0 = time.monotonic()
    s = run_cohort(jobs, tmp_path / "out", TileConfig(), workers=2, progress=False, slide_timeout=2)
    elapsed = time.monotonic() - t0
    by_id = {r["slide_id"]: r for r in s.slides}
    assert by_id["good"]["status"] == "done"
    for sid in ("slow", "stuck"):
        assert by_id[sid]["status"] == "failed"
        assert by_id[sid]["error_type"] == "SlideTimeoutError"
        assert "--slide-timeout" in by_id[sid]["message"]
    assert elapsed < 45  # 2 s limit (+5 s grace for the stuck one), not 60 s of sleep


def test_slide_timeout_in_process(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = run_slide(SlideJob(SlowPath(), "slow"), tmp_path, TileConfig(), timeout=1)  # type: ignore[arg-type]
    assert r.status == "failed" and r.error_type == "SlideTimeoutError"
    assert time.monotonic() - t0 < 10
