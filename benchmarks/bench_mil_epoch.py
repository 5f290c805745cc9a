"""Training time per epoch on CPU: 500 bags x 2,000 tiles x 1,280-d (bags of real tile embeddings).

Bags are generated once (fp16 in memory, generation time reported separately), then every model
trains through the production epoch loop (metastat.mil.train.run_epoch: padded, masked
mini-batches of 4, AdamW). A model whose epoch would exceed --max-seconds is timed on the
batches done and extrapolated (marked so).

Usage: python benchmarks/bench_mil_epoch.py [--bags 500] [--tiles 2000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from metastat.mil.bags import ArrayBags, MILData, Targets
from metastat.mil.config import MILConfig
from metastat.mil.models import build_model
from metastat.mil.planted import BagDesign, bag_features, load_tiles, make_bags
from metastat.mil.train import _Loss, make_head, model_spec, run_epoch, seed_everything

MODELS = ["mean", "max", "abmil", "clam_sb", "clam_mb", "transmil"]


class _Half(ArrayBags):
    def features(self, i: int) -> np.ndarray:  # stored fp16 to fit 500 x 2000 x 1280 in RAM
        return self.arrays[i].astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bags", type=int, default=500)
    ap.add_argument("--tiles", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=240.0)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", default="/work/artifacts/mil/bench_epoch.json")
    args = ap.parse_args()
    seed_everything(0, args.threads)
    tiles = load_tiles()
    t0 = time.perf_counter()
    # timing only: tiles are drawn with replacement (the real pool has < 2,000 tiles)
    rng = np.random.default_rng(1)
    pool = np.arange(len(tiles))
    bags = make_bags(tiles, pool, BagDesign(n_patients=args.bags, slides_per_patient=1), "epoch")
    bags.tiles[:] = [rng.choice(pool, args.tiles) for _ in range(args.bags)]
    arrays = [f.astype(np.float16) for f in bag_features(tiles, bags)]
    gen_s = time.perf_counter() - t0
    data = MILData(
        _Half(bags.slide_ids, arrays),
        [[i] for i in range(args.bags)],
        bags.slide_ids,
        np.array(bags.slide_ids),
        Targets(label=bags.labels),
        ["0", "1"],
    )
    cfg = MILConfig(batch_size=4, max_tiles=None, threads=args.threads)
    results = {
        "bags": args.bags,
        "tiles": args.tiles,
        "dim": int(arrays[0].shape[1]),
        "threads": args.threads,
        "batch_size": cfg.batch_size,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "load_avg_start": os.getloadavg(),
        "generate_seconds": round(gen_s, 1),
        "models": {},
    }
    print(f"generated {args.bags} bags x {args.tiles} tiles in {gen_s:.0f} s", flush=True)
    head = make_head(cfg, data.targets, data.classes)
    order = np.arange(args.bags)
    for name in args.models.split(","):
        seed_everything(0, args.threads)
        spec = model_spec(cfg, data.dim(), head, name)
        model = build_model(name, spec)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        loss_fn = _Loss(cfg, head, data.targets)
        rng = np.random.default_rng(0)
        t0, done, bs = time.perf_counter(), 0, cfg.batch_size
        for start in range(0, args.bags, bs):  # the production loop, one batch at a time
            batch = order[start : start + bs]
            w = spec.params.get("instance_weight", 0.0)
            run_epoch(model, opt, loss_fn, data, batch, cfg, rng, bs, instance_weight=w)
            done = min(start + bs, args.bags)
            if time.perf_counter() - t0 > args.max_seconds:
                break
        el = time.perf_counter() - t0
        per_epoch = el * args.bags / done
        results["models"][name] = {
            "seconds_per_epoch": round(per_epoch, 1),
            "bags_timed": done,
            "extrapolated": done < args.bags,
        }
        print(f"{name}: {per_epoch:.1f} s/epoch ({done} bags timed)", flush=True)
    results["load_avg_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
