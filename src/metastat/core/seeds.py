"""Random streams keyed by a sample: what one patient draws never depends on the others.

A single generator advanced patient after patient gives a patient's draw (e.g. its tile subsample)
from its position in the cohort, so the same slide scored alone or in a batch would get another
score. :func:`keyed_rng` seeds one stream per ``(seed, key)`` from a digest of the key, stable
across processes and Python versions (``hash(str)`` is salted per process).
"""

from __future__ import annotations

import hashlib

import numpy as np


def keyed_rng(seed: int, key: str) -> np.random.Generator:
    """A generator for ``key`` (e.g. a patient id) under the run seed ``seed``."""
    digest = hashlib.sha256(str(key).encode("utf-8")).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


def subsample(x: np.ndarray, max_rows: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_rows`` rows of ``x`` (e.g. tiles of a bag), drawn without replacement and
    kept in their order."""
    if max_rows is None or len(x) <= max_rows:
        return x
    return x[np.sort(rng.choice(len(x), max_rows, replace=False))]
