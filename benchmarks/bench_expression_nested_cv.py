"""Speed of `metastat expression evaluate` (5-fold CV, 1,000 bootstrap replicates) on ACRG
(300 x 1,050 genes) and Yonsei (109 x 19,236 genes), and of each model's nested CV alone.

Prints, per cohort: the whole evaluate (default + comparator fits, bootstrap CIs) in seconds, and
the 5-fold nested CV (inner tuning + calibration cross-fits) of each model alone with its ratio
to the tuned comparator's time, measured side by side in one process. Usage:

    python benchmarks/bench_expression_nested_cv.py [--models coxnet,ensemble,library]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

from metastat.data.registry import load_dataset
from metastat.expression.validate import cross_validate
from metastat.progress import set_quiet

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

COHORTS = (("gastric_acrg", "recurrence", 30.0), ("gastric_yonsei", "recurrence", 60.0))


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="coxnet,library,ensemble")
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    set_quiet(True)
    for name, outcome, goal in COHORTS:
        adata = load_dataset(name)
        total = _seconds(
            lambda adata=adata, outcome=outcome: cross_validate(
                adata, outcome, n_boot=args.n_boot, progress=False
            )
        )
        print(f"{name}: evaluate (default vs comparator, {args.n_boot} bootstraps) {total:.1f} s "
              f"(goal < {goal:.0f} s)")  # fmt: skip
        comp = _seconds(
            lambda adata=adata, outcome=outcome: cross_validate(
                adata, outcome, model="logistic", n_boot=0, progress=False
            )
        )
        print(f"  tuned comparator alone (5-fold nested CV): {comp:.1f} s (1.0x)")
        for m in args.models.split(","):
            for rep in ("standardise", "rank"):
                s = _seconds(
                    lambda adata=adata, outcome=outcome, m=m, rep=rep: cross_validate(
                        adata, outcome, model=m, baseline="logistic", representation=rep,
                        baseline_representation="standardise", n_boot=0, progress=False,
                    )
                )  # fmt: skip
                # the run holds the model and the comparator: subtract the comparator's share
                print(f"  {m}/{rep}: {max(s - comp, 0):.1f} s ({max(s - comp, 0) / comp:.2f}x)")


if __name__ == "__main__":
    main()
