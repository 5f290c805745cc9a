"""``metastat slides ...`` as a user types it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metastat.cli.main import app
from metastat.slides import list_bags, load_bag
from tests.conftest import run_main as _main

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
runner = CliRunner()


def test_process_real_slide_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "slides",
            "process",
            str(DATA / "slides"),
            "--out",
            str(out),
            "--workers",
            "0",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "done 1" in res.output
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["done"] == 1 and summary["tiles"] > 30
    bag = load_bag(list_bags(out / "features")[0])
    assert bag.features.shape[1] == 1280 and bag.mpp == pytest.approx(0.499)
    assert (out / "qc" / "CMU-1-Small-Region.png").stat().st_size > 10_000
    again = runner.invoke(
        app,
        [
            "slides",
            "process",
            str(DATA / "slides"),
            "--out",
            str(out),
            "--workers",
            "0",
            "--no-progress",
        ],
    )
    assert "resumed (already finished) 1" in again.output


def test_info_and_encoders() -> None:
    res = runner.invoke(app, ["slides", "info", str(DATA / "slides" / "CMU-1-Small-Region.svs")])
    assert res.exit_code == 0 and "mpp: 0.499" in res.output and "level 0: 2220x2967" in res.output
    assert "Aperio Image Library" not in res.output  # no raw vendor properties
    res = runner.invoke(app, ["slides", "encoders"])
    assert "efficientnet_lite0" in res.output and "uni" in res.output


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("metastat")
    return subprocess.run(
        [str(exe), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "o")
    code, err = _main(
        ["slides", "process", str(tmp_path / "missing"), "--out", out], capsys, monkeypatch
    )
    assert code == 2 and err.startswith("error: ") and "does not exist" in err
    assert err.count("\n") == 1
    code, err = _main(
        ["slides", "process", str(DATA / "slides"), "--out", out, "--encoder", "efficientnet_lite"],
        capsys,
        monkeypatch,
    )
    assert code == 2 and "Did you mean 'efficientnet_lite0'" in err
    monkeypatch.setenv("METASTAT_PSEUDONYM_KEY", "")
    code, err = _main(
        ["slides", "process", str(DATA / "slides"), "--out", out, "--pseudonymise"],
        capsys,
        monkeypatch,
    )
    assert code == 2 and "METASTAT_PSEUDONYM_KEY" in err


def test_shipped_slides_exactly_as_documented(tmp_path: Path) -> None:
    """docs/slides.md: `metastat slides process tests/data/slides --out DIR` from the repo root
    (the shipped CMU-1 region; a slide without µm/px is covered in test_slides_pipeline)."""
    out = tmp_path / "DIR"
    r = _cli("slides", "process", "tests/data/slides", "--out", str(out), cwd=REPO)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "run_summary.json").read_text())
    by_id = {s["slide_id"]: s for s in summary["slides"]}
    assert by_id["CMU-1-Small-Region"]["status"] == "done"
    assert (out / "features" / "CMU-1-Small-Region.h5").is_file()
    shutil.rmtree(out)
