"""Tissue detection + tiling, metastat vs LazySlide 0.13, side by side on the same slides.

Each measurement is a fresh process with one thread per library (OMP/BLAS/numba = 1), timed
inside the process after imports (wall and CPU time; tiles/s/core uses CPU time, fair on a
shared machine): open the slide, find tissue, build the grid of 256 px tiles
at 0.5 µm/px. metastat also computes its tissue polygons (LazySlide's output is polygons
too). Tools and slides are interleaved over repeats; the ratios come from the medians.

    python benchmarks/bench_slides_tiling.py --repeats 3 --peer-python /work/venv-peers/bin/python

LazySlide runs in its own venv (``python3 -m venv /work/venv-peers && /work/venv-peers/bin/pip
install lazyslide==0.13.0 torch==2.14.1 torchvision==0.29.1``); it is skipped when absent.
The 24,000² synthetic slide (0.25 µm/px) is written with ``metastat slides synth`` if missing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TILE_PX, TILE_MPP = 256, 0.5


def _metastat(path: str, mpp: float | None) -> dict:
    t_imp = time.perf_counter()
    from metastat.slides import open_slide
    from metastat.slides.polygons import tissue_polygons
    from metastat.slides.tiling import TilingConfig, plan_tiles
    from metastat.slides.tissue import detect_tissue

    imp = time.perf_counter() - t_imp
    c0, t0 = time.process_time(), time.perf_counter()
    with open_slide(path, mpp_fallback=mpp) as s:
        mask = detect_tissue(s)
        polys = tissue_polygons(mask, size_px0=s.dimensions_px0)
        t_grid = time.perf_counter()
        grid = plan_tiles(s, mask, TilingConfig(tile_size_px=TILE_PX, target_mpp=TILE_MPP))
        grid_s = time.perf_counter() - t_grid
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"tiles": len(grid), "wall_s": wall, "cpu_s": cpu, "import_s": imp,
            "grid_only_s": grid_s, "n_polygons": len(polys),
            "n_holes": sum(len(p) - 1 for p in polys),
            "tissue_mm2": mask.tissue_area_mm2}  # fmt: skip


def _lazyslide(path: str, mpp: float | None) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    t_imp = time.perf_counter()
    import lazyslide as zs

    imp = time.perf_counter() - t_imp
    c0, t0 = time.process_time(), time.perf_counter()
    wsi = zs.open_wsi(path, store=None)
    zs.pp.find_tissues(wsi)
    zs.pp.tile_tissues(wsi, TILE_PX, mpp=TILE_MPP, slide_mpp=mpp)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    tissues = wsi.shapes["tissues"]
    holes = sum(len(g.interiors) for g in tissues.geometry if hasattr(g, "interiors"))
    return {"tiles": len(wsi.shapes["tiles"]), "wall_s": wall, "cpu_s": cpu,
            "import_s": imp, "n_polygons": len(tissues), "n_holes": int(holes),
            "lazyslide": zs.__version__}  # fmt: skip


def _worker(tool: str, path: str, mpp: float | None) -> None:
    fn = _metastat if tool == "metastat" else _lazyslide
    print("RESULT " + json.dumps(fn(path, mpp)))


def _run(python: str, tool: str, slide: Path, mpp: float | None) -> dict | None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "METASTAT_QUIET": "1"}  # fmt: skip
    if tool == "metastat":
        env["PYTHONPATH"] = str(REPO / "src")
    cmd = [python, __file__, "--worker", tool, "--slide", str(slide)]
    if mpp is not None:
        cmd += ["--mpp", str(mpp)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    if r.returncode != 0 or not line:
        print(f"  {tool} failed on {slide.name}: {r.stderr.strip().splitlines()[-1:]}")
        return None
    out = json.loads(line[-1][7:])
    out["process_s"] = time.perf_counter() - t0
    return out


def _synthetic(path: Path) -> Path:
    if not path.is_file():
        from metastat.slides.synthetic import write_synthetic_slide

        write_synthetic_slide(path, size_px0=(24_000, 24_000), mpp=0.25, levels=4, seed=0)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["metastat", "lazyslide"])
    ap.add_argument("--slide")
    ap.add_argument("--mpp", type=float)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-python", default="/work/venv-peers/bin/python")
    ap.add_argument("--synthetic", default="/tmp/metastat-bench/synthetic-24k.tiff")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args()
    if a.worker:
        _worker(a.worker, a.slide, a.mpp)
        return
    slides = [
        ("CMU-1-Small-Region", REPO / "tests/data/slides/CMU-1-Small-Region.svs", None),
        ("TCGA-CR-7395 (mpp 0.5 given)",
         REPO.parent.parent / "shared/data/slides/TCGA-CR-7395-01A-01-TS1.svs", 0.5),
        ("synthetic 24,000² @0.25", _synthetic(Path(a.synthetic)), None),
    ]  # fmt: skip
    if not slides[1][1].is_file():
        slides[1] = (
            slides[1][0],
            Path("/work/shared/data/slides/TCGA-CR-7395-01A-01-TS1.svs"),
            0.5,
        )
    slides = [s for s in slides if s[1].is_file()]
    tools = {"metastat": sys.executable}
    if Path(a.peer_python).is_file():
        tools["lazyslide"] = a.peer_python
    else:
        print(f"LazySlide skipped: no peer venv at {a.peer_python}")
    runs: dict[tuple[str, str], list[dict]] = {}
    for rep in range(a.repeats):
        order = list(tools) if rep % 2 == 0 else list(tools)[::-1]
        for name, path, mpp in slides:
            for tool in order:
                r = _run(tools[tool], tool, path, mpp)
                if r is not None:
                    runs.setdefault((name, tool), []).append(r)
    print(f"\n256 px tiles at {TILE_MPP} µm/px, one core, median of {a.repeats} interleaved runs")
    print("| slide | tool | tiles | tissue+tiling s (wall) | CPU s | tiles/s/core "
          "| polygons (holes) | process s (with imports) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, _, _ in slides:
        med = {}
        for tool in tools:
            rs = runs.get((name, tool))
            if not rs:
                continue
            wall = statistics.median(r["wall_s"] for r in rs)
            cpu = statistics.median(r["cpu_s"] for r in rs)
            proc = statistics.median(r["process_s"] for r in rs)
            med[tool] = wall
            print(f"| {name} | {tool} | {rs[0]['tiles']} | {wall:.3f} | {cpu:.3f} | "
                  f"{rs[0]['tiles'] / cpu:,.0f} | {rs[0]['n_polygons']} ({rs[0]['n_holes']}) | "
                  f"{proc:.1f} |")  # fmt: skip
        if len(med) == 2:
            print(f"| {name} | **LazySlide / metastat time** | | "
                  f"**{med['lazyslide'] / med['metastat']:.2f}x** | | | | |")  # fmt: skip
    grid = [r["tiles"] / r["grid_only_s"] for (n, t), rs in runs.items() if t == "metastat"
            for r in rs if r["grid_only_s"] > 0]  # fmt: skip
    if grid:
        rate = statistics.median(grid)
        print(f"\nmetastat grid coordinates alone (plan_tiles): median {rate:,.0f} tiles/s")
    if a.json:
        Path(a.json).write_text(
            json.dumps({f"{k[0]}|{k[1]}": v for k, v in runs.items()}, indent=1)
        )


if __name__ == "__main__":
    main()
