"""Outcomes declared explicitly: time-to-event (time, event, unit) or binary, plus
"event within horizon" derived correctly.

A patient censored before the horizon has an unknown status at the horizon: it is *excluded* from
binary metrics (``binary_mask`` False), never counted as a negative.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from metastat.errors import InputError, UnknownNameError, did_you_mean

TimeUnit = Literal["days", "months", "years"]
DAYS_PER: dict[str, float] = {"days": 1.0, "months": 365.25 / 12, "years": 365.25}


class OutcomeSpec(BaseModel):
    """How one outcome is read from a cohort's ``obs`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["binary", "survival"]
    event: str = Field(description="column holding the event indicator (1/True = event)")
    time: str | None = Field(None, description="column holding follow-up time")
    time_unit: TimeUnit | None = None
    positive: tuple[str, ...] | None = Field(
        None, description="values of `event` meaning 'event' when the column is categorical"
    )
    horizon: float | None = Field(
        None, description="default horizon, in time_unit, for binary metrics of survival outcomes"
    )
    description: str = ""


@dataclass(frozen=True)
class Outcome:
    """An outcome resolved on a cohort (arrays aligned with ``adata.obs_names``)."""

    name: str
    kind: Literal["binary", "survival"]
    event: np.ndarray  # float: 1 event, 0 no event, NaN unknown
    time: np.ndarray | None  # float, in time_unit; NaN unknown
    time_unit: str | None
    horizon: float | None
    binary: np.ndarray  # float 0/1, NaN where status at horizon is unknown

    @property
    def binary_mask(self) -> np.ndarray:
        """Samples whose binary status is known (censored-before-horizon excluded)."""
        return ~np.isnan(self.binary)

    @property
    def survival_mask(self) -> np.ndarray:
        """Samples with usable (time, event)."""
        if self.time is None:
            return np.zeros(len(self.event), dtype=bool)
        return ~np.isnan(self.time) & ~np.isnan(self.event) & (self.time >= 0)

    @property
    def usable_mask(self) -> np.ndarray:
        """Samples usable for the outcome's primary task."""
        return self.survival_mask if self.kind == "survival" else self.binary_mask

    def surv(self, mask: np.ndarray | None = None) -> np.ndarray:
        """scikit-survival structured target ``(event: bool, time: float)``."""
        from sksurv.util import Surv

        if self.time is None:
            raise InputError(f"outcome {self.name!r} has no follow-up time column.")
        m = self.survival_mask if mask is None else mask
        return Surv.from_arrays(self.event[m].astype(bool), self.time[m])


def parse_horizon(text: str | float | None, unit: str | None) -> float | None:
    """Parse '5y', '36m', '1826d' or a bare number (already in ``unit``) into ``unit``."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float):
        return float(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([dmy]?)\s*", str(text).lower())
    if not m:
        raise InputError(f"horizon {text!r} not understood: use e.g. '5y', '36m' or '1826d'.")
    value, suffix = float(m.group(1)), m.group(2)
    if not suffix:
        return value
    if unit is None:
        raise InputError("this outcome has no time unit, so a horizon cannot be converted.")
    from_unit = {"d": "days", "m": "months", "y": "years"}[suffix]
    return value * DAYS_PER[from_unit] / DAYS_PER[unit]


def _column(obs: pd.DataFrame, col: str, cohort: str, outcome: str) -> pd.Series:
    if col not in obs.columns:
        raise InputError(
            f"cohort {cohort!r}, outcome {outcome!r}: no column {col!r} in the clinical table."
            f"{did_you_mean(col, [str(c) for c in obs.columns])}"
        )
    return obs[col]


def _event_values(series: pd.Series, spec: OutcomeSpec, where: str) -> np.ndarray:
    if spec.positive is not None:
        known = series.notna() & (series.astype(str).str.strip() != "")
        out = series.astype(str).isin(spec.positive).astype(float).to_numpy()
        out[~known.to_numpy()] = np.nan
        return out
    num = pd.to_numeric(series, errors="coerce")
    if series.dtype == bool or series.astype(str).str.lower().isin(["true", "false"]).all():
        num = series.astype(str).str.lower().map({"true": 1.0, "false": 0.0})
    bad = num.isna() & series.notna() & (series.astype(str).str.strip() != "")
    if bad.any():
        raise InputError(
            f"{where}: event column {spec.event!r} has non-numeric value "
            f"{series[bad].iloc[0]!r} (sample {series[bad].index[0]!r}); use 1/0 or true/false, "
            "or declare the event values with `positive`."
        )
    vals = num.to_numpy(dtype=float)
    odd = ~np.isnan(vals) & ~np.isin(vals, (0.0, 1.0))
    if odd.any():
        raise InputError(
            f"{where}: event column {spec.event!r} must be 0/1, found {vals[odd][0]!r} "
            f"(sample {series.index[np.flatnonzero(odd)[0]]!r})."
        )
    return vals


def binary_at_horizon(time: np.ndarray, event: np.ndarray, horizon: float) -> np.ndarray:
    """1 = event by ``horizon``; 0 = event-free beyond it; NaN = censored before it."""
    out = np.full(len(time), np.nan)
    known = ~np.isnan(time) & ~np.isnan(event)
    out[known & (event == 1) & (time <= horizon)] = 1.0
    out[known & (time > horizon)] = 0.0
    return out


def resolve_outcome(
    adata: ad.AnnData,
    name: str,
    *,
    horizon: str | float | None = None,
    spec: OutcomeSpec | None = None,
) -> Outcome:
    """Read outcome ``name`` from a cohort (its registry spec, or an explicit ``spec``)."""
    meta = adata.uns.get("metastat", {})
    cohort = str(meta.get("name", "cohort"))
    if spec is None:
        specs = meta.get("outcomes", {})
        if name not in specs:
            raise UnknownNameError(
                f"cohort {cohort!r} has no outcome {name!r}; it has {sorted(specs)}."
                f"{did_you_mean(name, sorted(specs))}"
            )
        raw = specs[name]
        spec = raw if isinstance(raw, OutcomeSpec) else OutcomeSpec(**_plain(raw))
    where = f"cohort {cohort!r}, outcome {name!r}"
    event = _event_values(_column(adata.obs, spec.event, cohort, name), spec, where)
    time = None
    if spec.time is not None:
        t = pd.to_numeric(_column(adata.obs, spec.time, cohort, name), errors="coerce")
        time = t.to_numpy(dtype=float)
        if (time[~np.isnan(time)] < 0).any():
            raise InputError(f"{where}: negative follow-up time in column {spec.time!r}.")
    h = parse_horizon(horizon, spec.time_unit) if horizon is not None else spec.horizon
    if h is not None and time is None:
        raise InputError(f"{where}: a horizon needs a time column; this outcome has none.")
    if spec.kind == "binary" and horizon is None:
        binary = event.copy()
    elif h is not None and time is not None:
        binary = binary_at_horizon(time, event, h)
    else:
        binary = np.full(len(event), np.nan)
    return Outcome(name, spec.kind, event, time, spec.time_unit, h, binary)


def _plain(raw: object) -> dict:
    """Specs stored in ``uns`` may come back from h5ad as numpy types; turn them into Python."""
    out = {}
    for k, v in dict(raw).items():  # type: ignore[call-overload]
        if isinstance(v, np.ndarray):
            v = tuple(v.tolist())
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
