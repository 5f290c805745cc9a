"""Planted-witness benchmark: bags of real H&E tile embeddings with known tumour tiles.

Pools (``tests/data/mil/planted_pools.npz``, built by ``benchmarks/bench_mil_planted_pools.py``)
hold EfficientNet-Lite0 embeddings of real tiles: tumour crops from a real H&E tumour region and
background tissue tiles from two real slides and labelled real tiles. A bag draws background
tiles (with a bag-specific mixture of sources), adds per-tile noise and a bag-level shift
(a stain / scanner batch effect that pooling baselines must see through); positive bags have a
fraction ``witness_rate`` (1-10 %) of their tiles replaced by tumour tiles, planted as one
contiguous focus on the tile grid. Instance labels are kept for localisation AUC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metastat.errors import InputError
from metastat.mil.bags import MILData, Targets

DEFAULT_POOLS = Path(__file__).resolve().parents[3] / "tests" / "data" / "mil" / "planted_pools.npz"


@dataclass(frozen=True)
class Pools:
    """Tumour and background tile embeddings (float32) and the encoder that made them."""

    tumour: np.ndarray
    background: np.ndarray
    background_source: np.ndarray
    encoder: str


def load_pools(path: str | Path | None = None) -> Pools:
    """Load the cached real-tile embedding pools."""
    p = Path(path) if path is not None else DEFAULT_POOLS
    if not p.is_file():
        raise InputError(
            f"planted-benchmark pools '{p}' not found: build them with "
            "'python benchmarks/bench_mil_planted_pools.py --out {p}'"
        )
    with np.load(p) as z:
        return Pools(
            z["tumour"].astype(np.float32),
            z["background"].astype(np.float32),
            z["background_source"].astype(int),
            str(z["encoder"]),
        )


@dataclass(frozen=True)
class PlantedBags:
    """A deterministic generator of planted bags (bag ``i`` is the same on every call)."""

    pools: Pools
    n_bags: int
    n_tiles: tuple[int, int] = (200, 400)
    witness_rate: tuple[float, float] = (0.01, 0.10)
    positive_fraction: float = 0.5
    noise: float = 0.5  # per-tile noise, in units of the pool's per-feature sd
    bag_shift: float = 0.25  # bag-level shift, same units
    seed: int = 0
    tile_size_px0: int = 224

    @property
    def slide_ids(self) -> list[str]:
        return [f"planted-{self.seed}-{i:04d}" for i in range(self.n_bags)]

    @property
    def labels(self) -> np.ndarray:
        n_pos = round(self.n_bags * self.positive_fraction)
        lab = np.zeros(self.n_bags, dtype=int)
        lab[np.random.default_rng([self.seed, 10**6]).permutation(self.n_bags)[:n_pos]] = 1
        return lab

    def generate(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features (n, d) float32, coords (n, 2) level-0 px and instance labels of bag ``i``."""
        rng = np.random.default_rng([self.seed, i])
        bg, tu = self.pools.background, self.pools.tumour
        n = int(rng.integers(self.n_tiles[0], self.n_tiles[1] + 1))
        n_src = int(self.pools.background_source.max()) + 1
        mix = rng.dirichlet(np.full(n_src, 0.7))[self.pools.background_source]
        idx = rng.choice(len(bg), n, p=mix / mix.sum())
        x = bg[idx].copy()
        side = int(np.ceil(np.sqrt(n)))
        cells = rng.choice(side * side, n, replace=False)
        grid = np.stack([cells % side, cells // side], axis=1)
        inst = np.zeros(n, dtype=bool)
        if self.labels[i] == 1:
            k = max(1, round(n * rng.uniform(*self.witness_rate)))
            centre = grid[rng.integers(n)]
            focus = np.argsort(((grid - centre) ** 2).sum(1) + rng.random(n) * 0.1)[:k]
            x[focus] = tu[rng.choice(len(tu), k)]
            inst[focus] = True
        sd = bg.std(axis=0, keepdims=True)
        x += sd * (
            self.noise * rng.standard_normal(x.shape, dtype=np.float32)
            + self.bag_shift * rng.standard_normal((1, x.shape[1]), dtype=np.float32)
        )
        return x.astype(np.float32), (grid * self.tile_size_px0).astype(np.int64), inst

    def features(self, i: int) -> np.ndarray:
        return self.generate(i)[0]

    def coords(self, i: int) -> np.ndarray:
        return self.generate(i)[1]

    def instance_labels(self, i: int) -> np.ndarray:
        return self.generate(i)[2]


@dataclass
class CachedBags:
    """Materialised bags of a generator (fast repeated access for small benchmarks)."""

    slide_ids: list[str]
    arrays: list[np.ndarray]
    coord_arrays: list[np.ndarray]
    instance: list[np.ndarray]

    @classmethod
    def from_generator(cls, gen: PlantedBags) -> CachedBags:
        parts = [gen.generate(i) for i in range(gen.n_bags)]
        return cls(
            gen.slide_ids, [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts]
        )

    def features(self, i: int) -> np.ndarray:
        return self.arrays[i]

    def coords(self, i: int) -> np.ndarray:
        return self.coord_arrays[i]

    def instance_labels(self, i: int) -> np.ndarray:
        return self.instance[i]


def planted_data(gen: PlantedBags, cache: bool = True, slides_per_patient: int = 1) -> MILData:
    """MILData (binary: bag contains tumour) from a generator; patients own consecutive bags."""
    source = CachedBags.from_generator(gen) if cache else gen
    labels = _patient_labels(gen.labels, slides_per_patient)
    patients = np.array([f"P{i // slides_per_patient:04d}" for i in range(gen.n_bags)])
    return MILData(
        source,
        [[i] for i in range(gen.n_bags)],
        gen.slide_ids,
        patients,
        Targets(label=labels),
        ["negative", "tumour"],
    )


def write_cohort(gen: PlantedBags, out_dir: str | Path, slides_per_patient: int = 1) -> Path:
    """Write the bags as metastat feature files plus ``manifest.csv`` (slide_id, patient_id,
    path, label, n_witness); returns the manifest path (for the CLI and its tests)."""
    import pandas as pd

    from metastat.atomic import atomic_write
    from metastat.slides.featurestore import HDF5Store

    out = Path(out_dir)
    feature_store = HDF5Store(out / "features")
    rows = []
    patient_label = _patient_labels(gen.labels, slides_per_patient)
    for i, sid in enumerate(gen.slide_ids):
        x, xy, inst = gen.generate(i)
        path = feature_store.write(
            sid,
            features=x,
            coords_px0=xy,
            mpp=0.5,
            tissue_fraction=np.ones(len(x), np.float32),
            attrs={
                "encoder": gen.pools.encoder,
                "tile_size_px0": gen.tile_size_px0,
                "tile_size_px": gen.tile_size_px0,
            },
            fingerprint="planted",
        )
        rows.append(
            {
                "slide_id": sid,
                "patient_id": f"P{i // slides_per_patient:04d}",
                "path": str(path.relative_to(out)),
                "label": int(patient_label[i]),
                "n_witness": int(inst.sum()),
            }
        )
    manifest = out / "manifest.csv"
    atomic_write(manifest, pd.DataFrame(rows).to_csv(index=False))
    return manifest


def _patient_labels(labels: np.ndarray, slides_per_patient: int) -> np.ndarray:
    """Each slide gets its patient's label: positive if any of the patient's slides is."""
    group = np.arange(len(labels)) // slides_per_patient
    starts = np.flatnonzero(np.r_[True, np.diff(group) > 0])
    return np.maximum.reduceat(labels, starts)[group]
