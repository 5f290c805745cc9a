"""Bag-level losses and the outputs they imply (probabilities, risks, survival curves).

- classification: class-weighted cross-entropy over ``n_classes`` logits (binary = 2 classes);
- survival ``nll``: discrete-time hazard likelihood over time bins (Zadeh & Schmid 2021), each
  logit a bin's conditional hazard; censored samples contribute survival up to their bin;
- survival ``cox``: Cox partial likelihood (Breslow ties) of a single log-risk within the
  mini-batch, from :mod:`metastat.core.cox`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (mean 1 over samples) for class-balanced cross-entropy."""
    counts = np.bincount(labels.astype(int), minlength=n_classes).astype(float)
    w = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def time_bins(time: np.ndarray, event: np.ndarray, n_bins: int) -> np.ndarray:
    """Inner bin edges: quantiles of the training event times (n_bins - 1 cut points)."""
    t = time[event.astype(bool)] if event.any() else time
    return np.unique(np.quantile(t, np.linspace(0, 1, n_bins + 1)[1:-1]))


def to_bin(time: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index of the bin each time falls in."""
    return np.searchsorted(edges, time, side="right")


def nll_survival(
    logits: torch.Tensor, bins: torch.Tensor, event: torch.Tensor, alpha: float = 0.0
) -> torch.Tensor:
    """Discrete-time survival negative log-likelihood (mean over the batch)."""
    log_h = F.logsigmoid(logits)  # log hazard per bin
    log_1mh = F.logsigmoid(-logits)
    cum = torch.cumsum(log_1mh, dim=1)  # log S(k) after bin k
    zero = torch.zeros_like(cum[:, :1])
    log_s_before = torch.cat([zero, cum], dim=1).gather(1, bins.view(-1, 1)).squeeze(1)
    log_h_at = log_h.gather(1, bins.view(-1, 1)).squeeze(1)
    log_s_at = cum.gather(1, bins.view(-1, 1)).squeeze(1)
    uncensored = -(log_s_before + log_h_at)
    censored = -log_s_at
    loss = event * uncensored + (1 - event) * censored
    if alpha > 0:
        loss = (1 - alpha) * loss + alpha * event * uncensored
    return loss.mean()


def survival_curve(logits: torch.Tensor) -> torch.Tensor:
    """Survival probability at the end of each bin from per-bin hazard logits."""
    return torch.cumprod(torch.sigmoid(-logits), dim=1)
