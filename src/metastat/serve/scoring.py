"""Scoring expression profiles: parse an upload (CSV / TSV / JSON) straight onto the model's genes.

The fast path reads only the header of a table (or the keys of a JSON object) to find the model's
gene columns, checks the request's width, cells and nesting depth *before* parsing, and then
parses and validates only those columns, with the project's table messages
(:func:`metastat.data.tables.to_numeric_matrix`, :func:`~metastat.data.tables.check_unique_ids`).
The cost of a request therefore grows with the model's genes, not with the upload's width.
Duplicated gene columns are collapsed by the project's MaxMean rule, like
:func:`metastat.data.genes.collapse_genes`. Columns the model does not use are counted, not read.

Missing values are counted per profile: a profile missing (absent or empty / NA) more than the
model's allowed fraction of genes is refused, naming the sample; fewer are imputed with the
training median (the model's own rule) and reported per profile.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from metastat.data.tables import NA_TOKENS, check_unique_ids, to_numeric_matrix
from metastat.errors import InputError
from metastat.expression.model import RiskModel
from metastat.serve.limits import Limits, too_large
from metastat.serve.meaning import horizon_text, outcome_event, outcome_name

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
WHERE = "uploaded table"
_PLAIN = (float, int, type(None))
_NA = frozenset(NA_TOKENS) | {"None", "n/a", "#N/A", "-nan", "-NaN"}
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


@dataclass(frozen=True)
class Profiles:
    """Parsed profiles: samples x the model's genes present in the upload (NaN = missing)."""

    values: pd.DataFrame
    columns_in_upload: int


def _check_rows(n: int, limits: Limits) -> None:
    if n > limits.max_samples:
        raise InputError(f"{n} profiles in one request; the limit is {limits.max_samples}")


def _check_ids(ids: Sequence[str], where: str) -> pd.Index:
    """Sample ids: stripped, non-empty, not a missing-value token, unique."""
    index = pd.Index([str(i).strip() for i in ids], name="sample_id")
    for row, sid in enumerate(index, start=1):
        if sid in NA_TOKENS and sid:
            raise InputError(
                f"{where}: sample id {sid!r} on data row {row} reads as a missing value; give "
                "every profile a real sample id"
            )
    check_unique_ids(index, where)
    return index


def _max_mean(values: np.ndarray, genes: list[str]) -> tuple[np.ndarray, list[str]]:
    """One column per gene: the duplicate with the highest mean wins (first on ties)."""
    if len(set(genes)) == len(genes):
        return values, genes
    with np.errstate(all="ignore"):
        means = np.nan_to_num(np.nanmean(values, axis=0), nan=-np.inf)
    best: dict[str, int] = {}
    for j, g in enumerate(genes):
        if g not in best or means[j] > means[best[g]]:
            best[g] = j
    keep = sorted(best.values())
    return values[:, keep], [genes[j] for j in keep]


# -- tables -------------------------------------------------------------------------------------
def profile_from_table(data: bytes, genes: Sequence[str], limits: Limits) -> Profiles:
    """Samples x model genes from CSV / TSV bytes (first column = sample id)."""
    end = data.find(b"\n")
    head = (data if end < 0 else data[:end]).decode("utf-8", errors="replace").rstrip("\r")
    if not head.strip():
        raise InputError(f"{WHERE}: the file is empty (no header line).")
    sep = "\t" if head.count("\t") > head.count(",") else ","
    if head.count(sep) + 1 > limits.max_columns:
        raise too_large("columns:", head.count(sep) + 1, limits.max_columns)
    header = [h.strip() for h in next(csv.reader([head], delimiter=sep))]
    body = data[end + 1 :] if end >= 0 else b""
    n_rows = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    if n_rows * len(header) > limits.max_cells:
        raise too_large("cells (rows x columns):", n_rows * len(header), limits.max_cells)
    wanted = set(genes)
    if header[0] in wanted:
        raise InputError(
            f"{WHERE}: no sample-id column: the first column {header[0]!r} is a gene of the "
            "model; put the sample ids in the first column (header e.g. 'sample_id')"
        )
    pos = [j for j, name in enumerate(header) if j and name in wanted]
    if not pos:
        raise _no_genes(genes)
    ids, cells = _rows(body, sep, len(header), pos)
    _check_rows(len(ids), limits)
    index = _check_ids(ids, WHERE)
    names = [header[j] for j in pos]
    values, names = _max_mean(_numbers(cells, index, names), names)
    return Profiles(pd.DataFrame(values, index=index, columns=names), len(header) - 1)


def _rows(body: bytes, sep: str, width: int, pos: list[int]) -> tuple[list[str], list[list[str]]]:
    """Sample ids and the cells of the columns at ``pos``, row by row (blank lines skipped)."""
    ids: list[str] = []
    cells: list[list[str]] = []
    text = io.StringIO(body.decode("utf-8", errors="replace"), newline="")
    try:
        for n, row in enumerate(csv.reader(text, delimiter=sep), start=1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                raise InputError(
                    f"{WHERE}: the header has {width} columns but data row {n} has {len(row)}; "
                    "check the delimiter and that the header names every column."
                )
            ids.append(row[0])
            cells.append([row[j] for j in pos])
    except csv.Error as exc:
        raise InputError(f"{WHERE}: cannot be parsed as a table ({exc}).") from exc
    if not ids:
        raise InputError(f"{WHERE}: the table has a header but no profiles")
    return ids, cells


def _numbers(cells: list[list[str]], index: pd.Index, names: list[str]) -> np.ndarray:
    """Cells -> float64 in one vectorised pass; on any bad or infinite cell, the project's
    table check names it (:func:`~metastat.data.tables.to_numeric_matrix`)."""
    flat = ["nan" if (c := cell.strip()) in _NA else c for row in cells for cell in row]
    try:
        values = np.array(flat, dtype=np.float64)
        values = values.reshape(len(cells), len(names))
        if np.isfinite(values).sum() == (~np.isnan(values)).sum():
            return values
    except ValueError:
        pass
    grid = np.array(flat, dtype=object).reshape(len(cells), len(names))
    frame = pd.DataFrame(grid, index=index, columns=pd.Index(names))
    return to_numeric_matrix(frame, WHERE)


# -- JSON ---------------------------------------------------------------------------------------
def _json_shape(data: bytes, limits: Limits) -> None:
    """Nesting depth and number of key / value pairs, counted on the raw bytes (strings blanked
    first); skipped when a plain count of brackets and colons is already within the limits."""
    if data.count(b"[") + data.count(b"{") <= limits.max_depth and (
        data.count(b":") <= limits.max_cells
    ):
        return
    bare = np.frombuffer(_JSON_STRING.sub(b'""', data), dtype=np.uint8)
    step = np.isin(bare, (ord("{"), ord("["))).astype(np.int32)
    step -= np.isin(bare, (ord("}"), ord("]"))).astype(np.int32)
    depth = int(np.cumsum(step).max()) if len(step) else 0
    if depth > limits.max_depth:
        raise too_large("JSON nesting depth", depth, limits.max_depth)
    pairs = int(np.count_nonzero(bare == ord(":")))
    if pairs > limits.max_cells:
        raise too_large("JSON values", pairs, limits.max_cells)


def profile_from_json(data: bytes, genes: Sequence[str], limits: Limits) -> Profiles:
    """Samples x model genes from ``{"profiles": [{"sample_id", "expression": {gene: value}}]}``.

    A bare ``{gene: value}`` object is one profile (sample id ``sample``).
    """
    _json_shape(data, limits)
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed JSON: {exc}") from exc
    if isinstance(doc, dict) and "profiles" in doc:
        items = doc["profiles"]
    elif (
        isinstance(doc, dict) and doc and not any(isinstance(v, dict | list) for v in doc.values())
    ):
        items = [{"sample_id": "sample", "expression": doc}]
    else:
        raise InputError(
            'JSON must be {"profiles": [{"sample_id": "S1", "expression": {"GENE": value}}]} '
            "or a single {gene: value} object"
        )
    if not isinstance(items, list) or not items:
        raise InputError('"profiles" must be a non-empty list')
    _check_rows(len(items), limits)
    raw_ids: list[str] = []
    keys: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("expression"), dict):
            raise InputError(f'profile {i}: needs an "expression" object of gene -> value')
        if not item["expression"]:
            raise InputError(f"profile {i}: the expression object is empty")
        sid = item.get("sample_id", f"sample{i + 1}")
        raw_ids.append("" if sid is None else str(sid))
        if len(keys) <= limits.max_columns:
            keys.update(item["expression"])
    if len(keys) > limits.max_columns:
        raise too_large("distinct genes: more than", limits.max_columns, limits.max_columns)
    index = _check_ids(raw_ids, "uploaded JSON")
    present = [g for g in genes if g in keys]
    if not present:
        raise _no_genes(genes)
    values = np.full((len(items), len(present)), np.nan)
    for i, item in enumerate(items):
        expr = item["expression"]
        row = [expr.get(g) for g in present]
        if all(type(v) in _PLAIN for v in row):  # numbers and nulls: one vectorised copy
            values[i] = np.array(row, dtype=float)
            continue
        for j, gene in enumerate(present):
            if gene in expr:
                values[i, j] = _number(expr[gene], index[i], gene)
    if np.isinf(values).any():
        i, j = map(int, np.argwhere(np.isinf(values))[0])
        raise InputError(
            f"uploaded JSON: infinite value in column {present[j]!r}, row {index[i]!r}."
        )
    return Profiles(pd.DataFrame(values, index=index, columns=present), len(keys))


def _number(value: Any, sample: str, gene: str) -> float:
    if value is None:
        return np.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if text in NA_TOKENS:
        return np.nan
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"non-numeric value {value!r} for gene {gene!r} of sample {sample!r}; expression "
            "values must be numbers (null for missing)"
        ) from None


def _no_genes(genes: Sequence[str]) -> InputError:
    return InputError(
        "none of the model's genes are in the profile: columns must be gene symbols "
        f"(e.g. {', '.join(map(str, genes[:5]))})"
    )


def parse_profile(data: bytes, suffix: str, genes: Sequence[str], limits: Limits) -> Profiles:
    """Dispatch on the (already validated) file suffix."""
    if not data.strip():
        raise InputError("the uploaded profile is empty")
    if suffix == ".json":
        return profile_from_json(data, genes, limits)
    if suffix not in TABLE_SUFFIXES:
        raise InputError(f"unsupported table type {suffix!r}; use {', '.join(PROFILE_SUFFIXES)}")
    return profile_from_table(data, genes, limits)


# -- scoring ------------------------------------------------------------------------------------
def model_genes(model: RiskModel) -> list[str]:
    """The genes the model reads (its preprocessor's input genes), in order."""
    return [str(g) for g in model.preprocessor_.genes_in_]


def _split_warnings(messages: list[str], ids: pd.Index) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for msg in messages:
        sid = next((s for s in ids if msg.startswith(f"sample {s!r}:")), None)
        out.setdefault("" if sid is None else str(sid), []).append(msg)
    return out


def _interval(pred: pd.DataFrame, model: RiskModel) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The model's per-patient probability interval, when it provides one."""
    cols = ("probability_ci_low", "probability_ci_high")
    if not all(c in pred.columns for c in cols):
        nan = np.full(len(pred), np.nan)
        return nan, nan, None
    method = getattr(model, "interval_method", None)
    lo, hi = (pred[c].to_numpy(dtype=float) for c in cols)
    return lo, hi, str(method) if method else "given by the model (method not stated)"


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def score_profiles(
    model: RiskModel, manifest: dict[str, Any], profiles: Profiles, *, top: int
) -> dict[str, Any]:
    """Risk, probability (with its interval when the model has one), risk group, percentile,
    top genes and warnings per profile."""
    genes = model_genes(model)
    x = profiles.values.reindex(columns=genes)
    present = set(profiles.values.columns)
    absent = [g for g in genes if g not in present]
    n_missing = np.isnan(x.to_numpy(dtype=float)).sum(axis=1)
    allowed = float(model.preprocessor_.max_missing_genes)
    bad = np.flatnonzero(n_missing > allowed * len(genes))
    if len(bad):
        named = ", ".join(f"{x.index[i]!r} ({n_missing[i]} of {len(genes)})" for i in bad[:5])
        raise InputError(
            f"{len(bad)} profile(s) miss more than {allowed:.0%} of the model's {len(genes)} "
            f"genes (absent or empty), e.g. {named}; at most {int(allowed * len(genes))} may "
            "be imputed: check gene identifiers (symbols vs probes), the platform and empty cells"
        )
    platform_free = bool(getattr(model, "platform_independent", False))
    per_sample = _split_warnings(model.preprocessor_.check_scale(x), x.index)
    shifted = {sid for sid in per_sample if sid}
    if shifted and not platform_free and len(shifted) == len(x):
        raise InputError(
            " ".join(m for sid in x.index for m in per_sample.get(str(sid), []))
            + " Refused: this model is not platform-independent, so its score would be wrong."
        )
    ok = [str(s) not in shifted or platform_free for s in x.index]
    scored = x[ok]
    pred = model.predict_frame(scored)
    explanations = model.explain_genes(scored, top=top)
    lo, hi, method = _interval(pred, model)
    prob = pred["prob"].to_numpy(dtype=float)
    rows: dict[str, dict[str, Any]] = {}
    for k, ((sid, r), e) in enumerate(zip(pred.iterrows(), explanations, strict=True)):
        rows[str(sid)] = {
            "risk": float(r.risk),
            "probability": _finite(prob[k]),
            "probability_interval": None
            if not np.isfinite(lo[k])
            else {"low": float(lo[k]), "high": float(hi[k]), "level": 0.95},
            "risk_group": "high" if r.high_risk else "low",
            "risk_percentile": int(r.risk_percentile),
            "top_genes": e["genes"],
        }
    predictions = []
    for i, sid in enumerate(map(str, x.index)):
        warn = list(per_sample.get(sid, []))
        imputed = int(n_missing[i])
        if imputed:
            warn.append(
                f"sample {sid!r}: {imputed} of the model's {len(genes)} genes missing, imputed "
                "with the training median"
            )
        base: dict[str, Any] = {"sample_id": sid, "genes_imputed": imputed, "warnings": warn}
        if sid in rows:
            predictions.append(base | {"status": "scored"} | rows[sid])
        else:
            predictions.append(
                base | {"status": "refused", "risk": None, "probability": None,
                        "probability_interval": None, "risk_group": None,
                        "risk_percentile": None, "top_genes": [],
                        "refused": "looks like another platform or normalisation; this model "
                        "is not platform-independent"}
            )  # fmt: skip
    outcome = manifest.get("outcome")
    horizon = manifest.get("horizon") or getattr(model, "horizon", None)
    return {
        "genes_used": len(genes),
        "genes_imputed": len(absent),
        "missing_genes": absent[:50],
        "columns_ignored": max(0, profiles.columns_in_upload - profiles.values.shape[1]),
        "warnings": [w for p in predictions for w in p["warnings"]] + per_sample.get("", []),
        "platform_independent": platform_free,
        "interval_method": method,
        "outcome_name": outcome_name(outcome),
        "probability_of": outcome_event(outcome),
        "horizon_text": horizon_text(horizon, manifest.get("time_unit")),
        "predictions": predictions,
    }
