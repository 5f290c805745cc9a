"""ComBat batch correction, parametric empirical Bayes (Johnson, Li & Rabinovic, 2007).

Used when a model is trained on several cohorts: the training cohorts are harmonised to a common
location and scale per gene, with batch effects shrunk towards gene-wide priors. No outcome labels
are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metastat.errors import InputError


@dataclass
class ComBat:
    """Fitted ComBat parameters: adjusts samples of the batches seen in training."""

    levels: np.ndarray
    grand: np.ndarray
    sd: np.ndarray
    gamma: np.ndarray  # batches x genes (shrunk additive effects, standardised scale)
    delta: np.ndarray  # batches x genes (shrunk multiplicative effects)

    def apply(self, x: np.ndarray, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch).astype(str)
        unknown = sorted(set(batch) - set(self.levels))
        if unknown:
            raise InputError(
                f"ComBat was fitted on batches {self.levels.tolist()}, not "
                f"{unknown}; score a new cohort with scale='batch' instead."
            )
        codes = np.searchsorted(self.levels, batch)
        z = (x - self.grand) / self.sd
        return (z - self.gamma[codes]) / np.sqrt(self.delta[codes]) * self.sd + self.grand


def fit_combat(
    x: np.ndarray, batch: np.ndarray, *, max_iter: int = 100, tol: float = 1e-4
) -> ComBat:
    """Estimate ComBat parameters on ``x`` (samples x genes) with batch labels ``batch``."""
    batch = np.asarray(batch).astype(str)
    levels, codes = np.unique(batch, return_inverse=True)
    counts = np.bincount(codes)
    if len(levels) < 2 or counts.min() < 2:
        sizes = dict(zip(levels.tolist(), counts.tolist(), strict=True))
        raise InputError(f"ComBat needs >= 2 batches of >= 2 samples; batch sizes {sizes}.")
    n = len(x)
    design = np.eye(len(levels))[codes]  # n x B
    beta = np.linalg.lstsq(design, x, rcond=None)[0]  # B x G
    grand = (counts / n) @ beta
    var_pooled = ((x - design @ beta) ** 2).mean(axis=0)
    positive = var_pooled[var_pooled > 0]
    var_pooled[var_pooled == 0] = np.median(positive) if positive.size else 1.0
    sd = np.sqrt(var_pooled)
    z = (x - grand) / sd
    gamma_hat = np.vstack([z[codes == b].mean(axis=0) for b in range(len(levels))])
    delta_hat = np.vstack([z[codes == b].var(axis=0, ddof=1) for b in range(len(levels))])
    delta_hat[delta_hat == 0] = 1e-6
    gamma_bar = gamma_hat.mean(axis=1)
    t2 = gamma_hat.var(axis=1, ddof=1)
    m = delta_hat.mean(axis=1)
    s2 = delta_hat.var(axis=1, ddof=1)
    a_prior = (2 * s2 + m**2) / np.maximum(s2, 1e-12)
    b_prior = (m * s2 + m**3) / np.maximum(s2, 1e-12)
    gamma_star = np.empty_like(gamma_hat)
    delta_star = np.empty_like(delta_hat)
    for b in range(len(levels)):
        zb, nb = z[codes == b], counts[b]
        g_old, d_old = gamma_hat[b], delta_hat[b]
        for _ in range(max_iter):
            g_new = (t2[b] * nb * gamma_hat[b] + d_old * gamma_bar[b]) / (t2[b] * nb + d_old)
            ssq = ((zb - g_new) ** 2).sum(axis=0)
            d_new = (b_prior[b] + 0.5 * ssq) / (nb / 2 + a_prior[b] - 1)
            change = max(
                np.max(np.abs(g_new - g_old) / (np.abs(g_old) + 1e-12)),
                np.max(np.abs(d_new - d_old) / (np.abs(d_old) + 1e-12)),
            )
            g_old, d_old = g_new, d_new
            if change < tol:
                break
        gamma_star[b], delta_star[b] = g_old, d_old
    return ComBat(levels, grand, sd, gamma_star, delta_star)


def combat(x: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Return ``x`` with additive and multiplicative batch effects removed (fit and apply)."""
    return fit_combat(x, batch).apply(x, batch)
