"""Bounded load test of the portal on loopback, plus the scoring fast path vs the cohort path.

1. Starts ``metastat serve`` exactly as a user would (its own process, 127.0.0.1 only, with a
   token) and sends single-profile JSON scoring requests at each concurrency level: p50 / p95 /
   p99 latency, requests/s, errors, and the server's RSS before and after.
2. In this process, on the same run: the time to turn one upload into scores by the fast path
   (:func:`metastat.serve.scoring.parse_profile` straight onto the model's genes) and by the
   cohort path the portal used before (table -> AnnData cohort -> gene collapsing -> model), for a
   one-profile upload and for a 50,000-column one (ratio = cohort / fast).

With ``--baseline-src DIR`` (the ``src`` folder of another metastat checkout, e.g. the commit
before a change), the same levels are also run against that version, interleaved with this one,
on the same machine in the same run (ratio = this / baseline).

Example::

    git archive a6ccbb9 src | tar -x -C /tmp/before
    python benchmarks/bench_serve_load.py --requests 1000 --concurrency 20 100 \
        --baseline-src /tmp/before/src --out FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from metastat.serve.demo import (
    EXPRESSION_NAME,
    build_demo,
    free_port,
    start_server_process,
    stop_server_process,
)

TOKEN = "load-test-token-9f3Kq2LmZx7Vb1Nw"


def _profile() -> pd.DataFrame:
    from metastat.data.cohort import expression_frame
    from metastat.data.genes import collapse_genes
    from metastat.data.registry import load_dataset

    return expression_frame(collapse_genes(load_dataset("gastric_acrg"), "symbol")).iloc[:1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (load-independent cost)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def _cohort_path(model: object, manifest: dict, data: bytes) -> None:
    """What the portal did before: read the table, build an AnnData cohort, collapse genes."""
    from metastat.data.cohort import expression_frame, make_cohort
    from metastat.data.genes import collapse_genes
    from metastat.data.tables import read_table

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.csv"
        path.write_bytes(data)
        frame = read_table(path)
    x = expression_frame(collapse_genes(make_cohort(frame, name="upload"), "symbol"))
    model.preprocessor_.check_scale(x)  # type: ignore[attr-defined]
    model.predict_frame(x)  # type: ignore[attr-defined]
    model.explain(x, top=10)  # type: ignore[attr-defined]


def _fast_path(model: object, manifest: dict, data: bytes, genes: list[str]) -> None:
    from metastat.serve.limits import Limits
    from metastat.serve.scoring import parse_profile, score_profiles

    score_profiles(model, manifest, parse_profile(data, ".csv", genes, Limits()), top=10)  # type: ignore[arg-type]


def _best_ms(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def _paths(models: Path, one: pd.DataFrame) -> list[str]:
    from metastat.expression.persist import load_model
    from metastat.serve.scoring import model_genes

    model, manifest = load_model(models / EXPRESSION_NAME)
    genes = model_genes(model)
    narrow = one.to_csv().encode()
    junk = pd.DataFrame(np.ones((1, 50_000 - one.shape[1])), index=one.index,
                        columns=[f"X{j}" for j in range(50_000 - one.shape[1])])  # fmt: skip
    wide = pd.concat([one, junk], axis=1).to_csv().encode()
    lines = ["scoring one upload in-process (median ms; ratio = cohort path / fast path):"]
    for label, data, rep in (("1 profile, model genes", narrow, 30), ("1 profile, 50,000 columns",
                             wide, 3)):  # fmt: skip
        slow = _best_ms(lambda d=data: _cohort_path(model, manifest, d), rep)
        fast = _best_ms(lambda d=data: _fast_path(model, manifest, d, genes), rep)
        lines.append(f"  {label:28s} cohort path {slow:8.1f}  fast path {fast:7.1f}  "
                     f"ratio {slow / fast:5.1f}x  ({len(data) / 2**20:.2f} MiB)")  # fmt: skip
    return lines


def _level(models: Path, data: Path, body: dict, n: int, c: int, src: Path | None,
           lines: list[str], name: str) -> tuple[float, float]:  # fmt: skip
    """One concurrency level against a fresh server; appends its line, returns (req/s, p99)."""
    port = free_port()
    proc = start_server_process(models, data, port, "--log-level", "warning", token=TOKEN, src=src)
    try:
        url = f"http://127.0.0.1:{port}/api/models/{EXPRESSION_NAME}/score"
        asyncio.run(_load(url, body, 20, 4))  # warm-up, not counted
        before, cpu0 = _rss_mib(proc.pid), _cpu_s(proc.pid)
        t0 = time.perf_counter()
        lat, errors = asyncio.run(_load(url, body, n, c))
        wall = time.perf_counter() - t0
        cpu_ms = 1000 * (_cpu_s(proc.pid) - cpu0) / n
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        lines.append(
            f"{name:8s} c={c:<4d} {n / wall:7.1f} req/s  p50 {p50:7.1f}  p95 {p95:7.1f}  "
            f"p99 {p99:7.1f}  max {lat.max():7.1f} ms  errors {len(errors)}  "
            f"server CPU {cpu_ms:.1f} ms/request  RSS {before:.0f} -> {_rss_mib(proc.pid):.0f} MiB"
            + (f"  (first error: {errors[0]})" if errors else "")
        )
        return n / wall, float(p99)
    finally:
        stop_server_process(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000, help="per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[20, 100])
    ap.add_argument("--models", type=Path, help="models dir (default: build the demo model)")
    ap.add_argument("--out", type=Path, help="also write the report here")
    ap.add_argument("--baseline-src", type=Path, help="src folder of a baseline metastat version")
    args = ap.parse_args()
    load0 = " ".join(f"{v:.1f}" for v in os.getloadavg())
    one = _profile()
    body = {"profiles": [{"sample_id": "LOAD-1", "expression": one.iloc[0].to_dict()}]}
    lines = [
        f"metastat portal load test ({time.strftime('%Y-%m-%d %H:%M:%S %Z')})",
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs (shared with "
        f"other work: load average before {load0}), Python {platform.python_version()}; "
        "server: 1 uvicorn process on 127.0.0.1 with a bearer token",
        f"request: POST /api/models/{EXPRESSION_NAME}/score, 1 JSON profile "
        f"({len(json.dumps(body)) / 1024:.0f} KiB); {args.requests} requests per level after 20 "
        "warm-up requests",
    ]
    with tempfile.TemporaryDirectory(prefix="metastat-load-") as tmp:
        models = args.models or build_demo(Path(tmp) / "models", run=False, mil=False)
        versions = [("this", None)] + (
            [("baseline", args.baseline_src)] if args.baseline_src else []
        )
        results: dict[tuple[str, int], tuple[float, float]] = {}
        for c in args.concurrency:
            for name, src in versions:
                results[(name, c)] = _level(models, Path(tmp) / f"data-{name}", body, args.requests,
                                            c, src, lines, name)  # fmt: skip
        if args.baseline_src:
            for c in args.concurrency:
                (r1, q1), (r0, q0) = results[("this", c)], results[("baseline", c)]
                lines.append(f"c={c}: requests/s this / baseline = {r1 / r0:.2f}x, "
                             f"p99 baseline / this = {q0 / q1:.2f}x")  # fmt: skip
        lines += _paths(models, one)
    lines.append(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
