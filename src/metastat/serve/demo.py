"""A demo models directory for tests, benchmarks and trying the portal.

Builds, from the bundled ACRG gastric cohort: a CoxNet recurrence model, optionally a
cross-validated evaluation run (results page) and optionally an *untrained* ABMIL checkpoint over
the default slide encoder's features (it exercises heatmaps and top tiles; its attention means
nothing clinically and its manifest says so).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DATASET, OUTCOME = "gastric_acrg", "recurrence"
EXPRESSION_NAME, RUN_NAME, MIL_NAME = "acrg_recurrence", "acrg_cv", "abmil_demo"


def build_expression_model(out: Path, *, model: str = "coxnet", n_genes: int = 2000) -> Path:
    """Fit ``model`` on the whole ACRG cohort and save it to ``out``."""
    from metastat.data.registry import load_dataset
    from metastat.expression.persist import save_model
    from metastat.expression.validate import fit_cohort

    est, info = fit_cohort(load_dataset(DATASET), OUTCOME, model=model, n_genes=n_genes)
    return save_model(est, out, info=info)


def build_run(out: Path, *, model: str = "coxnet", n_splits: int = 3, n_boot: int = 20) -> Path:
    """A cross-validated evaluation run folder (predictions, metrics, run metadata)."""
    from metastat.data.registry import load_dataset
    from metastat.expression.validate import cross_validate

    result = cross_validate(
        load_dataset(DATASET), OUTCOME, model=model, n_splits=n_splits, n_boot=n_boot,
        progress=False,
    )  # fmt: skip
    result.save(out)
    return out


def build_mil_checkpoint(
    out: Path, *, in_dim: int = 1280, encoder: str = "efficientnet_lite0"
) -> Path:
    """An untrained (seeded) ABMIL checkpoint over ``encoder`` features."""
    import torch

    from metastat.mil.checkpoint import save_checkpoint
    from metastat.mil.infer import Head
    from metastat.mil.models import ModelSpec, build_model

    torch.manual_seed(0)
    spec = ModelSpec(in_dim=in_dim, n_out=2, params={"hidden_dim": 64, "attention_dim": 32})
    model = build_model("abmil", spec)
    note = "untrained demo weights: the heatmap shows the mechanics, not biology"
    return save_checkpoint(
        out, name="abmil", model=model, spec=spec, head=Head("binary"), encoder=encoder,
        extra={"demo": True, "note": note},
    )  # fmt: skip


def build_demo(models_dir: Path, *, run: bool = True, mil: bool = True) -> Path:
    """Write the demo models directory; entries already there are kept.

    An exclusive lock on ``models_dir/.lock`` lets parallel processes (pytest-xdist workers)
    share one directory: the first builds, the others wait and reuse it.
    """
    import fcntl

    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (models_dir / EXPRESSION_NAME / "manifest.json").exists():
            build_expression_model(models_dir / EXPRESSION_NAME)
        if run and not (models_dir / RUN_NAME / "run.json").exists():
            build_run(models_dir / RUN_NAME)
        if mil and not (models_dir / MIL_NAME / "manifest.json").exists():
            build_mil_checkpoint(models_dir / MIL_NAME)
    return models_dir


def shared_demo_dir(basetemp: Path) -> Path:
    """Where test workers share the demo models: above the per-worker temp dir under xdist."""
    import os

    root = basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp
    return root / "metastat-serve-demo-models"


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host``."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(app: Any, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread; yields its base URL."""
    import uvicorn

    from metastat.serve.server import uvicorn_config

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn_config(app, host, port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="metastat-serve")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the portal did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def start_server_process(
    models: Path,
    data: Path,
    port: int,
    *extra: str,
    token: str | None = None,
    src: Path | None = None,
) -> Any:
    """``metastat serve`` in its own process (own session, loopback), once it answers.

    ``src``: run the metastat found there instead of this one (a baseline for benchmarks).
    """
    import os
    import subprocess
    import sys

    import httpx

    cmd = [sys.executable, "-m", "metastat.cli.main", "serve", "--models", str(models),
           "--data-dir", str(data), "--host", "127.0.0.1", "--port", str(port), *extra]  # fmt: skip
    here = str(src or Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "METASTAT_TOKEN": token or ""}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                stop_server_process(proc)
                raise RuntimeError(f"the portal did not start: {err[-2000:]}") from None
            time.sleep(0.3)


def stop_server_process(proc: Any, *, kill: bool = False) -> None:
    """Stop a server from :func:`start_server_process` (``kill``: SIGKILL, like a crash)."""
    import os
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except Exception:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
