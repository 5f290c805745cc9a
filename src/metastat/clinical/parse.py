"""Parsing of clinical strings into typed values, with errors that name the column and values.

Every parser maps one raw value to a number (an ordinal level or 0/1) or NaN for a recognised
missing marker ("", "NA", "[Not Available]", "TX", ...); a value that is neither raises
:class:`~metastat.errors.InputError` listing every unparseable value of the column (never a silent
NaN), unless ``errors="missing"`` is asked for explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd

from metastat.errors import InputError

MISSING = frozenset(
    {
        "",
        "na",
        "n/a",
        "nan",
        "none",
        "null",
        "unknown",
        "not available",
        "not applicable",
        "not evaluated",
        "discrepancy",
        "unk",
        "?",
        "x",
    }
)

_ROMAN = {"0": 0, "i": 1, "ii": 2, "iii": 3, "iv": 4, "1": 1, "2": 2, "3": 3, "4": 4}


def _clean(value: object) -> str | None:
    """Lower-cased, stripped text; None for a missing marker (TCGA's ``[Not Available]`` too)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip().lower().strip("[]").strip()
    return None if text in MISSING else text


def stage(value: object) -> float:
    """AJCC stage: 'Stage IIIA', 'IIb', '3', 'stage 0', 'Tis' -> 0..4 (substage letter dropped)."""
    text = _clean(value)
    if text is None:
        return np.nan
    text = re.sub(r"^(ajcc\s*)?(pathologic\s*|clinical\s*)?(stage\s*)?", "", text).strip()
    if text in MISSING:
        return np.nan
    if text in ("tis", "is", "0is"):
        return 0.0
    m = re.fullmatch(r"(iv|iii|ii|i|0|[1-4])\s*[a-c]?[0-9]?", text)
    if m is None:
        raise ValueError(value)
    return float(_ROMAN[m.group(1)])


_TNM = {
    "t": r"t\s*(is|x|[0-4])\s*[a-d]?(?:\(.*\))?",
    "n": r"n\s*(x|[0-3])\s*[a-c]?(?:\(.*\))?",
    "m": r"m\s*(x|[01])\s*[a-c]?(?:\(.*\))?",
}


def _tnm_part(part: str) -> Callable[[object], float]:
    def parse(value: object) -> float:
        text = _clean(value)
        if text is None:
            return np.nan
        if re.fullmatch(r"[0-4](\.0)?", text):  # bare level in a dedicated T / N / M column
            return float(text)
        text = re.sub(r"(?<![a-z])[cpy]+(?=[tnm])", "", text.replace(" ", ""))
        m = re.search(_TNM[part], text)
        if m is None:
            raise ValueError(value)
        level = m.group(1)
        if level == "x":
            return np.nan
        return 0.0 if level == "is" else float(level)

    parse.__doc__ = f"TNM {part.upper()} category ('pT3', 'T2N1M0', 'N1b', '2') -> level."
    return parse


t_stage, n_stage, m_stage = _tnm_part("t"), _tnm_part("n"), _tnm_part("m")

_GRADE_WORDS = {
    "well": 1.0,
    "low": 1.0,
    "moderate": 2.0,
    "intermediate": 2.0,
    "poor": 3.0,
    "high": 3.0,
    "undifferentiated": 4.0,
}


def grade(value: object) -> float:
    """Histological grade: 'G2', '2', 'grade 3', 'well / moderately / poorly differentiated'."""
    text = _clean(value)
    if text is None or text == "gx":
        return np.nan
    m = re.fullmatch(r"(?:grade\s*|g)?([1-4]|i{1,3}|iv)(?:\.0)?", text)
    if m:
        return float(_ROMAN[m.group(1)])
    for word, level in _GRADE_WORDS.items():
        if text.startswith(word):
            return level
    raise ValueError(value)


_POS = {"1", "1.0", "pos", "positive", "+", "yes", "y", "true", "msi", "msi-h", "msi-high", "mut"}
_NEG = {
    "0",
    "0.0",
    "-",
    "neg",
    "negative",
    "no",
    "n",
    "false",
    "mss",
    "msi-l",
    "msi-low",
    "wt",
    "mnd",
}


def status(value: object) -> float:
    """Receptor / MSI / mutation status: positive, +, 1, yes, MSI-H, MUT -> 1; negative ... -> 0."""
    text = _clean(value)
    if text is None:
        return np.nan
    text = text.replace(" ", "")
    if text in _POS:
        return 1.0
    if text in _NEG:
        return 0.0
    raise ValueError(value)


def sex(value: object) -> float:
    """'M', 'male', 'MALE' -> 1; 'F', 'female' -> 0 (numeric codes need an explicit mapping)."""
    text = _clean(value)
    if text is None:
        return np.nan
    if text in ("m", "male", "man"):
        return 1.0
    if text in ("f", "female", "woman"):
        return 0.0
    raise ValueError(value)


def number(value: object) -> float:
    """A plain number ('48', '2.5', ' 7 '); missing markers -> NaN."""
    text = _clean(value)
    if text is None:
        return np.nan
    return float(text)


PARSERS: dict[str, Callable[[object], float]] = {
    "numeric": number,
    "stage": stage,
    "t": t_stage,
    "n": n_stage,
    "m": m_stage,
    "grade": grade,
    "status": status,
    "sex": sex,
}

ALLOWED = {
    "numeric": "numbers",
    "stage": "AJCC stage 0, I-IV (optional substage letter), 'Stage IIIA', 1-4",
    "t": "T categories such as T1, pT2a, T2N0M0, Tis, TX",
    "n": "N categories such as N0, pN1b, N3",
    "m": "M categories M0, M1, M1a, MX",
    "grade": "G1-G4, 1-4, I-III or well / moderately / poorly differentiated",
    "status": "positive / negative, pos / neg, +/-, 1/0, yes/no, MSI-H / MSS, MUT / WT",
    "sex": "M / F / male / female",
}


def parse_column(
    values: pd.Series,
    kind: str,
    *,
    column: str | None = None,
    errors: Literal["raise", "missing"] = "raise",
) -> pd.Series:
    """Parse a raw column with the parser of ``kind``; float Series aligned with ``values``.

    Unparseable values raise an :class:`InputError` naming the column, up to five bad values with
    their row ids and the accepted spellings; ``errors="missing"`` turns them into NaN instead.
    """
    if kind not in PARSERS:
        raise InputError(f"unknown clinical variable kind {kind!r}; kinds: {sorted(PARSERS)}.")
    parse = PARSERS[kind]
    out = np.full(len(values), np.nan)
    bad: list[tuple[object, object]] = []
    for i, (idx, raw) in enumerate(values.items()):
        try:
            out[i] = parse(raw)
        except ValueError:
            bad.append((idx, raw))
    if bad and errors == "raise":
        shown = ", ".join(f"{raw!r} (row {idx!r})" for idx, raw in bad[:5])
        raise InputError(
            f"clinical column {column or values.name!r}: {len(bad)} value(s) not understood as "
            f"{kind}: {shown}. Accepted: {ALLOWED[kind]}; missing markers such as '', 'NA', "
            "'[Not Available]'. Fix the values or map them to missing explicitly."
        )
    return pd.Series(out, index=values.index, name=values.name)
