"""The local process pool survives a worker that dies (e.g. a native crash in a decoder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import timm
from safetensors.torch import save_file

from metastat.slides.pipeline import ProcessConfig, SlideJob
from metastat.slides.runner import run_cohort
from metastat.slides.synthetic import write_synthetic_slide
from metastat.slides.tiling import TilingConfig


class CrashingPath(os.PathLike):
    """A path whose use kills the process, like a segfault in a slide decoder would."""

    def __fspath__(self) -> str:
        os._exit(139)


def test_worker_crash_fails_only_that_slide(tmp_path: Path) -> None:
    weights = tmp_path / "w.safetensors"
    save_file(timm.create_model("test_efficientnet", num_classes=0).state_dict(), weights)
    config = ProcessConfig(
        tiling=TilingConfig(tile_size_px=64, target_mpp=2.0),
        encoder="timm:test_efficientnet",
        encoder_weights=str(weights),
        encoder_input_px=64,
        device="cpu",
        qc=False,
    )
    good = write_synthetic_slide(tmp_path / "good.tiff", size_px0=(1024, 1024), levels=2)
    jobs = [SlideJob(CrashingPath(), "crasher"), SlideJob(good, "good")]  # type: ignore[arg-type]
    summary = run_cohort(jobs, tmp_path / "out", config, workers=1, progress=False)
    by_id = {s["slide_id"]: s for s in summary.slides}
    assert by_id["good"]["status"] == "done" and by_id["good"]["n_tiles"] > 0
    assert by_id["crasher"]["status"] == "failed"
    assert by_id["crasher"]["error_type"] == "WorkerCrashed"
    assert (summary.done, summary.failed) == (1, 1)


if os.name != "posix":  # pragma: no cover
    pytestmark = pytest.mark.skip("spawned-pool crash test is POSIX-only")
