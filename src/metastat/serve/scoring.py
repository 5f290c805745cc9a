"""Scoring expression profiles: parse an upload (CSV / TSV / JSON) and run a saved model.

Parsing reuses the project's table reader and cohort builder, so malformed input gets the same
clear messages as the CLI; scoring mirrors ``metastat expression predict``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metastat.data.cohort import expression_frame, make_cohort
from metastat.data.genes import collapse_genes
from metastat.data.tables import read_table
from metastat.errors import InputError
from metastat.expression.model import RiskModel

TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
PROFILE_SUFFIXES = (*TABLE_SUFFIXES, ".json")
PROFILE_CONTENT_TYPES = (
    "text/csv",
    "text/tab-separated-values",
    "text/plain",
    "application/json",
    "application/csv",
    "application/vnd.ms-excel",  # what some browsers call a .csv
    "application/octet-stream",
)


def profile_from_table(data: bytes, suffix: str) -> pd.DataFrame:
    """Samples x genes from CSV / TSV bytes (first column = sample id)."""
    if suffix not in TABLE_SUFFIXES:
        raise InputError(f"unsupported table type {suffix!r}; use {', '.join(PROFILE_SUFFIXES)}")
    with tempfile.TemporaryDirectory(prefix="metastat-upload-") as tmp:
        path = Path(tmp) / f"profile{suffix}"
        path.write_bytes(data)
        try:
            frame = read_table(path)
        except InputError as exc:  # drop the temporary path from the message
            raise InputError(str(exc).replace(str(path), "uploaded table")) from exc
    return frame


def profile_from_json(data: bytes | str | Any) -> pd.DataFrame:
    """Samples x genes from ``{"profiles": [{"sample_id": ..., "expression": {gene: value}}]}``.

    A bare ``{gene: value}`` object is one profile (sample id ``sample``).
    """
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"malformed JSON: {exc}") from exc
    if isinstance(data, dict) and "profiles" in data:
        items = data["profiles"]
    elif (
        isinstance(data, dict)
        and data
        and all(not isinstance(v, dict | list) for v in data.values())
    ):
        items = [{"sample_id": "sample", "expression": data}]
    else:
        raise InputError(
            'JSON must be {"profiles": [{"sample_id": "S1", "expression": {"GENE": value}}]} '
            "or a single {gene: value} object"
        )
    if not isinstance(items, list) or not items:
        raise InputError('"profiles" must be a non-empty list')
    ids: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("expression"), dict):
            raise InputError(f'profile {i}: needs an "expression" object of gene -> value')
        if not item["expression"]:
            raise InputError(f"profile {i}: the expression object is empty")
        ids.append(str(item.get("sample_id", f"sample{i + 1}")))
    genes = list(dict.fromkeys(str(g) for item in items for g in item["expression"]))
    column = {g: j for j, g in enumerate(genes)}
    values = np.full((len(items), len(genes)), np.nan)
    for i, item in enumerate(items):
        for gene, value in item["expression"].items():
            values[i, column[str(gene)]] = _number(value, ids[i], gene)
    return pd.DataFrame(values, index=pd.Index(ids, name="sample_id"), columns=genes)


def _number(value: Any, sample: str, gene: str) -> float:
    if value is None:
        return np.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise InputError(
            f"non-numeric value {value!r} for gene {gene!r} of sample {sample!r}; expression "
            "values must be numbers (null for missing)"
        ) from None


def parse_profile(data: bytes, suffix: str) -> pd.DataFrame:
    """Dispatch on the (already validated) file suffix."""
    if not data.strip():
        raise InputError("the uploaded profile is empty")
    return profile_from_json(data) if suffix == ".json" else profile_from_table(data, suffix)


def _expression(frame: pd.DataFrame) -> pd.DataFrame:
    """Samples x gene symbols, validated like any cohort (ids, numbers, duplicate genes)."""
    return expression_frame(collapse_genes(make_cohort(frame, name="upload"), "symbol"))


def score_profiles(
    model: RiskModel, manifest: dict[str, Any], frame: pd.DataFrame, *, top: int, max_samples: int
) -> dict[str, Any]:
    """Risk, probability at the horizon, risk group, percentile and top genes per profile."""
    if len(frame) > max_samples:
        raise InputError(f"{len(frame)} profiles in one request; the limit is {max_samples}")
    x = _expression(frame)
    genes_in = model.preprocessor_.genes_in_
    missing = model.preprocessor_.missing_genes(x)
    if len(missing) == len(genes_in):
        raise InputError(
            "none of the model's genes are in the profile: columns must be gene symbols "
            f"(e.g. {', '.join(map(str, genes_in[:5]))})"
        )
    pred = model.predict_frame(x)
    explanations = model.explain(x, top=top)
    prob = pred["prob"].to_numpy(dtype=float)
    return {
        "genes_used": len(genes_in),
        "genes_imputed": len(missing),
        "missing_genes": [str(g) for g in missing[:50]],
        "warnings": model.preprocessor_.check_scale(x),
        "predictions": [
            {
                "sample_id": str(sid),
                "risk": float(r.risk),
                "probability": None if not np.isfinite(p) else float(p),
                "risk_group": "high" if r.high_risk else "low",
                "risk_percentile": int(r.risk_percentile),
                "top_genes": e["genes"],
            }
            for (sid, r), p, e in zip(pred.iterrows(), prob, explanations, strict=True)
        ],
    }
