"""Planted radiology for a real cohort: one phantom lesion per patient with a known signal.

No labelled radiology cohort (CT + outcome) is reachable offline, so this plants the link: each
patient of a real cohort (its real outcome, clinical variables and expression) gets a synthetic
lesion whose size and internal heterogeneity follow latents correlated ``rho`` with the
patient's null-model martingale residual (event minus Nelson-Aalen cumulative hazard at their
follow-up time: high = earlier event than expected). The rest is independent noise, so radiology
carries a known, partial signal that the other modalities do not have. Benchmarks only: the
lesions are images that the real reader, resampler and radiomics (mirp) process end to end,
but a model that learns them proves nothing about real CT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metastat.radiology.phantom import sphere_phantom


@dataclass
class PlantedRadiology:
    manifest: pd.DataFrame  # patient_id, image, mask
    latent: pd.DataFrame  # per patient: score (the outcome signal), size, texture latents


def martingale_score(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Null-model martingale residual ``event - H(time)`` (Nelson-Aalen), standardised."""
    order = np.argsort(time, kind="stable")
    t, e = time[order], event[order].astype(float)
    at_risk = len(t) - np.arange(len(t))
    cum = np.cumsum(e / at_risk)
    # ties: every subject at a time gets the hazard accumulated through that time
    last = np.searchsorted(t, t, side="right") - 1
    h = np.empty(len(t))
    h[order] = cum[last]
    m = event - h
    return (m - m.mean()) / (m.std() + 1e-12)


def plant_radiology(
    patient_ids: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    folder: str | Path,
    *,
    rho: float = 0.6,
    spacing_mm: tuple[float, float, float] = (0.8, 0.8, 2.0),
    seed: int = 0,
) -> PlantedRadiology:
    """Write one NIfTI phantom (image + mask) per patient into ``folder``; see module docstring."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    score = martingale_score(np.asarray(time, float), np.asarray(event, float))
    noise = rng.normal(size=(2, len(patient_ids)))
    size = rho * score + np.sqrt(1 - rho**2) * noise[0]
    texture = rho * score + np.sqrt(1 - rho**2) * noise[1]
    rows = []
    for i, pid in enumerate(patient_ids):
        ph = sphere_phantom(
            6.0 * np.exp(0.22 * size[i]) * rng.uniform(0.9, 1.1, 3),  # mildly ellipsoidal
            intensity=float(rng.normal(40.0, 10.0)),  # nuisance: unrelated to outcome
            noise_sd=10.0,
            texture_sd=float(12.0 * np.exp(0.4 * texture[i])),
            spacing_mm=spacing_mm,
            seed=seed * 100_003 + i,
        )
        img, msk = ph.write(folder, f"{i:04d}")
        rows.append({"patient_id": str(pid), "image": str(img), "mask": str(msk)})
    latent = pd.DataFrame(
        {"score": score, "size": size, "texture": texture},
        index=pd.Index(patient_ids, name="patient_id"),
    )
    return PlantedRadiology(pd.DataFrame(rows), latent)
