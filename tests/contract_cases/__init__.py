"""Cases of the risk-model contract test: one per model family, registered with :func:`case`.

A case builds an unfitted model and the data to fit and score it with. Each modality's cases live
in their own module (``tabular`` for expression / clinical / radiology, ``neural`` for MIL and
fusion), so adding a model family adds one function, not an edit of the common test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metastat.core.contract import RiskPredictor
from metastat.data.target import Target


@dataclass
class ContractData:
    """Data of one case: fit on (``x_fit``, ``target``), score ``x_new`` (ids ``ids_new``)."""

    x_fit: Any
    target: Target
    x_new: Any
    ids_new: Sequence[str]
    take: Callable[[Any, np.ndarray], Any]  # rows ``idx`` of an input


@dataclass
class Case:
    name: str
    model: Callable[[], RiskPredictor]
    data: Callable[[], ContractData]
    explains: bool = True  # False: explain() refuses with a clear InputError / ModelError
    # False: the probability is read off the model's own survival curve at the horizon, not a
    # map of the risk (discrete-time heads: risk = -restricted mean survival); it must still agree
    monotone: bool = True


CASES: dict[str, Case] = {}


def case(
    name: str, *, explains: bool = True, monotone: bool = True
) -> Callable[[Callable[[], tuple[Any, Any]]], Any]:
    """Register ``fn() -> (model factory, data factory)`` as case ``name``."""

    def wrap(fn: Callable[[], tuple[Any, Any]]) -> Callable[[], tuple[Any, Any]]:
        model, data = fn()
        CASES[name] = Case(name, model, data, explains, monotone)
        return fn

    return wrap


def rows(x: Any, idx: np.ndarray) -> Any:
    """``take`` for a DataFrame input."""
    return x.iloc[idx]


def items(x: Any, idx: np.ndarray) -> Any:
    """``take`` for a list input (MIL bags)."""
    return [x[i] for i in idx]


def _load_all() -> None:
    from importlib import import_module
    from pkgutil import iter_modules

    for mod in iter_modules(__path__):
        import_module(f"{__name__}.{mod.name}")


_load_all()
