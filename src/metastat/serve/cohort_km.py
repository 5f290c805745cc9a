"""Kaplan-Meier curves of a model's training cohort by its risk groups (for the result page)."""

from __future__ import annotations

from typing import Any

import numpy as np

from metastat.errors import MetastatError


def training_km(model: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """KM step curves (low / high risk) of the training cohort, or ``available: False`` + why.

    The groups use the model's own median cut on the cohort it was fitted on (in-sample, hence
    optimistic); the page says so.
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    from metastat.data.cohort import expression_frame
    from metastat.data.genes import collapse_genes
    from metastat.data.outcomes import resolve_outcome
    from metastat.data.registry import dataset_names, load_dataset

    name, outcome = manifest.get("training_cohort"), manifest.get("outcome")
    if not name or not outcome or name not in dataset_names():
        return {"available": False, "reason": f"training cohort {name!r} is not a built-in dataset"}
    try:
        cohort = collapse_genes(load_dataset(name), "symbol")
        res = resolve_outcome(cohort, outcome)
    except MetastatError as exc:
        return {"available": False, "reason": str(exc)}
    if res.time is None:
        return {"available": False, "reason": f"outcome {outcome!r} has no follow-up times"}
    high = model.predict_frame(expression_frame(cohort))["high_risk"].to_numpy(dtype=bool)
    ok = np.isfinite(res.time) & np.isfinite(res.event)
    groups = {}
    for label, sel in (("low", ~high & ok), ("high", high & ok)):
        if sel.sum() < 2:
            continue
        t, s = kaplan_meier_estimator(res.event[sel].astype(bool), res.time[sel])
        groups[label] = {
            "n": int(sel.sum()),
            "events": int(res.event[sel].sum()),
            "time": [0.0, *np.round(t, 4).tolist()],
            "survival": [1.0, *np.round(s, 5).tolist()],
        }
    return {
        "available": bool(groups),
        "cohort": name,
        "outcome": outcome,
        "time_unit": res.time_unit or manifest.get("time_unit"),
        "horizon": manifest.get("horizon"),
        "groups": groups,
        "note": "training cohort split at the model's median risk (in-sample, optimistic)",
    }
