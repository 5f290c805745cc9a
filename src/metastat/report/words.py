"""The words of a report: models, outcome, horizon, cohort counts, metrics and a TRIPOD+AI card.

Everything here reads a run folder's ``run.json``, ``metrics.json`` and predictions table and
returns plain text for people (rounded numbers, no CIs on p-values, no differences of hazard
ratios); ``html.py`` lays it out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

#: model name -> what it is, in words a clinician can follow
MODEL_WORDS = {
    "ensemble": "signature ensemble: several gene-expression risk scores (signatures learned in "
    "the training data, co-expressed gene modules and any published signatures given) combined "
    "into one risk score by a penalised Cox regression",
    "ensemble_logistic": "signature ensemble: several gene-expression risk scores combined into "
    "one by a penalised logistic regression",
    "coxnet": "penalised (elastic-net) Cox regression on all genes, penalty chosen by inner "
    "cross-validation",
    "logistic": "tuned comparator: penalised (elastic-net) logistic regression on all genes "
    "(standardised), penalty chosen by inner cross-validation",
    "library": "signature library: published prognostic signatures and biological modules "
    "(proliferation, oestrogen receptor, HER2, immune, stroma ...) scored per patient and "
    "combined by a penalised Cox regression",
    "library_logistic": "signature library: published signatures and modules combined by a "
    "penalised logistic regression",
    "gbs": "gradient-boosted survival trees on the genes",
    "rsf": "random survival forest on the genes",
    "signature": "one published or user-supplied gene signature score",
    "baseline_logistic": "plain comparator: every gene standardised, ordinary ridge (L2) "
    "logistic regression with default settings, no tuning and no signatures",
    "baseline_coxnet": "plain comparator: every gene standardised, Cox regression with a "
    "default elastic-net penalty, no tuning and no signatures",
}

#: metric -> (label, what it means, kind); kind "p": no CI, no difference; "hr": no difference
METRICS: dict[str, tuple[str, str, str]] = {
    "auc": ("AUC", "discrimination of the binary outcome; 0.5 = chance, 1 = perfect", ""),
    "c_index": ("C-index (Harrell)", "ranking of time to event; 0.5 = chance", ""),
    "uno_c": ("C-index (Uno)", "as above, robust to censoring", ""),
    "td_auc": ("time-dependent AUC", "discrimination at the horizon", ""),
    "brier": ("Brier score", "mean squared error of the probability; lower is better", ""),
    "brier_at_horizon": ("Brier score at horizon", "lower is better", ""),
    "integrated_brier": ("integrated Brier score", "over follow-up; lower is better", ""),
    "calibration_slope": ("calibration slope", "1 = ideal; < 1: predictions too extreme", ""),
    "calibration_intercept": ("calibration intercept", "0 = ideal (calibration in the large)", ""),
    "sensitivity": ("sensitivity", "events in the high-risk group / all events", ""),
    "specificity": ("specificity", "non-events in the low-risk group / all non-events", ""),
    "accuracy": ("accuracy", "at the high / low risk-group cut", ""),
    "balanced_accuracy": ("balanced accuracy", "mean of sensitivity and specificity", ""),
    "hazard_ratio": ("hazard ratio", "high vs low risk group (Cox)", "hr"),
    "logrank_p": ("log-rank p", "high vs low risk group; a test, not an effect size", "p"),
}

UNIT_PER_YEAR = {"days": 365.25, "months": 12.0, "years": 1.0}


def format_p(p: float | None) -> str:
    """A p-value for people: '< 0.001', '0.03', '0.41' (never with a CI)."""
    if p is None or not math.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def _num(v: float | None, digits: int = 2, sign: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def format_estimate(v: dict | None, *, digits: int = 2, sign: bool = False) -> str:
    """'0.71 (0.65 to 0.77)' from ``{"estimate", "ci_low", "ci_high"}``; '' when absent."""
    if not v or v.get("estimate") is None:
        return ""
    est = _num(v["estimate"], digits, sign)
    lo, hi = v.get("ci_low"), v.get("ci_high")
    if lo is None or hi is None:
        return est
    return f"{est} ({_num(lo, digits, sign)} to {_num(hi, digits, sign)})"


def metric_rows(metrics: dict) -> list[dict[str, str]]:
    """Table rows (label, model, baseline, paired difference, meaning) of a ``metrics.json``.

    Known metrics come first in a fixed order; p-values are shown without CI or difference and
    hazard ratios without a difference (neither is meaningful).
    """
    keys = [k for k in metrics if not k.startswith(("baseline_", "delta_"))]
    keys.sort(key=lambda k: list(METRICS).index(k) if k in METRICS else len(METRICS))
    rows = []
    for k in keys:
        label, meaning, kind = METRICS.get(k, (k.replace("_", " "), "", ""))
        digits = 3 if "brier" in k else 2
        if kind == "p":
            model = format_p(metrics[k].get("estimate"))
            base = format_p((metrics.get(f"baseline_{k}") or {}).get("estimate"))
            delta = ""
        else:
            model = format_estimate(metrics[k], digits=digits)
            base = format_estimate(metrics.get(f"baseline_{k}"), digits=digits)
            delta = (
                ""
                if kind == "hr"
                else format_estimate(metrics.get(f"delta_{k}"), digits=digits, sign=True)
            )
        rows.append(
            {
                "key": k,
                "name": label,
                "model": model,
                "baseline": base,
                "delta": delta,
                "meaning": meaning,
            }
        )
    return rows


def model_words(name: str) -> str:
    """What model ``name`` is, in words (``<name>_comparator``: the tuned comparator)."""
    if name.endswith("_comparator"):
        base = name.removesuffix("_comparator")
        return (
            "tuned comparator: "
            + model_words(base).removeprefix("tuned comparator: ")
            + (", on standardised genes")
        )
    if name in MODEL_WORDS:
        return MODEL_WORDS[name]
    try:
        from metastat.expression.model import MODELS

        return MODELS[name][0]
    except (ImportError, KeyError):
        return f"model {name!r}"


def horizon_words(horizon: float | None, unit: str | None) -> str:
    """'5 years (60 months)'; or what the metrics use when there is no horizon."""
    if horizon is None:
        return (
            "none: binary metrics (AUC, calibration, decision curve) use the recorded event "
            "status over the whole follow-up; time-to-event metrics use the follow-up times"
        )
    per_year = UNIT_PER_YEAR.get(unit or "")
    if per_year is None:
        return f"{horizon:g} ({unit or 'time units as recorded'})"
    years = horizon / per_year
    yrs = f"{years:.1f}".rstrip("0").rstrip(".")
    return f"{yrs} years" if unit == "years" else f"{yrs} years ({horizon:,.0f} {unit})"


@dataclass(frozen=True)
class Counts:
    """Who the metrics are computed on (first model, first repeat of the predictions)."""

    samples: int
    patients: int
    events: int | None
    censored: int | None
    positives: int | None  # binary truth at the horizon (or recorded status)
    negatives: int | None
    median_follow_up: float | None  # of patients without an event

    def words(self, unit: str | None) -> str:
        parts = [f"{self.patients} patients ({self.samples} samples)"]
        if self.events is not None:
            parts.append(f"{self.events} events, {self.censored} censored")
        if self.positives is not None and self.events is None:
            parts.append(f"{self.positives} with the outcome, {self.negatives} without")
        if self.median_follow_up is not None:
            parts.append(
                f"median follow-up of event-free patients {self.median_follow_up:.0f} "
                f"{unit or 'time units'}"
            )
        return "; ".join(parts)


def counts(pred: pd.DataFrame) -> Counts:
    """Patients, events and follow-up of the predictions table."""
    d = pred
    if "model" in d.columns:
        d = d[d["model"] == d["model"].iloc[0]]
    if "repeat" in d.columns:
        d = d[d["repeat"] == d["repeat"].min()]
    patients = int(d["patient_id"].nunique()) if "patient_id" in d.columns else len(d)
    events = censored = follow = pos = neg = None
    if "event" in d.columns and d["event"].notna().any():
        e = d["event"].dropna()
        events, censored = int(e.sum()), int((e == 0).sum())
        if "time" in d.columns and d["time"].notna().any():
            t = d.loc[d["event"] == 0, "time"].dropna()
            follow = float(t.median()) if len(t) else None
    if "binary" in d.columns and d["binary"].notna().any():
        b = d["binary"].dropna()
        pos, neg = int(b.sum()), int((b == 0).sum())
    return Counts(len(d), patients, events, censored, pos, neg, follow)


def cohort_info(name: str | None) -> Any:
    """The registry entry of a built-in cohort, or None (user data, pooled cohorts)."""
    if not name:
        return None
    try:
        from metastat.data.registry import dataset_info

        return dataset_info(name)
    except Exception:  # user data or a pooled name: described from run.json only
        return None


def _columns(cohort: str | None, outcome: str) -> tuple[str, str] | None:
    """(description, "event column ..., follow-up ...") of a built-in cohort's outcome."""
    info = cohort_info(cohort)
    spec = info.outcomes.get(outcome) if info is not None else None
    if spec is None:
        return None
    cols = f"event column '{spec.event}', 1 = event"
    if spec.time:
        cols += f"; follow-up '{spec.time}' in {spec.time_unit}"
    return spec.description or outcome, cols


def outcome_words(meta: dict) -> str:
    """The outcome definition: name, description, event and time columns (per cohort), unit."""
    name = meta.get("outcome", "?")
    cohorts = (
        [meta.get("train"), meta.get("test")]
        if meta.get("kind") == "external"
        else [meta.get("cohort")]
    )
    found = [(c, _columns(c, name)) for c in cohorts]
    if any(f is None for _, f in found):
        unit = meta.get("time_unit")
        tail = f"; follow-up in {unit}" if unit else ""
        return f"{name} (event and time columns as given by the user{tail})"
    desc = found[0][1][0]  # type: ignore[index]
    if len(found) == 1:
        return f"{name} — {desc} ({found[0][1][1]})"  # type: ignore[index]
    per = "; ".join(f"{c}: {f[1]}" for c, f in found)  # type: ignore[index]
    return f"{name} — {desc} ({per})"


def run_words(meta: dict) -> str:
    """What was done, in one sentence."""
    if meta.get("kind") == "external":
        return (
            f"External validation: trained on {meta.get('train')} (n={meta.get('n_train')}), "
            f"tested unchanged on {meta.get('test')} (n={meta.get('n_test')}), "
            f"{meta.get('n_genes')} genes shared by both."
        )
    return (
        f"Internal validation by {meta.get('n_splits')}-fold patient-grouped cross-validation"
        f" x {meta.get('n_repeats', 1)} repeat(s) on {meta.get('cohort')}: every prediction is "
        "for a patient whose fold was not used to fit the model."
    )


def headline(rows: list[dict[str, str]], model: str, baseline: str) -> str:
    """The main result in one sentence (AUC when present, else C-index)."""
    for key in ("auc", "c_index"):
        row = next((r for r in rows if r["key"] == key), None)
        if row and row["model"]:
            text = f"{row['name']} of {model}: {row['model']}; {baseline}: {row['baseline']}"
            if row["delta"]:
                text += f"; paired difference {row['delta']}"
            return text + " (95% CI)."
    return ""


def model_card(
    meta: dict, metrics: dict, rows: list[dict[str, str]], n: Counts
) -> list[tuple[str, str]]:
    """TRIPOD+AI items (title, text) for this run."""
    external = meta.get("kind") == "external"
    names = [meta.get("train"), meta.get("test")] if external else [meta.get("cohort")]
    sources = []
    for nm in names:
        info = cohort_info(nm)
        sources.append(
            f"{nm}: {info.title}; {info.accession}; {info.citation}"
            if info is not None
            else f"{nm}: user-supplied data"
        )
    unit = meta.get("time_unit")
    limits = list(meta.get("warnings") or [])
    if n.events is not None and n.events < 100:
        limits.append(f"only {n.events} events: confidence intervals are wide")
    auc = metrics.get("auc") or metrics.get("c_index") or {}
    if auc.get("ci_low") is not None and auc["ci_low"] <= 0.5:
        limits.append("the 95% CI of discrimination includes chance (0.5)")
    if not external:
        limits.append(
            "internal validation only: performance in other hospitals, platforms or "
            "populations is unknown until validated externally"
        )
    if meta.get("horizon") is None:
        limits.append(
            "no fixed horizon: the binary outcome is the recorded status, whatever "
            "the length of follow-up"
        )
    limits.append("retrospective public cohort(s); case mix may differ from your patients")
    genes = meta.get("n_genes") or (str(meta.get("genes", "")).split("->")[-1].split("(")[0])
    return [
        ("Data source", " | ".join(sources)),
        (
            "Eligibility",
            "all samples of the cohort with a recorded outcome; inclusion criteria of the "
            "original study apply (see its publication)",
        ),
        ("Outcome", f"{outcome_words(meta)}; horizon: {horizon_words(meta.get('horizon'), unit)}"),
        (
            "Predictors",
            f"tumour gene expression ({str(genes).strip()} genes); preprocessing (scale "
            "detection, imputation, normalisation, filtering, standardisation) and tuning fitted "
            "on training data only",
        ),
        (
            "Sample size",
            n.words(unit) + (f"; training cohort n={meta.get('n_train')}" if external else ""),
        ),
        (
            "Missing data",
            "missing expression values imputed with training medians; samples without the "
            "outcome excluded; patients censored before a horizon excluded from binary metrics, "
            "never counted as event-free",
        ),
        ("Model", f"{meta.get('model')} — {model_words(meta.get('model', ''))}"),
        ("Comparator", f"{meta.get('baseline')} — {model_words(meta.get('baseline', ''))}"),
        (
            "Validation",
            run_words(meta) + f" 95% CIs from {meta.get('n_boot')} patient-bootstrap "
            f"replicates; seed {meta.get('seed')}.",
        ),
        ("Performance", headline(rows, meta.get("model", ""), meta.get("baseline", ""))),
        ("Limitations", "; ".join(limits) + "."),
        (
            "Intended use",
            "research use only: studying expression-based risk of the outcome above. Not "
            "validated for clinical decision-making and not a medical device.",
        ),
    ]
