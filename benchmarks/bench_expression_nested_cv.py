"""Time the full nested CV (5 outer folds; inner CV for tuning and calibration) of the default
signature ensemble and of CoxNet, against the plain baseline, on the same splits, side by side.

Cohorts: ACRG (most samples: 300 x 1,050 genes) and Yonsei (most genes: 109 x 19,236).
Prints seconds per full 5-fold run and the ratio to the baseline. Usage:

    python benchmarks/bench_expression_nested_cv.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from metastat.data.cohort import expression_frame, patients
from metastat.data.genes import collapse_genes
from metastat.data.outcomes import resolve_outcome
from metastat.data.registry import load_dataset
from metastat.evaluate.splits import patient_kfold
from metastat.expression.model import RiskModel
from metastat.expression.validate import _target, _usable

warnings.filterwarnings("ignore")


def time_models(name: str, outcome: str, models: list[str]) -> dict[str, float]:
    adata = collapse_genes(load_dataset(name))
    out = resolve_outcome(adata, outcome)
    mask = _usable(out, name)
    x, y, g = expression_frame(adata)[mask], _target(out, mask), patients(adata)[mask]
    splits = patient_kfold(g, np.nan_to_num(out.binary[mask]), n_splits=5, seed=0)
    seconds = {}
    for m in models:
        t0 = time.perf_counter()
        for s in splits:
            RiskModel(m, task=out.kind, horizon=out.horizon).fit(
                x.iloc[s.train], y[s.train], g[s.train]
            ).predict(x.iloc[s.test])
        seconds[m] = time.perf_counter() - t0
    return seconds


def main() -> None:
    print(f"{'cohort':<16}{'model':<20}{'seconds':>10}{'x baseline':>12}")
    for name in ("gastric_acrg", "gastric_yonsei"):
        secs = time_models(name, "recurrence", ["baseline_logistic", "ensemble", "coxnet"])
        base = secs["baseline_logistic"]
        for m, s in secs.items():
            print(f"{name:<16}{m:<20}{s:>10.1f}{s / base:>12.1f}")


if __name__ == "__main__":
    main()
