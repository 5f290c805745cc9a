"""The Cox partial likelihood with Breslow or Efron handling of tied event times.

One implementation (torch, differentiable) serves the MIL and fusion losses;
:func:`cox_nll_numpy` evaluates it on arrays. Tied subjects are in each other's risk sets
(cohort times in whole months tie often). With risk set sum ``S_j`` at event time ``t_j``,
``d_j`` tied events and their summed ``exp(risk)`` ``T_j``:

- Breslow: ``sum_j [sum_{i in D_j} r_i - d_j log S_j]``;
- Efron: ``sum_j [sum_{i in D_j} r_i - sum_{l<d_j} log(S_j - l / d_j T_j)]``.

The loss returned is the negative log partial likelihood divided by the number of events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

Ties = Literal["breslow", "efron"]


def cox_nll(
    risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor, ties: Ties = "breslow"
) -> torch.Tensor:
    """Negative Cox partial log-likelihood of ``risk`` (log hazard ratio), mean over events."""
    import torch

    if ties not in ("breslow", "efron"):
        raise ValueError(f"ties must be 'breslow' or 'efron', got {ties!r}")
    e = event.to(risk.dtype)
    n_events = e.sum()
    if n_events == 0:
        return risk.sum() * 0.0
    # distinct times (ascending), each sample's group, and log S_j via a descending logcumsumexp
    uniq, group, counts = torch.unique(time, return_inverse=True, return_counts=True)
    order = torch.argsort(time, descending=True, stable=True)
    log_cum = torch.logcumsumexp(risk[order], 0)
    n_at_risk = torch.flip(torch.cumsum(torch.flip(counts, [0]), 0), [0])  # #{t_i >= t_j}
    log_s = log_cum[n_at_risk - 1]  # (n_groups,)
    ev = e > 0
    r_ev, g_ev = risk[ev], group[ev]
    ll = r_ev - log_s[g_ev]
    if ties == "efron":
        d = torch.zeros(len(uniq), dtype=risk.dtype).index_add_(0, g_ev, torch.ones_like(r_ev))
        ratio = torch.zeros(len(uniq), dtype=risk.dtype).index_add_(
            0, g_ev, torch.exp(r_ev - log_s[g_ev])
        )  # T_j / S_j
        # rank of each event within its tie group: 0 .. d_j - 1
        sort_g = torch.argsort(g_ev, stable=True)
        start = torch.cumsum(d, 0) - d
        rank = torch.empty_like(r_ev)
        rank[sort_g] = torch.arange(len(g_ev), dtype=risk.dtype) - start[g_ev[sort_g]]
        frac = rank / d[g_ev]
        ll = ll - torch.log1p(-(frac * ratio[g_ev]).clamp(max=1 - 1e-12))
    return -ll.sum() / n_events


def cox_nll_numpy(
    risk: np.ndarray, time: np.ndarray, event: np.ndarray, ties: Ties = "breslow"
) -> float:
    """:func:`cox_nll` on numpy arrays (float64)."""
    import torch

    return float(
        cox_nll(
            torch.as_tensor(np.asarray(risk, dtype=np.float64)),
            torch.as_tensor(np.asarray(time, dtype=np.float64)),
            torch.as_tensor(np.asarray(event, dtype=np.float64)),
            ties,
        )
    )
