"""Is an expression table on a linear or a log scale?

Linear data (intensities, counts, ratios) are strongly right-skewed and spread over orders of
magnitude; log-scale data are roughly symmetric and may be negative (centred log ratios). The
call is made on all finite values of a table:

* any value below 0 → ``log`` (linear intensities, counts and ratios are never negative);
* 99th percentile above 100 → ``linear`` (intensities / counts);
* positive values whose upper tail is far from the median (q99 / median ≥ 3) and strongly
  right-skewed while their log is not → ``linear`` (e.g. ratios with median 1 and q99 4);
* q99 / median ≤ 2.5 with a median ≥ 2 (log intensities), or little skew and a median away
  from 1 (where ratios centre) → ``log``;
* anything else → ``undecided``: the caller says so and asks for ``--log`` / ``--no-log``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

LINEAR_SCALE_THRESHOLD = 100.0  # 99th percentile above this: intensities / counts

ScaleKind = Literal["linear", "log", "undecided"]


@dataclass(frozen=True)
class ScaleCall:
    """The scale of a table and why."""

    kind: ScaleKind
    reason: str


def _skew(v: np.ndarray) -> float:
    sd = v.std()
    return float(((v - v.mean()) ** 3).mean() / sd**3) if sd > 0 else 0.0


def detect_scale(values: np.ndarray, max_values: int = 200_000) -> ScaleCall:
    """Call the scale of ``values`` (see the module docstring); deterministic subsample."""
    finite = np.asarray(values, dtype=float).ravel()
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return ScaleCall("undecided", "no finite values")
    if finite.size > max_values:
        finite = finite[np.linspace(0, finite.size - 1, max_values).astype(int)]
    if finite.min() < 0:
        return ScaleCall("log", f"negative values (min {finite.min():.3g}): log-scale or centred")
    q50, q99 = np.quantile(finite, [0.5, 0.99])
    if q99 > LINEAR_SCALE_THRESHOLD:
        return ScaleCall("linear", f"99th percentile {q99:.3g} > {LINEAR_SCALE_THRESHOLD:g}")
    spread = q99 / q50 if q50 > 0 else np.inf
    skew = _skew(finite)
    log_skew = _skew(np.log2(finite + max(q50, 1e-12) * 1e-3))
    if spread >= 3 and skew > 1.0 and abs(log_skew) < skew / 2:
        return ScaleCall(
            "linear",
            f"right-skewed positive values (q99/median {spread:.2g}, skewness {skew:.2g}; "
            f"{log_skew:.2g} after log)",
        )
    around_one = 0.5 < q50 < 1.5  # ratios centre on 1; log intensities rarely do
    if spread <= 2.5 and (q50 >= 2 or (abs(skew) < 1.0 and not around_one)):
        return ScaleCall("log", f"compact values (median {q50:.3g}, q99/median {spread:.2g})")
    return ScaleCall(
        "undecided",
        f"q99/median {spread:.2g}, skewness {skew:.2g} ({log_skew:.2g} after log)",
    )


def looks_linear(values: np.ndarray) -> bool:
    """True when values look like linear intensities / counts / ratios (log them first)."""
    return detect_scale(values).kind == "linear"
