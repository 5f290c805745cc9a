"""Typed clinical encoder: parse, impute, scale, one-hot; missing indicators; unseen categories.

Each :class:`Variable` names a raw column and its kind. Numeric-like kinds (numbers, stage, T/N/M,
grade, 0/1 status, sex) are parsed to numbers, optionally log1p-transformed, imputed with the
training median and standardised; a ``<name>_missing`` indicator is added when the training data
had missing values. Categorical variables are one-hot encoded over the training levels; a value
never seen in training encodes as all zeros and is counted in :attr:`ClinicalEncoder.unseen_`
(it never raises and never maps to another level).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from metastat.clinical.parse import PARSERS, _clean, parse_column
from metastat.errors import InputError, did_you_mean

Kind = Literal["numeric", "categorical", "stage", "t", "n", "m", "grade", "status", "sex"]

log = logging.getLogger(__name__)


class Variable(BaseModel):
    """One clinical variable: output name, raw column, kind and optional value recoding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    column: str
    kind: Kind
    recode: dict[str, str] | None = Field(
        None, description="raw value -> text before parsing (e.g. {'1': 'male', '0': 'female'})"
    )
    log1p: bool = False


def _recoded(raw: pd.Series, var: Variable) -> pd.Series:
    if not var.recode:
        return raw
    text = raw.map(lambda v: None if _clean(v) is None else str(v).strip().removesuffix(".0"))
    return text.map(lambda v: var.recode.get(v, v) if v is not None else None)  # type: ignore[union-attr]


def parse_variables(frame: pd.DataFrame, variables: list[Variable]) -> pd.DataFrame:
    """Raw clinical table -> typed table (floats; categories as text), one column per variable."""
    missing = [v.column for v in variables if v.column not in frame.columns]
    if missing:
        cols = [str(c) for c in frame.columns]
        raise InputError(
            f"clinical table has no column(s) {missing}.{did_you_mean(missing[0], cols)} "
            f"Columns: {cols[:20]}"
        )
    out = {}
    for var in variables:
        raw = _recoded(frame[var.column], var)
        if var.kind == "categorical":
            out[var.name] = raw.map(lambda v: None if _clean(v) is None else str(v).strip())
        else:
            values = parse_column(raw, var.kind, column=var.column)
            out[var.name] = np.log1p(values) if var.log1p else values
    return pd.DataFrame(out, index=frame.index)


class ClinicalEncoder:
    """Fit on a raw clinical table; transform tables with the same columns to numeric matrices."""

    def __init__(self, variables: list[Variable], *, min_level_count: int = 5) -> None:
        if not variables:
            raise InputError("a clinical encoder needs at least one variable.")
        names = [v.name for v in variables]
        if len(set(names)) != len(names):
            raise InputError(f"duplicate clinical variable names: {names}.")
        bad = [v.kind for v in variables if v.kind != "categorical" and v.kind not in PARSERS]
        if bad:
            raise InputError(f"unknown variable kinds {bad}.")
        self.variables = list(variables)
        self.min_level_count = min_level_count

    def fit(self, frame: pd.DataFrame) -> ClinicalEncoder:
        typed = parse_variables(frame, self.variables)
        self.median_: dict[str, float] = {}
        self.mean_: dict[str, float] = {}
        self.sd_: dict[str, float] = {}
        self.indicator_: list[str] = []
        self.levels_: dict[str, list[str]] = {}
        for var in self.variables:
            col = typed[var.name]
            if var.kind == "categorical":
                counts = col.dropna().value_counts()
                self.levels_[var.name] = sorted(
                    str(k) for k, c in counts.items() if c >= self.min_level_count
                )
                if col.isna().any():
                    self.indicator_.append(var.name)
                continue
            if col.isna().all():
                raise InputError(
                    f"clinical variable {var.name!r} (column {var.column!r}) has no value in the "
                    "training data; drop it from the variables."
                )
            med = float(col.median())
            filled = col.fillna(med)
            self.median_[var.name] = med
            self.mean_[var.name] = float(filled.mean())
            self.sd_[var.name] = float(filled.std(ddof=0)) or 1.0
            if col.isna().any():
                self.indicator_.append(var.name)
        self.feature_names_ = self._names()
        return self

    def _names(self) -> list[str]:
        names = []
        for var in self.variables:
            if var.kind == "categorical":
                names += [f"{var.name}={lvl}" for lvl in self.levels_[var.name]]
            else:
                names.append(var.name)
            if var.name in self.indicator_:
                names.append(f"{var.name}_missing")
        return names

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Encoded numeric table (rows = ``frame`` rows, columns = :attr:`feature_names_`)."""
        typed = parse_variables(frame, self.variables)
        cols: dict[str, np.ndarray] = {}
        self.unseen_: dict[str, list[str]] = {}
        for var in self.variables:
            col = typed[var.name]
            if var.kind == "categorical":
                levels = self.levels_[var.name]
                for lvl in levels:
                    cols[f"{var.name}={lvl}"] = (col == lvl).to_numpy(dtype=float)
                unseen = sorted(set(col.dropna()) - set(levels))
                if unseen:
                    self.unseen_[var.name] = unseen
            else:
                filled = col.fillna(self.median_[var.name]).to_numpy(dtype=float)
                cols[var.name] = (filled - self.mean_[var.name]) / self.sd_[var.name]
            if var.name in self.indicator_:
                cols[f"{var.name}_missing"] = col.isna().to_numpy(dtype=float)
        if self.unseen_:
            log.warning(
                "clinical categories not seen in training, encoded as no level: %s", self.unseen_
            )
        return pd.DataFrame(cols, index=frame.index)[self.feature_names_]

    def fit_transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.fit(frame).transform(frame)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (variables and fitted statistics)."""
        return {
            "variables": [v.model_dump() for v in self.variables],
            "min_level_count": self.min_level_count,
            "median": self.median_,
            "mean": self.mean_,
            "sd": self.sd_,
            "indicator": self.indicator_,
            "levels": self.levels_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ClinicalEncoder:
        enc = cls(
            [Variable(**v) for v in state["variables"]], min_level_count=state["min_level_count"]
        )
        enc.median_, enc.mean_, enc.sd_ = state["median"], state["mean"], state["sd"]
        enc.indicator_, enc.levels_ = list(state["indicator"]), dict(state["levels"])
        enc.feature_names_ = enc._names()
        return enc
