"""Heatmap render time on real slides, plus the two real TCGA feature bags.

1. Trains ABMIL on bags of real tile embeddings (metastat.mil.planted; EfficientNet-Lite0,
   1,280-d) and renders attention
   heatmaps on the thumbnails of the two real slides (features from the slides pipeline), with
   top/bottom tile crops and QuPath GeoJSON; times each render (slide open + thumbnail + scoring
   + PNG + GeoJSON + crops).
2. Scales the render to a 50,000-tile bag (a large 40x resection at 0.5 um/px) on a canvas.
3. Runs predict + heatmap on the two real TCGA bags (512-d) with a toy 512-d model (bags
   resampled from the two slides: plumbing demonstration, not a validated predictor).

Usage: python benchmarks/bench_mil_heatmap.py --real-features DIR [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from metastat.mil.bags import ArrayBags, MILData, Targets
from metastat.mil.checkpoint import load_checkpoint, save_checkpoint
from metastat.mil.config import MILConfig
from metastat.mil.heatmap import slide_heatmap
from metastat.mil.planted import BagDesign, load_tiles, make_bags, mil_data
from metastat.mil.train import FitResult, train_final
from metastat.slides.store import load_bag

SLIDES = ["CMU-1-Small-Region", "TCGA-CR-7395-01A-01-TS1"]
TCGA_BAGS = ["TCGA-AD-6964-01Z-00-DX1", "TCGA-3X-AAVA-01Z-00-DX1"]


def _save(res: FitResult, out: Path, encoder: str | None) -> Path:
    return save_checkpoint(
        out,
        name=res.name,
        model=res.model,
        spec=res.spec,
        head=res.head,
        encoder=encoder,
        extra={"seed": res.seed, "history": res.history},
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--real-features", default="/work/artifacts/mil/real_slides/features")
    ap.add_argument("--out", default="/work/artifacts/mil/heatmaps")
    args = ap.parse_args()
    out, shared = Path(args.out), Path(args.shared)
    report: dict = {}
    cfg = MILConfig(
        model="abmil", hidden_dim=64, attention_dim=32, epochs=12, lr=1e-3, threads=1, seeds=[0]
    )
    tiles = load_tiles()
    bags = make_bags(tiles, np.arange(len(tiles)), BagDesign(n_patients=40, seed=7), "heatmap")
    t0 = time.perf_counter()
    res = train_final(cfg, mil_data(tiles, bags)[0])
    ck_dir = _save(res, out / "planted_abmil_model", tiles.encoder)
    report["planted_model_train_seconds"] = round(time.perf_counter() - t0, 1)
    ck = load_checkpoint(ck_dir)
    for name in SLIDES:
        bag = load_bag(Path(args.real_features) / f"{name}.h5")
        for method in ("attention", "attention_x_grad"):
            r = slide_heatmap(
                ck,
                slide_id=bag.slide_id,
                features=bag.features,
                coords=bag.coords_px0,
                tile_size_px0=bag.tile_size_px0,
                out_dir=out / name / method,
                slide_path=shared / "slides" / f"{name}.svs",
                method=method,
                k=8,
                encoder=bag.encoder,
            )
            report[f"{name}/{method}"] = {
                "tiles": bag.n_tiles,
                "seconds": round(r.seconds, 2),
                "png": str(r.png),
                "geojson": str(r.geojson),
                "crops": len(r.crops),
                "prob_tumour": r.prob,
            }
            print(name, method, report[f"{name}/{method}"], flush=True)
    # scale: a 50,000-tile bag on a coordinate canvas (no slide image)
    n = 50_000
    side = int(np.ceil(np.sqrt(n)))
    rng = np.random.default_rng(0)
    x = tiles.features["none"][rng.integers(len(tiles), size=n)]
    xy = np.stack([np.arange(n) % side, np.arange(n) // side], 1).astype(np.int64) * 448
    r = slide_heatmap(
        ck,
        slide_id="scale-50k",
        features=x,
        coords=xy,
        tile_size_px0=448,
        out_dir=out / "scale",
        method="attention",
        k=8,
    )
    report["scale_50000_tiles_seconds"] = round(r.seconds, 2)
    print("50k tiles:", r.seconds, flush=True)
    # the two real TCGA bags (512-d): toy model on bags resampled from the two slides
    real = [load_bag(shared / "features" / s / "features.h5") for s in TCGA_BAGS]
    arrays, labels = [], []
    for lab, bag in zip([1, 0], real, strict=True):
        for _ in range(20):
            arrays.append(bag.features[rng.choice(bag.n_tiles, 60, replace=False)])
            labels.append(lab)
    ids = [f"toy{i}" for i in range(len(arrays))]
    toy = MILData(
        ArrayBags(ids, arrays),
        [[i] for i in range(len(ids))],
        ids,
        np.array(ids),
        Targets(label=np.array(labels)),
        ["TCGA-3X-AAVA", "TCGA-AD-6964"],
    )
    toy_res = train_final(cfg.model_copy(update={"epochs": 10, "hidden_dim": 64}), toy)
    toy_ck = load_checkpoint(_save(toy_res, out / "toy_512d_model", None))
    for bag in real:
        r = slide_heatmap(
            toy_ck,
            slide_id=bag.slide_id,
            features=bag.features,
            coords=bag.coords_px0,
            tile_size_px0=bag.tile_size_px0,
            out_dir=out / bag.slide_id,
            method="attention",
            k=8,
        )
        report[bag.slide_id] = {
            "tiles": bag.n_tiles,
            "seconds": round(r.seconds, 2),
            "png": str(r.png),
            "prob_AD6964_like": r.prob,
        }
        print(bag.slide_id, report[bag.slide_id], flush=True)
    (out / "bench_heatmap.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
