"""Bounded load test of the portal on loopback: N scoring requests at concurrency C.

Starts ``metastat serve`` exactly as a user would (a separate process, loopback, with a token),
then sends single-profile JSON scoring requests and reports p50 / p95 / p99 latency, throughput
and errors. Example::

    python benchmarks/bench_serve_load.py --requests 1000 --concurrency 20 \
        --out /work/artifacts/serve/load_test.txt
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from metastat.serve.demo import EXPRESSION_NAME, build_demo, free_port

TOKEN = "load-test-token"


def _profile_body() -> dict:
    from metastat.data.cohort import expression_frame
    from metastat.data.genes import collapse_genes
    from metastat.data.registry import load_dataset

    row = expression_frame(collapse_genes(load_dataset("gastric_acrg"), "symbol")).iloc[0]
    return {"profiles": [{"sample_id": "LOAD-1", "expression": row.to_dict()}]}


def _start(models: Path, data: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "metastat.cli.main", "serve", "--models", str(models),
           "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data),
           "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "METASTAT_TOKEN": TOKEN}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.3)


async def _load(url: str, body: dict, n: int, concurrency: int) -> tuple[np.ndarray, list[str]]:
    lat: list[float] = []
    errors: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=headers) as client:

        async def one() -> None:
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, json=body)
                    if r.status_code != 200:
                        errors.append(f"HTTP {r.status_code}: {r.text[:120]}")
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                lat.append(time.perf_counter() - t0)

        await asyncio.gather(*(one() for _ in range(n)))
    return np.asarray(lat) * 1000, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--models", type=Path, help="models dir (default: build the demo model)")
    ap.add_argument("--out", type=Path, help="also write the report here")
    args = ap.parse_args()
    load0 = " ".join(f"{v:.1f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="metastat-load-") as tmp:
        models = args.models or build_demo(Path(tmp) / "models", run=False, mil=False)
        port = free_port()
        proc = _start(models, Path(tmp) / "data", port)
        try:
            url = f"http://127.0.0.1:{port}/api/models/{EXPRESSION_NAME}/score"
            body = _profile_body()
            asyncio.run(_load(url, body, 20, args.concurrency))  # warm-up, not counted
            t0 = time.perf_counter()
            lat, errors = asyncio.run(_load(url, body, args.requests, args.concurrency))
            wall = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    lines = [
        f"metastat portal load test ({time.strftime('%Y-%m-%d %H:%M:%S %Z')})",
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; load average before/after: {load0} / "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}; server: 1 uvicorn process",
        f"request: POST /api/models/{EXPRESSION_NAME}/score, 1 JSON profile, bearer token",
        f"requests: {args.requests}  concurrency: {args.concurrency}  wall: {wall:.2f} s  "
        f"throughput: {args.requests / wall:.1f} req/s",
        f"latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {lat.max():.1f}",
        f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""),
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
