"""Memory over a long run: 50 slides processed one after another in one process with the
default encoder; resident memory is sampled after every slide.

Pass: peak RSS over the last 10 slides grows < 10 % over the peak of slides 6-10 (after
warm-up: encoder, allocator pools, caches).

Usage: python benchmarks/bench_slides_memory.py [--slides 50] [--distinct 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import psutil

from metastat.slides.pipeline import ProcessConfig, SlideJob, process_slide
from metastat.slides.synthetic import write_synthetic_slide


class PeakSampler:
    """Samples this process's RSS every 20 ms; ``take()`` returns the peak since last call."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            time.sleep(0.02)

    def take(self) -> int:
        peak, self._peak = max(self._peak, self._proc.memory_info().rss), 0
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=50)
    ap.add_argument("--distinct", type=int, default=10, help="distinct files (others: copies)")
    ap.add_argument("--size", type=int, nargs=2, default=(3072, 2048))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    config = ProcessConfig(device="cpu", qc=True)
    with tempfile.TemporaryDirectory() as d:
        src = [
            write_synthetic_slide(
                Path(d) / f"src{i}.tiff", size_px0=tuple(args.size), mpp=0.5, levels=3, seed=i
            )
            for i in range(args.distinct)
        ]
        jobs = []
        for i in range(args.slides):
            p = Path(d) / f"slide{i:03d}.tiff"
            os.link(src[i % len(src)], p)  # distinct names, distinct outputs
            jobs.append(SlideJob(p, p.stem))
        out = Path(d) / "out"
        sampler = PeakSampler()
        peaks_mb, tiles = [], 0
        t0 = time.perf_counter()
        for j in jobs:
            r = process_slide(j, out, config)
            assert r.status == "done", r
            tiles += r.n_tiles
            peaks_mb.append(sampler.take() / 2**20)
            print(f"{j.slide_id}: {r.n_tiles} tiles, peak RSS {peaks_mb[-1]:.0f} MiB", flush=True)
        sampler.stop()
    early, late = max(peaks_mb[5:10]), max(peaks_mb[-10:])
    res = {
        "slides": args.slides,
        "tiles": tiles,
        "seconds": time.perf_counter() - t0,
        "peak_rss_mib_per_slide": [round(p, 1) for p in peaks_mb],
        "peak_slides_6_10_mib": early,
        "peak_last_10_mib": late,
        "growth_pct": 100 * (late - early) / early,
    }
    print(json.dumps({k: v for k, v in res.items() if k != "peak_rss_mib_per_slide"}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
