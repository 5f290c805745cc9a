"""One outcome type for every model: :class:`Target` (what a model is fitted on and judged by).

Vocabulary (see docs/architecture.md): ``kind`` is ``"binary"``, ``"multiclass"`` or
``"survival"`` (time-to-event); ``event`` is 1 for an event, 0 censored; ``binary`` is the
binary status, for survival the event by the ``horizon`` (NaN when censored before it);
``strata`` is the label folds are stratified on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from metastat.data.outcomes import Outcome, binary_at_horizon

Kind = Literal["binary", "multiclass", "survival"]

#: The structured array the scikit-style learners take: event, follow-up time (NaN if none),
#: binary status (NaN unknown). :meth:`Target.structured` builds it.
TARGET_DTYPE = np.dtype([("event", bool), ("time", float), ("binary", float)])


def make_target(event: np.ndarray, time: np.ndarray | None, binary: np.ndarray) -> np.ndarray:
    """Structured target: event, follow-up time (NaN if none), binary status (NaN unknown)."""
    y = np.empty(len(event), dtype=TARGET_DTYPE)
    y["event"] = np.nan_to_num(np.asarray(event, dtype=float)) > 0
    y["time"] = np.full(len(event), np.nan) if time is None else np.asarray(time, dtype=float)
    y["binary"] = np.asarray(binary, dtype=float)
    return y


@dataclass(frozen=True)
class Target:
    """Per-sample outcome: class ``label`` (binary / multiclass) or ``time`` + ``event``."""

    label: np.ndarray | None = None  # int class index
    time: np.ndarray | None = None  # follow-up time
    event: np.ndarray | None = None  # 1 event, 0 censored
    classes: tuple[str, ...] = ()  # class names (label k is classes[k])
    horizon: float | None = None  # time of the binary status for survival

    def __len__(self) -> int:
        arr = self.label if self.label is not None else self.event
        return 0 if arr is None else len(arr)

    @property
    def kind(self) -> Kind:
        if self.time is not None:
            return "survival"
        n = len(self.classes)
        if not n:
            n = int(np.max(self.label)) + 1 if self.label is not None and len(self) else 2
        return "multiclass" if n > 2 else "binary"

    @property
    def binary(self) -> np.ndarray:
        """Binary status: the label (2 classes), the event by the horizon (survival), else NaN."""
        if self.kind == "survival":
            assert self.time is not None and self.event is not None
            if self.horizon is None:
                return np.full(len(self), np.nan)
            return binary_at_horizon(
                np.asarray(self.time, float), np.asarray(self.event, float), self.horizon
            )
        if self.kind == "binary":
            return np.asarray(self.label, dtype=float)
        return np.full(len(self), np.nan)

    def strata(self) -> np.ndarray:
        """Label folds are stratified on (class index, or event indicator)."""
        if self.label is not None:
            return np.asarray(self.label, dtype=int)
        return np.nan_to_num(np.asarray(self.event, dtype=float)).astype(int)

    def subset(self, idx: np.ndarray) -> Target:
        def s(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return replace(self, label=s(self.label), time=s(self.time), event=s(self.event))

    def truth(self) -> pd.DataFrame:
        """The truth columns of the predictions table: event, time, binary (+ label names)."""
        n = len(self)
        nan = np.full(n, np.nan)
        out = pd.DataFrame(
            {
                "event": nan if self.event is None else np.asarray(self.event, float),
                "time": nan if self.time is None else np.asarray(self.time, float),
                "binary": self.binary,
            }
        )
        if self.label is not None:
            names = self.classes or tuple(str(k) for k in range(int(np.max(self.label)) + 1))
            out["label"] = [names[k] for k in self.label]
        return out

    def structured(self) -> np.ndarray:
        """The :data:`TARGET_DTYPE` array (binary / survival targets)."""
        if self.kind == "multiclass":
            raise ValueError("a multiclass target has no binary / survival structured form.")
        if self.kind == "survival":
            assert self.event is not None
            return make_target(self.event, self.time, self.binary)
        return make_target(self.binary, None, self.binary)

    @classmethod
    def from_structured(cls, y: np.ndarray, horizon: float | None = None) -> Target:
        """Inverse of :meth:`structured`: survival when every time is known, else binary."""
        time = np.asarray(y["time"], dtype=float)
        if len(y) and not np.isnan(time).any():
            return cls(time=time, event=np.asarray(y["event"], dtype=int), horizon=horizon)
        return cls(label=np.asarray(y["binary"], dtype=float).astype(int), classes=("0", "1"))

    @classmethod
    def from_outcome(cls, outcome: Outcome, mask: np.ndarray | None = None) -> Target:
        """The target of a resolved cohort outcome (samples ``mask``)."""
        m = np.ones(len(outcome.event), bool) if mask is None else np.asarray(mask)
        if outcome.kind == "survival":
            assert outcome.time is not None
            return cls(time=outcome.time[m], event=outcome.event[m], horizon=outcome.horizon)
        return cls(label=outcome.binary[m].astype(int), classes=("0", "1"))
