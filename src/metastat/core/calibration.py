"""Risk score -> probabilities, fitted on held-out (validation or out-of-fold) risks.

One :class:`Calibrator` for every modality:

- **Platt**: ``P(event) = expit(a + b * risk)`` for binary outcomes; with ``smooth=True`` the
  targets are Platt's ``(n+ + 1) / (n+ + 2)`` and ``1 / (n- + 2)``, which keeps the fit finite on
  small, perfectly separated validation sets;
- **Cox recalibration**: ``h(t | risk) = h0(t) exp(slope * risk)`` with the slope refitted by a
  one-covariate Cox model (or fixed at 1 for a risk that already is a log hazard ratio) and the
  Breslow baseline ``h0``; gives survival curves and the event probability by a horizon.

:func:`median_cut` is the training-median risk cut behind every ``high_risk`` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit

from metastat.stats import breslow_cumhaz, cox_1d, cumhaz_at, logistic_fit


def median_cut(train_risk: np.ndarray) -> float:
    """The training-median risk: ``high_risk`` means above it (NaN risks ignored)."""
    r = np.asarray(train_risk, dtype=float)
    r = r[np.isfinite(r)]
    return float(np.median(r)) if r.size else 0.0


@dataclass
class Calibrator:
    """Fitted Platt and / or Cox recalibration of one risk score."""

    platt: tuple[float, float] | None = None  # (intercept, slope)
    cox_slope: float | None = None
    base_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    base_cumhaz: np.ndarray = field(default_factory=lambda: np.zeros(0))

    # -- fitting --------------------------------------------------------------------------------
    def fit_platt(
        self,
        risk: np.ndarray,
        binary: np.ndarray,
        *,
        smooth: bool = False,
        min_samples: int = 1,
        fallback: tuple[float, float] | None = None,
    ) -> Calibrator:
        """Logistic recalibration on samples with a known ``binary`` status (NaN = unknown).

        With fewer than ``min_samples`` known samples, a single class, a non-finite fit or (with
        ``smooth``) a non-positive slope, ``platt`` is ``fallback``."""
        risk, y = np.asarray(risk, dtype=float), np.asarray(binary, dtype=float)
        known = np.isfinite(y) & np.isfinite(risk)
        r, y = risk[known], y[known]
        self.platt = fallback
        if len(y) < min_samples or not 0 < y.sum() < len(y):
            return self
        if smooth:
            n_pos, n_neg = y.sum(), len(y) - y.sum()
            y = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        a, b = logistic_fit(r, y, np.zeros(len(y)), slope=True)
        if np.isfinite([a, b]).all() and (b > 0 or not smooth):
            self.platt = (float(a), float(b))
        return self

    def fit_cox(
        self, risk: np.ndarray, time: np.ndarray, event: np.ndarray, *, fit_slope: bool = True
    ) -> Calibrator:
        """Cox recalibration slope (0 if undefined; 1 when not ``fit_slope``) and the Breslow
        baseline cumulative hazard of ``slope * risk``."""
        risk = np.asarray(risk, dtype=float)
        time, event = np.asarray(time, dtype=float), np.asarray(event, dtype=bool)
        ok = np.isfinite(risk) & np.isfinite(time)
        risk, time, event = risk[ok], time[ok], event[ok]
        slope = cox_1d(risk, time, event) if fit_slope else 1.0
        self.cox_slope = float(slope) if np.isfinite(slope) else 0.0
        self.base_times, self.base_cumhaz = breslow_cumhaz(self.cox_slope * risk, time, event)
        return self

    # -- prediction -----------------------------------------------------------------------------
    def survival_at(self, risk: np.ndarray, times: np.ndarray) -> np.ndarray:
        """S(t) per sample (rows) and time (columns); needs :meth:`fit_cox`."""
        if self.cox_slope is None:
            raise ValueError("survival probabilities need a Cox recalibration (fit_cox).")
        h0 = cumhaz_at(self.base_times, self.base_cumhaz, np.asarray(times, dtype=float))
        return np.exp(-np.outer(np.exp(self.cox_slope * np.asarray(risk, dtype=float)), h0))

    def probability(self, risk: np.ndarray, horizon: float | None = None) -> np.ndarray:
        """Event probability: by ``horizon`` from the Cox recalibration when both exist, else
        Platt, else NaN."""
        risk = np.asarray(risk, dtype=float)
        if horizon is not None and self.cox_slope is not None:
            return 1.0 - self.survival_at(risk, np.array([horizon]))[:, 0]
        if self.platt is not None:
            return expit(self.platt[0] + self.platt[1] * risk)
        return np.full(len(risk), np.nan)

    # -- state (JSON + arrays; never pickle) ----------------------------------------------------
    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-ready settings and the baseline arrays (for safetensors)."""
        meta = {"platt": list(self.platt) if self.platt else None, "cox_slope": self.cox_slope}
        arrays = {}
        if self.cox_slope is not None:
            arrays = {"base_times": self.base_times, "base_cumhaz": self.base_cumhaz}
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Calibrator:
        platt = meta.get("platt")
        cal = cls(tuple(platt) if platt else None, meta.get("cox_slope"))  # type: ignore[arg-type]
        if cal.cox_slope is not None:
            cal.base_times = np.asarray(arrays["base_times"], dtype=float)
            cal.base_cumhaz = np.asarray(arrays["base_cumhaz"], dtype=float)
        return cal

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON (small baselines, e.g. inside a checkpoint's head)."""
        meta, arrays = self.to_state()
        return meta | {k: v.tolist() for k, v in arrays.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        """Inverse of :meth:`to_dict`; also reads the MIL head's older ``method`` form."""
        if d.get("method") == "platt":
            return cls(platt=(float(d["intercept"]), float(d["slope"])))
        if d.get("method") == "breslow":
            d = {"cox_slope": 1.0, "base_times": d["times"], "base_cumhaz": d["cumhaz"]}
        return cls.from_state(d, d)
