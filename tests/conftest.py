"""Shared fixtures: small synthetic cohorts with a planted signal (format tests only) and paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def planted_cohort(
    n: int = 120, n_genes: int = 40, seed: int = 0, signal: float = 1.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Expression (log2-like) and clinical tables where genes G0..G4 drive the hazard."""
    rng = np.random.default_rng(seed)
    x = rng.normal(8.0, 1.0, size=(n, n_genes))
    lp = signal * (x[:, :5].mean(axis=1) - 8.0) * 2
    t_event = rng.exponential(30 * np.exp(-lp))
    t_cens = rng.uniform(10, 80, n)
    time = np.minimum(t_event, t_cens)
    event = (t_event <= t_cens).astype(int)
    ids = [f"S{i:03d}" for i in range(n)]
    expr = pd.DataFrame(
        x, index=pd.Index(ids, name="sample_id"), columns=[f"G{j}" for j in range(n_genes)]
    )
    clin = pd.DataFrame(
        {
            "months": time.round(2),
            "relapse": event,
            "patient": [f"P{i // 2:03d}" for i in range(n)],
        },
        index=pd.Index(ids, name="sample_id"),
    )
    return expr, clin


@pytest.fixture
def planted_files(tmp_path: Path) -> tuple[Path, Path]:
    expr, clin = planted_cohort()
    e, c = tmp_path / "expr.csv", tmp_path / "clin.tsv"
    expr.to_csv(e)
    clin.to_csv(c, sep="\t")
    return e, c


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small timm model saved locally: a fast tile encoder, loadable in worker processes."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    p = tmp_path_factory.mktemp("w") / "test_efficientnet.safetensors"
    save_file(timm.create_model("test_efficientnet", num_classes=0).state_dict(), p)
    return p


def run_main(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:
    """Run ``metastat ARGV`` in-process as the console script does; (exit code, stderr)."""
    import sys

    from metastat.cli.main import main

    monkeypatch.setattr(sys, "argv", ["metastat", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0), capsys.readouterr().err


def wait_job(client: Any, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll a portal slide job (a TestClient) until it is done or failed."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
