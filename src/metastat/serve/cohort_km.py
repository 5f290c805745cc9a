"""Kaplan-Meier curves of a model's training cohort by risk group (for the profile page).

Preferred: the cross-validated groups of a matching evaluation run in the models directory
(same cohort, outcome and model; each patient grouped by a model that never saw them). Without
one, the saved model's own median cut on the cohort it was fitted on (in-sample: it overstates
the separation, and the page says so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metastat.errors import MetastatError


def _curves(time: np.ndarray, event: np.ndarray, high: np.ndarray) -> dict[str, Any]:
    from sksurv.nonparametric import kaplan_meier_estimator

    ok = np.isfinite(time) & np.isfinite(event)
    groups = {}
    for label, sel in (("low", ~high & ok), ("high", high & ok)):
        if sel.sum() < 2:
            continue
        t, s = kaplan_meier_estimator(event[sel].astype(bool), time[sel])
        groups[label] = {
            "n": int(sel.sum()),
            "events": int(event[sel].sum()),
            "time": [0.0, *np.round(t, 4).tolist()],
            "survival": [1.0, *np.round(s, 5).tolist()],
        }
    return groups


def _matching_run(manifest: dict[str, Any], runs: dict[str, Path]) -> tuple[str, Path] | None:
    want = tuple(manifest.get(k) for k in ("training_cohort", "outcome", "model"))
    for name, folder in sorted(runs.items()):
        meta = json.loads((folder / "run.json").read_text())
        have = tuple(meta.get(k) for k in ("cohort", "outcome", "model"))
        if have == want and meta.get("kind") == "cv":
            return name, folder
    return None


def _from_run(name: str, folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    pred = pd.read_csv(folder / "predictions.csv")
    pred = pred[(pred["model"] == manifest["model"]) & (pred["repeat"] == 0)]
    meta = json.loads((folder / "run.json").read_text())
    return {
        "groups": _curves(
            pred["time"].to_numpy(float),
            pred["event"].to_numpy(float),
            pred["high_risk"].to_numpy(bool),
        ),
        "time_unit": meta.get("time_unit") or manifest.get("time_unit"),
        "source": f"run {name}",
        "note": f"cross-validated risk groups ({meta.get('n_splits')}-fold run {name!r}: each "
        "patient grouped by a model that did not see them)",
    }


def _in_sample(model: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    from metastat.data.cohort import expression_frame
    from metastat.data.genes import collapse_genes
    from metastat.data.outcomes import resolve_outcome
    from metastat.data.registry import dataset_names, load_dataset

    name, outcome = manifest.get("training_cohort"), manifest.get("outcome")
    if not name or not outcome or name not in dataset_names():
        return {"reason": f"training cohort {name!r} is not a built-in dataset"}
    try:
        cohort = collapse_genes(load_dataset(name), "symbol")
        res = resolve_outcome(cohort, outcome)
    except MetastatError as exc:
        return {"reason": str(exc)}
    if res.time is None:
        return {"reason": f"outcome {outcome!r} has no follow-up times"}
    high = model.predict_frame(expression_frame(cohort))["high_risk"].to_numpy(dtype=bool)
    return {
        "groups": _curves(res.time, np.asarray(res.event, float), high),
        "time_unit": res.time_unit or manifest.get("time_unit"),
        "source": "in-sample",
        "note": "in-sample risk groups (the model's median cut on its own training data): this "
        "overstates the separation; add a cross-validated run to the models directory",
    }


def training_km(model: Any, manifest: dict[str, Any], runs: dict[str, Path]) -> dict[str, Any]:
    """KM step curves (low / high risk) of the training cohort, or ``available: False`` + why."""
    run = _matching_run(manifest, runs)
    out = _from_run(*run, manifest) if run else _in_sample(model, manifest)
    return {
        "available": bool(out.get("groups")),
        "cohort": manifest.get("training_cohort"),
        "outcome": manifest.get("outcome"),
        "horizon": manifest.get("horizon"),
        **out,
    }
