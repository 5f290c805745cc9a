"""Planted-witness benchmark: every MIL model vs mean pooling over several seeds.

Bags of real H&E tile embeddings (see metastat.mil.planted); positive bags hold 1-10 % tumour
tiles. Reports slide-level AUC (patient-bootstrap CI, paired delta vs mean pooling, from
metastat.evaluate) and instance-level localisation AUC (attention and attention x gradient
ranking the planted tiles, test folds only), mean +/- sd over seeds.

Usage: python benchmarks/bench_mil_planted.py [--out /work/artifacts/mil/planted] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from metastat.evaluate.summary import compare, metrics_json
from metastat.mil.checkpoint import Checkpoint
from metastat.mil.config import MILConfig
from metastat.mil.heatmap import tile_scores
from metastat.mil.planted import PlantedBags, load_pools, planted_data
from metastat.mil.train import cross_validate

MODELS = ["mean", "abmil", "clam_sb", "clam_mb", "max", "transmil"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/artifacts/mil/planted")
    ap.add_argument("--bags", type=int, default=120)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tiles", default="100,200", help="min,max tiles per bag")
    ap.add_argument("--witness", default="0.01,0.10", help="min,max tumour fraction")
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--bag-shift", type=float, default=0.25)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = PlantedBags(
        load_pools(),
        n_bags=args.bags,
        n_tiles=tuple(int(v) for v in args.tiles.split(",")),
        witness_rate=tuple(float(v) for v in args.witness.split(",")),
        noise=args.noise,
        bag_shift=args.bag_shift,
        seed=2026,
    )
    data = planted_data(gen)
    cfg = MILConfig(
        seeds=[int(s) for s in args.seeds.split(",")],
        n_splits=args.folds,
        epochs=args.epochs,
        min_epochs=5,
        patience=4,
        hidden_dim=64,
        attention_dim=32,
        lr=1e-3,
        batch_size=4,
        max_tiles=None,
        n_boot=1000,
        threads=args.threads,
    )
    (out / "config.json").write_text(
        json.dumps(
            {
                "bench": vars(args),
                "planted": {
                    "n_bags": gen.n_bags,
                    "n_tiles": gen.n_tiles,
                    "witness_rate": gen.witness_rate,
                    "noise": gen.noise,
                    "bag_shift": gen.bag_shift,
                    "seed": gen.seed,
                },
                "mil": cfg.model_dump(mode="json"),
            },
            indent=2,
        )
    )
    for name in args.models.split(","):
        if (out / f"pred_{name}.csv").exists():
            continue
        inst: list[dict] = []

        def on_fold(res, split, inst=inst) -> None:
            ck = Checkpoint(res.name, res.model, res.spec, res.head, None, {})
            for u in split.test:
                lab = gen.instance_labels(int(u))
                if lab.any():
                    x = data.bag(int(u))
                    inst.append(
                        {
                            "seed": res.seed,
                            "fold": split.fold,
                            "bag": int(u),
                            "attention": roc_auc_score(lab, tile_scores(ck, x)),
                            "attention_x_grad": roc_auc_score(
                                lab, tile_scores(ck, x, "attention_x_grad")
                            ),
                        }
                    )

        t0 = time.perf_counter()
        pred, summary = cross_validate(cfg, data, models=[name], callback=on_fold, progress=True)
        pred.to_csv(out / f"pred_{name}.csv", index=False)
        pd.DataFrame(inst).to_csv(out / f"instance_{name}.csv", index=False)
        (out / f"summary_{name}.json").write_text(
            json.dumps({**summary, "wall_seconds": time.perf_counter() - t0}, indent=2, default=str)
        )
        print(
            f"{name}: {summary['mean_sd'][name]['auc']} in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    tabulate(out, cfg)


def tabulate(out: Path, cfg: MILConfig) -> None:
    """Results table (markdown + JSON) from the per-model files."""
    base = pd.read_csv(out / "pred_mean.csv")
    rows, full = [], {}
    for name in MODELS:
        if not (out / f"pred_{name}.csv").exists():
            continue
        pred = pd.read_csv(out / f"pred_{name}.csv")
        per_seed = pred.groupby("repeat").apply(
            lambda d: roc_auc_score(d["binary"], d["risk"]), include_groups=False
        )
        inst = pd.read_csv(out / f"instance_{name}.csv")
        inst_seed = inst.groupby("seed")[["attention", "attention_x_grad"]].mean()
        est = (
            compare(
                pd.concat([pred, base]), primary=name, baseline="mean", n_boot=cfg.n_boot, seed=0
            )
            if name != "mean"
            else None
        )
        m = metrics_json(est) if est is not None else {}
        summ = json.loads((out / f"summary_{name}.json").read_text())
        row = {
            "model": name,
            "slide_auc_mean_sd": f"{per_seed.mean():.3f} ± {per_seed.std(ddof=1):.3f}",
            "slide_auc_ci": _ci(m.get("auc")) if m else "",
            "delta_auc_vs_mean": _ci(m.get("delta_auc")) if m else "",
            "instance_auc_attention": f"{inst_seed['attention'].mean():.3f} ± "
            f"{inst_seed['attention'].std(ddof=1):.3f}",
            "instance_auc_attn_x_grad": f"{inst_seed['attention_x_grad'].mean():.3f} ± "
            f"{inst_seed['attention_x_grad'].std(ddof=1):.3f}",
            "s_per_epoch": round(summ["seconds_per_epoch"][name], 2),
        }
        if name == "mean":
            est_m = compare(
                pd.concat([base.assign(model="m2"), base]),
                primary="m2",
                baseline="mean",
                n_boot=cfg.n_boot,
                seed=0,
            )
            row["slide_auc_ci"] = _ci(metrics_json(est_m)["auc"])
        rows.append(row)
        full[name] = {
            "row": row,
            "metrics": m,
            "per_seed_auc": per_seed.tolist(),
            "instance_per_seed": inst_seed.to_dict(),
        }
    table = pd.DataFrame(rows)
    (out / "results.json").write_text(json.dumps(full, indent=2))
    (out / "results.md").write_text(
        table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False)
    )
    print(table.to_string(index=False))


def _ci(v: dict | None) -> str:
    if not v or v.get("estimate") is None:
        return ""
    return f"{v['estimate']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
