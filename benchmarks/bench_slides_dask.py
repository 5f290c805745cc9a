"""Dask LocalCluster vs local run on the same slides: are the features identical?

Starts a LocalCluster (separate worker processes, reached through its tcp:// address, as
``--scheduler`` would), runs the cohort there and locally with the same encoder threads,
and compares every feature file bit for bit.

Usage: python benchmarks/bench_slides_dask.py SLIDES_DIR_OR_MANIFEST --out DIR [--target-mpp 0.5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from metastat.slides import load_bag
from metastat.slides.pipeline import ProcessConfig
from metastat.slides.runner import discover_slides, run_cohort
from metastat.slides.tiling import TilingConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--target-mpp", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from distributed import LocalCluster

    config = ProcessConfig(
        tiling=TilingConfig(target_mpp=args.target_mpp), torch_threads=1, device="cpu"
    )
    jobs = discover_slides(args.source)
    local = run_cohort(jobs, args.out / "local", config, workers=1, progress=False)
    with LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        dask = run_cohort(
            jobs, args.out / "dask", config, scheduler=cluster.scheduler_address, progress=False
        )
    report: dict[str, object] = {
        "local": {
            "done": local.done,
            "failed": local.failed,
            "tiles": local.tiles,
            "seconds": local.seconds,
        },
        "dask": {
            "done": dask.done,
            "failed": dask.failed,
            "tiles": dask.tiles,
            "seconds": dask.seconds,
            "workers": args.workers,
        },
        "slides": {},
    }
    identical = True
    for j in jobs:
        a_path = args.out / "local" / "features" / f"{j.slide_id}.h5"
        b_path = args.out / "dask" / "features" / f"{j.slide_id}.h5"
        if not a_path.exists() or not b_path.exists():
            report["slides"][j.slide_id] = "not processed"  # type: ignore[index]
            continue
        a, b = load_bag(a_path), load_bag(b_path)
        same = bool(
            np.array_equal(a.features, b.features) and np.array_equal(a.coords_px0, b.coords_px0)
        )
        identical &= same
        report["slides"][j.slide_id] = {"tiles": a.n_tiles, "identical": same}  # type: ignore[index]
    report["identical"] = identical
    text = json.dumps(report, indent=2)
    print(text)
    (args.out / "dask_vs_local.json").write_text(text)


if __name__ == "__main__":
    main()
