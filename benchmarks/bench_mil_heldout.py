"""Held-out-source histology benchmark: ABMIL / CLAM-SB / TransMIL vs mean pooling.

Bags of real H&E tile embeddings (metastat.mil.planted; tiles from four real sources in two
sites). For every split - each site held out (its sources never seen in training), and the
spatial split (train on one half of every image, test on the other) - and every stain arm
(raw tiles, Macenko, Reinhard, raw + HED stain augmentation of the training tiles), each model
is trained on training-side slides (patient-grouped validation split for early stopping) and
scored on test-side slides. Slide AUC with 95 % patient-bootstrap CIs and the paired difference
vs mean pooling come from metastat.evaluate.summary.compare; seeds are the CV repeats. Also a
tile-level logistic probe (train tiles -> test tiles) shows how far the tiles themselves
transfer, and the attention's localisation AUC on positive test slides.

Usage: python benchmarks/bench_mil_heldout.py [--out /work/artifacts/mil/heldout] [--seeds 0,1]
       [--arms raw,macenko,reinhard,raw+hed_aug] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from metastat.evaluate.summary import compare, metrics_json, summarise
from metastat.mil.checkpoint import Checkpoint
from metastat.mil.config import MILConfig
from metastat.mil.heatmap import tile_scores
from metastat.mil.planted import (
    BagDesign,
    instance_labels,
    load_tiles,
    make_bags,
    mil_data,
    split_names,
    split_tiles,
)
from metastat.mil.train import fit, prediction_rows, split_validation

MODELS = ["mean", "abmil", "clam_sb", "transmil"]
ARMS = {  # arm -> (embedding variant, training-time augmentation variant)
    "raw": ("none", None),
    "macenko": ("macenko", None),
    "reinhard": ("reinhard", None),
    "raw+hed_aug": ("none", "none+hed"),
}


def probe_auc(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Tile-level logistic probe fitted on training tiles, AUC on test tiles."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    clf.fit(x[train], y[train])
    return float(roc_auc_score(y[test], clf.decision_function(x[test])))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/artifacts/mil/heldout")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--arms", default="raw,macenko,raw+hed_aug", help=f"of {', '.join(ARMS)}")
    ap.add_argument("--patients", type=int, default=30, help="patients per side (3 slides each)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--n-boot", type=int, default=400)
    ap.add_argument("--quick", action="store_true", help="seed 0, raw + macenko, 200 replicates")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.arms, args.n_boot = "0", "raw,macenko", 200
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tiles = load_tiles()
    seeds = [int(s) for s in args.seeds.split(",")]
    models, arms = args.models.split(","), args.arms.split(",")
    cfg = MILConfig(
        seeds=seeds,
        epochs=args.epochs,
        min_epochs=6,
        patience=5,
        hidden_dim=64,
        attention_dim=32,
        lr=5e-4,
        batch_size=4,
        max_tiles=None,
        n_boot=args.n_boot,
        threads=1,
        calibrate=False,
    )
    design = BagDesign(n_patients=args.patients, seed=2026)
    (out / "config.json").write_text(
        json.dumps(
            {"bench": vars(args), "design": vars(design), "mil": cfg.model_dump(mode="json")},
            indent=2,
            default=str,
        )
    )
    rows, t_all = [], time.perf_counter()
    for split in split_names(tiles):
        tr_tiles, te_tiles = split_tiles(tiles, split)
        assert not set(tiles.tile_id[tr_tiles]) & set(tiles.tile_id[te_tiles])
        train = make_bags(tiles, tr_tiles, design, f"{split}-train")
        test = make_bags(tiles, te_tiles, design, f"{split}-test")
        for arm in arms:
            done = out / f"rows_{split.replace(':', '_')}_{arm}.json"
            if done.exists():  # resumable: each split x arm is written when it finishes
                rows += json.loads(done.read_text())
                continue
            variant, augment = ARMS[arm]
            probe = probe_auc(tiles.variant(variant), tiles.label, tr_tiles, te_tiles)
            preds, loc = [], {m: [] for m in models}
            for r, seed in enumerate(seeds):
                data, tr, te = mil_data(tiles, train, test, variant, augment, seed=seed)
                fit_idx, val_idx = split_validation(data, tr, cfg.val_fraction, seed)
                for name in models:
                    res = fit(cfg, data, fit_idx, val_idx, model_name=name, seed=seed)
                    preds.append(prediction_rows(res, data, te, fit_idx, r, 0, None))
                    if name != "mean":
                        ck = Checkpoint(res.name, res.model, res.spec, res.head, None, {})
                        for j, u in enumerate(te):
                            lab = instance_labels(tiles, test, j)
                            if lab.any() and not lab.all():
                                loc[name].append(roc_auc_score(lab, tile_scores(ck, data.bag(u))))
            pred = pd.concat(preds, ignore_index=True)
            pred.to_csv(out / f"pred_{split.replace(':', '_')}_{arm}.csv", index=False)
            pred = pred.assign(prob=np.nan)  # bootstrap the AUC only (calibration is off)
            for name in models:
                if name == "mean":
                    est = summarise(pred[pred["model"] == "mean"], n_boot=cfg.n_boot, seed=0)
                else:
                    est = compare(pred, primary=name, baseline="mean", n_boot=cfg.n_boot, seed=0)
                m = metrics_json(est)
                per_seed = (
                    pred[pred["model"] == name]
                    .groupby("repeat")
                    .apply(lambda d: roc_auc_score(d["binary"], d["risk"]), include_groups=False)
                )
                rows.append(
                    {
                        "split": split,
                        "arm": arm,
                        "model": name,
                        "slide_auc": m["auc"],
                        "delta_auc_vs_mean": m["delta_auc"] if name != "mean" else None,
                        "auc_per_seed": per_seed.round(3).tolist(),
                        "localisation_auc": float(np.mean(loc[name])) if loc[name] else None,
                        "tile_probe_auc": probe,
                        "n_train_slides": len(train),
                        "n_test_slides": len(test),
                        "n_test_patients": int(pd.unique(test.patient_ids).size),
                    }
                )
            done.write_text(json.dumps(rows[-len(models) :], indent=2))
            print(
                f"{split} {arm}: "
                + ", ".join(
                    f"{r['model']} {r['slide_auc']['estimate']:.3f}" for r in rows[-len(models) :]
                )
                + f" (tile probe {probe:.3f}; {time.perf_counter() - t_all:.0f} s)",
                flush=True,
            )
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    (out / "results.md").write_text(table(rows))
    print(table(rows))


def _ci(v: dict | None) -> str:
    if not v or v.get("estimate") is None:
        return ""
    return f"{v['estimate']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def table(rows: list[dict]) -> str:
    """Markdown: one row per split x arm x model."""
    head = (
        "| held-out | stain arm | model | slide AUC [95 % CI] | Δ AUC vs mean [95 % CI] "
        "| localisation AUC | tile probe AUC |\n|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['split']} | {r['arm']} | {r['model']} | {_ci(r['slide_auc'])} "
        f"| {_ci(r['delta_auc_vs_mean'])} "
        f"| {_num(r['localisation_auc'])} "
        f"| {r['tile_probe_auc']:.3f} |\n"
        for r in rows
    )
    return head + body


if __name__ == "__main__":
    main()
