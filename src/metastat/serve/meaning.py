"""Words for numbers: outcome names spelled out, horizons in years / months, metric flags."""

from __future__ import annotations

from typing import Any

OUTCOME_NAMES: dict[str, str] = {
    "recurrence": "recurrence",
    "dfs": "disease-free survival (recurrence or death)",
    "rfs": "recurrence-free survival (recurrence or death)",
    "dmfs": "distant-metastasis-free survival (distant metastasis or death)",
    "os": "overall survival (death from any cause)",
    "pfi": "progression-free interval",
    "dss": "disease-specific survival",
    "metastasis": "distant metastasis",
    "lymph_node": "lymph-node metastasis",
}
#: the event a probability is about, per outcome ("probability of <event>")
OUTCOME_EVENTS: dict[str, str] = {
    "recurrence": "recurrence",
    "dfs": "recurrence or death",
    "rfs": "recurrence or death",
    "dmfs": "distant metastasis or death",
    "os": "death from any cause",
    "pfi": "progression",
    "dss": "death from the disease",
    "metastasis": "distant metastasis",
    "lymph_node": "lymph-node metastasis",
}
DAYS_PER = {"days": 1.0, "months": 365.25 / 12, "years": 365.25}
#: a calibration slope outside this range is flagged (over- / under-confident probabilities)
CALIBRATION_SLOPE_OK = (0.8, 1.25)


def outcome_name(outcome: str | None) -> str | None:
    """``dmfs`` -> ``distant-metastasis-free survival (...)``; unknown names pass through."""
    if not outcome:
        return None
    return OUTCOME_NAMES.get(outcome.lower(), outcome.replace("_", " "))


def outcome_event(outcome: str | None) -> str:
    """What the probability is the probability of."""
    if not outcome:
        return "the event"
    return OUTCOME_EVENTS.get(outcome.lower(), outcome.replace("_", " "))


def horizon_text(horizon: float | None, unit: str | None) -> str | None:
    """``1826.25 days`` -> ``5 years``; ``18 months`` -> ``18 months``; ``None`` -> ``None``."""
    if horizon is None or unit not in DAYS_PER:
        return None if horizon is None else f"{horizon:g} {unit or ''}".strip()
    days = float(horizon) * DAYS_PER[str(unit)]
    years = days / 365.25
    if abs(years - round(years)) < 0.02 and round(years) >= 1:
        n = round(years)
        return f"{n} year{'s' if n != 1 else ''}"
    months = days / DAYS_PER["months"]
    if abs(months - round(months)) < 0.05 and round(months) >= 1:
        n = round(months)
        return f"{n} month{'s' if n != 1 else ''}"
    return f"{round(days)} days"


def calibration_flag(slope: float | None) -> str | None:
    """A warning when a calibration slope is outside :data:`CALIBRATION_SLOPE_OK`."""
    lo, hi = CALIBRATION_SLOPE_OK
    if slope is None or lo <= slope <= hi:
        return None
    kind = "too extreme (over-confident)" if slope < lo else "too cautious (under-confident)"
    return (
        f"calibration slope {slope:.2f} is outside {lo}-{hi}: the predicted probabilities are "
        f"{kind}; recalibrate before reading them as risks"
    )


def is_p_value(metric: str) -> bool:
    """P-values are reported as they are, never with a confidence interval."""
    m = metric.lower()
    return m in ("p", "pvalue", "p_value") or m.endswith(("_p", "_pvalue", "_p_value"))


def metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Metrics of a run as rows: model, comparator and their paired difference side by side.

    ``metrics.json`` holds ``name``, ``baseline_name`` and ``delta_name`` (model minus the tuned
    comparator on the same splits); each is a number or ``{"estimate", "ci_low", "ci_high"}``.
    """

    def cell(v: Any, p: bool) -> dict[str, Any] | None:
        if v is None:
            return None
        if not isinstance(v, dict):
            v = {"estimate": v}
        if v.get("estimate") is None and v.get("value") is not None:
            v = {"estimate": v["value"], **v}
        out = {"estimate": v.get("estimate")}
        if not p:
            out |= {"ci_low": v.get("ci_low"), "ci_high": v.get("ci_high")}
        return out

    rows = []
    for name, value in metrics.items():
        if name.startswith(("baseline_", "delta_")):
            continue
        if not isinstance(value, dict | int | float) or isinstance(value, bool):
            continue
        p = is_p_value(name)
        row: dict[str, Any] = {
            "metric": name,
            "p_value": p,
            "model": cell(value, p),
            "comparator": cell(metrics.get(f"baseline_{name}"), p),
            "difference": cell(metrics.get(f"delta_{name}"), p),
        }
        if "calibration_slope" in name.lower() and row["model"]:
            row["flag"] = calibration_flag(row["model"]["estimate"])
        rows.append(row)
    return rows
