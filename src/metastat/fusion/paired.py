"""A paired histology + expression + clinical benchmark with known ground truth.

No paired slide + expression cohort is available offline, so the benchmark plants the link:
each patient has latent expression programs ``z`` (k programs). Genes load on one program each
(the true gene sets); tiles are drawn from program-specific tissue prototypes with probabilities
``softmax(a * z)`` (so the slide's tile composition reflects the programs, as tumour morphology
reflects transcriptional state); the outcome hazard depends on programs and stage. Clinical
variables come as messy strings ('Stage IIIA', 'G2', 'F') to exercise the parsers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from metastat.clinical.encoder import Variable
from metastat.fusion.modalities import MultimodalSet, align_modalities

PAIRED_VARIABLES = [
    Variable(name="age", column="age", kind="numeric"),
    Variable(name="sex", column="sex", kind="sex"),
    Variable(name="stage", column="stage", kind="stage"),
    Variable(name="grade", column="grade", kind="grade"),
]


@dataclass
class PairedBenchmark:
    """The multimodal set plus its ground truth."""

    data: MultimodalSet
    programs: pd.DataFrame  # patients x k latent programs
    loadings: np.ndarray  # k x genes
    gene_sets: dict[str, list[str]]
    hazard: np.ndarray  # true log-hazard per patient


def make_paired_benchmark(
    n_patients: int = 300,
    *,
    n_genes: int = 200,
    n_programs: int = 6,
    tile_dim: int = 64,
    tiles: tuple[int, int] = (48, 96),
    expression_noise: float = 0.7,
    tile_noise: float = 1.0,
    tile_signal: float = 1.0,
    censor_months: float = 120.0,
    seed: int = 0,
) -> PairedBenchmark:
    """Simulate the benchmark (see module docstring); times in months, horizon 36 months."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"P{i:04d}" for i in range(n_patients)])
    z = rng.normal(size=(n_patients, n_programs))
    program_of = np.arange(n_genes) % n_programs
    loadings = np.zeros((n_programs, n_genes))
    loadings[program_of, np.arange(n_genes)] = rng.uniform(0.6, 1.4, n_genes)
    loadings += rng.normal(0, 0.1, loadings.shape)
    genes = [f"G{g:04d}" for g in range(n_genes)]
    expr = 8.0 + z @ loadings + expression_noise * rng.normal(size=(n_patients, n_genes))
    proto = rng.normal(size=(n_programs + 1, tile_dim))
    bags = {}
    for i, pid in enumerate(ids):
        logits = np.concatenate([[0.0], tile_signal * z[i]])
        p = np.exp(logits - logits.max())
        kinds = rng.choice(n_programs + 1, rng.integers(*tiles), p=p / p.sum())
        bags[pid] = (proto[kinds] + tile_noise * rng.normal(size=(len(kinds), tile_dim))).astype(
            np.float32
        )
    stage_latent = 0.7 * z[:, 0] + rng.normal(size=n_patients)
    stage = np.digitize(stage_latent, [-0.8, 0.2, 1.2]) + 1
    sub = rng.choice(["", "A", "B"], n_patients)
    roman = np.array(["I", "II", "III", "IV"])[stage - 1]
    clinical = pd.DataFrame(
        {
            "age": rng.normal(62, 10, n_patients).round(),
            "sex": rng.choice(["M", "F", "male", "Female"], n_patients),
            "stage": [f"Stage {r}{s}" for r, s in zip(roman, sub, strict=True)],
            "grade": rng.choice(["G1", "G2", "G3", "poorly differentiated"], n_patients),
        },
        index=ids,
    )
    hazard = 0.8 * z[:, 0] + 0.6 * z[:, 1] - 0.6 * z[:, 2] + 0.4 * (stage - 2.5)
    t_event = rng.exponential(30.0 * np.exp(-hazard))
    t_cens = rng.uniform(12.0, censor_months, n_patients)
    time = np.minimum(t_event, t_cens)
    event = (t_event <= t_cens).astype(float)
    horizon = 36.0
    binary = np.where(
        event.astype(bool) & (time <= horizon), 1.0, np.where(time > horizon, 0.0, np.nan)
    )
    outcome = pd.DataFrame({"event": event, "time": time, "binary": binary}, index=ids)
    data = align_modalities(
        outcome,
        kind="survival",
        horizon=horizon,
        clinical=clinical,
        variables=PAIRED_VARIABLES,
        expression=pd.DataFrame(expr, index=ids, columns=genes),
        histology=bags,
        name="paired_benchmark",
    )
    sets = {
        f"program_{k}": [g for g, p in zip(genes, program_of, strict=True) if p == k]
        for k in range(n_programs)
    }
    return PairedBenchmark(
        data, pd.DataFrame(z, index=ids, columns=list(sets)), loadings, sets, hazard
    )
