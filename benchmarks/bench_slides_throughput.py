"""CPU throughput of the slide pipeline with the default encoder, measured side by side.

1. tissue detection + tiling (tiles planned per second);
2. the encoder's pure forward pass on in-memory tensors (upper bound);
3. a naive loop: ``read_region`` one tile at a time, then encode it;
4. metastat end to end: threaded batched reads overlapped with batched forward passes.

Each per encoder (``--encoder``) and precision (``--precision``, GPU only; CPU runs fp32). The
GPU check of issue 11 item 7 (default encoder and a ViT in bf16 against their pure forward pass):

    python benchmarks/bench_slides_throughput.py --device cuda --encoder efficientnet_lite0 \
        vit:vit_base_patch16_224 --precision fp32 bf16 --batch-size 128 --read-threads 8

Usage: python benchmarks/bench_slides_throughput.py [--slides 3] [--size 8192 6144] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from metastat.slides import open_slide
from metastat.slides.encoders import TileEncoder, create_encoder, resolve_device
from metastat.slides.extract import embed_grid, read_tile
from metastat.slides.synthetic import write_synthetic_slide
from metastat.slides.tiling import TilingConfig, plan_tiles
from metastat.slides.tissue import detect_tissue


def _vit_weights(folder: Path, arch: str) -> Path:
    """Randomly initialised timm ViT weights in a local file (throughput only: the hub's
    pathology ViTs have the same architecture, and this machine cannot download them)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=0)
    path = folder / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(enc: TileEncoder, paths: list[Path], grids: list, args: argparse.Namespace) -> dict:
    """Pure forward, naive loop and metastat end to end, interleaved slide by slide (so that a
    change in machine load hits all three)."""
    size = enc.spec.input_size_px
    x = torch.randn(args.batch_size, 3, size, size, device=enc.device)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(2):
            enc.run_model(x)  # warm-up (cuDNN autotuning, lazy init)
        _sync(enc.device)
    t = {"pure_forward": 0.0, "naive_loop": 0.0, "end_to_end": 0.0}
    cpu = dict.fromkeys(t, 0.0)  # process CPU seconds: robust to other load on the machine
    n = dict.fromkeys(t, 0)
    naive_per_slide = max(1, args.naive_tiles // len(paths))
    for p, g in zip(paths, grids, strict=True):
        with torch.inference_mode():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(max(1, len(g) // args.batch_size)):
                enc.run_model(x)
                n["pure_forward"] += args.batch_size
            _sync(enc.device)
            t["pure_forward"] += time.perf_counter() - t0
            cpu["pure_forward"] += time.process_time() - c0
        with open_slide(p) as s:  # naive: read_region one tile at a time, encode it alone
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(min(naive_per_slide, len(g))):
                enc.encode(read_tile(s, g, i)[None])
                n["naive_loop"] += 1
            t["naive_loop"] += time.perf_counter() - t0
            cpu["naive_loop"] += time.process_time() - c0
        with open_slide(p) as s:  # metastat: threaded batched reads overlapped with forwards
            t0, c0 = time.perf_counter(), time.process_time()
            _feats, ok = embed_grid(
                s, g, enc, batch_size=args.batch_size, threads=args.read_threads
            )
            n["end_to_end"] += int(ok.sum())
            t["end_to_end"] += time.perf_counter() - t0
            cpu["end_to_end"] += time.process_time() - c0
    res: dict = {
        k: {
            "tiles": n[k],
            "seconds": t[k],
            "tiles_per_s": n[k] / t[k],
            "cpu_seconds": cpu[k],
            "tiles_per_cpu_s": n[k] / cpu[k],
        }
        for k in t
    }
    e2e = res["end_to_end"]["tiles_per_s"]
    res["ratio_end_to_end_vs_pure_forward"] = e2e / res["pure_forward"]["tiles_per_s"]
    res["ratio_end_to_end_vs_naive"] = e2e / res["naive_loop"]["tiles_per_s"]
    res["cpu_ratio_end_to_end_vs_pure_forward"] = (
        res["end_to_end"]["tiles_per_cpu_s"] / res["pure_forward"]["tiles_per_cpu_s"]
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=3)
    ap.add_argument("--size", type=int, nargs=2, default=(8192, 6144))
    ap.add_argument("--mpp", type=float, default=0.25, help="slides' µm/px (tiles at 0.5)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--read-threads", type=int, default=2)
    ap.add_argument("--naive-tiles", type=int, default=96)
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    ap.add_argument(
        "--encoder",
        nargs="+",
        default=["efficientnet_lite0"],
        help="registry names; 'vit:<timm arch>' = that ViT with random local weights",
    )
    ap.add_argument("--precision", nargs="+", default=["fp32"], help="fp32 bf16 fp16 (GPU only)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    device = resolve_device(args.device)
    tiling = TilingConfig(tile_size_px=224, target_mpp=0.5)
    res: dict[str, object] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device)
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
        "load_avg_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as d:
        paths = [
            write_synthetic_slide(
                Path(d) / f"b{i}.tiff", size_px0=tuple(args.size), mpp=args.mpp, levels=4, seed=i
            )
            for i in range(args.slides)
        ]
        t0 = time.perf_counter()  # 1. tissue + tiling
        grids = []
        for p in paths:
            with open_slide(p) as s:
                grids.append(plan_tiles(s, detect_tissue(s), tiling))
        t_plan = time.perf_counter() - t0
        n_tiles = sum(len(g) for g in grids)
        res["tissue_tiling"] = {
            "slides": len(paths),
            "tiles": n_tiles,
            "seconds": t_plan,
            "tiles_per_s": n_tiles / t_plan,
            "candidates_per_s": sum(g.n_candidates for g in grids) / t_plan,
        }
        for name in args.encoder:  # 2-4 per encoder and precision
            weights = None
            if name.startswith("vit:"):
                weights = _vit_weights(Path(d), name[4:])
                name = f"timm:{name[4:]}"
            for prec in args.precision if device.type == "cuda" else ["fp32"]:
                enc = create_encoder(name, device=str(device), precision=prec, weights=weights)
                res[f"{name} {prec}"] = measure(enc, paths, grids, args)
    res["load_avg_end"] = os.getloadavg()
    text = json.dumps(res, indent=2, default=float)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
