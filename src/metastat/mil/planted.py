"""Held-out-source histology benchmark: MIL bags of real H&E tile embeddings.

``load_tiles()`` reads the shipped tiles (``metastat/mil/data/histo_tiles.npz``, built by
``benchmarks/bench_mil_sources_embed.py``; provenance in ``metastat/mil/data/PROVENANCE.md``):
EfficientNet-Lite0 embeddings of labelled tumour / non-tumour tiles from four real H&E sources
grouped in two sites, each embedded as-is, after Macenko or Reinhard normalisation and after a
HED stain jitter. ``split_tiles`` gives train / test tiles for a split: ``site:<name>`` holds a
whole site out (its sources never seen in training), ``spatial`` trains on one half of every
image and tests on the other. No tile, and no pixel, is on both sides of any split.

``make_bags`` builds slides from one side's tiles (positives hold a small fraction of tumour
tiles; several slides per patient), ``mil_data`` turns train + test bags into one
:class:`~metastat.mil.bags.MILData`, and ``write_cohort`` writes them as metastat feature files
plus a manifest (``metastat mil planted``). This validates the MIL machinery (learning from bag
labels, patient grouping, localisation, held-out-source robustness); it says nothing about
lymph-node metastasis prediction.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metastat.errors import InputError, UnknownNameError, did_you_mean
from metastat.mil.bags import ArrayBags, MILData, Targets

DEFAULT_TILES = Path(__file__).resolve().parent / "data" / "histo_tiles.npz"
CLASSES = ["non_tumour", "tumour"]


@dataclass(frozen=True)
class TileSet:
    """Labelled real tiles: one row per tile, one embedding matrix per stain variant."""

    features: dict[str, np.ndarray]  # variant -> (n, d) float32
    tile_id: np.ndarray  # "<source>:<x>:<y>" (top-left px in the source image)
    source: np.ndarray
    site: np.ndarray
    label: np.ndarray  # 1 tumour, 0 non-tumour
    region: np.ndarray  # half of the source image (0 / 1)
    box: np.ndarray  # (n, 4) x, y, width, height in source px
    encoder: str
    stain: dict[str, dict[str, str]]  # variant -> feature-store stain attrs

    def __len__(self) -> int:
        return len(self.tile_id)

    @property
    def sites(self) -> list[str]:
        return sorted(set(self.site.tolist()))

    def variant(self, name: str) -> np.ndarray:
        if name not in self.features:
            known = sorted(self.features)
            raise UnknownNameError(
                f"unknown stain variant {name!r}.{did_you_mean(name, known)} Known: "
                f"{', '.join(known)}"
            )
        return self.features[name]


def load_tiles(path: str | Path | None = None) -> TileSet:
    """Load the shipped tile embeddings (or another file in the same layout)."""
    p = Path(path) if path is not None else DEFAULT_TILES
    if not p.is_file():
        raise InputError(
            f"benchmark tiles '{p}' not found: reinstall metastat or rebuild them with "
            "'python benchmarks/bench_mil_sources_embed.py'"
        )
    with np.load(p) as z:
        feats = {
            k.removeprefix("features/"): z[k].astype(np.float32)
            for k in z.files
            if k.startswith("features/")
        }
        return TileSet(
            feats,
            z["tile_id"].astype(str),
            z["source"].astype(str),
            z["site"].astype(str),
            z["label"].astype(int),
            z["region"].astype(int),
            z["box"].astype(int),
            str(z["encoder"]),
            json.loads(str(z["stain"])),
        )


def split_names(tiles: TileSet) -> list[str]:
    """Every split of the benchmark: each site held out, then the spatial split."""
    return [f"site:{s}" for s in tiles.sites] + ["spatial"]


def split_tiles(tiles: TileSet, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Train and test tile indices of ``split`` (``site:<name>`` or ``spatial``)."""
    if split == "spatial":
        test = tiles.region == 1
    elif split.startswith("site:") and split[5:] in tiles.sites:
        test = tiles.site == split[5:]
    else:
        known = split_names(tiles)
        raise UnknownNameError(
            f"unknown benchmark split {split!r}.{did_you_mean(split, known)} Known: "
            f"{', '.join(known)}"
        )
    return np.flatnonzero(~test), np.flatnonzero(test)


@dataclass(frozen=True)
class BagDesign:
    """How slides are drawn from a pool of tiles."""

    n_patients: int = 40
    slides_per_patient: int = 3
    n_tiles: tuple[int, int] = (32, 64)
    witness_rate: tuple[float, float] = (0.02, 0.10)  # tumour fraction of a positive slide
    positive_fraction: float = 0.5  # of patients
    seed: int = 0


@dataclass(frozen=True)
class Bags:
    """Slides as tile indices into a :class:`TileSet`, with slide labels and patients."""

    slide_ids: list[str]
    patient_ids: np.ndarray
    labels: np.ndarray  # slide label: holds tumour tiles
    tiles: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.slide_ids)

    def patient_labels(self) -> np.ndarray:
        """Each slide's patient label: positive if any of the patient's slides is."""
        pos = set(self.patient_ids[self.labels == 1].tolist())
        return np.array([int(p in pos) for p in self.patient_ids])


def make_bags(tiles: TileSet, pool: np.ndarray, design: BagDesign, prefix: str) -> Bags:
    """Slides drawn from the tiles ``pool``: non-tumour tiles, and in positive slides a fraction
    ``witness_rate`` of tumour tiles. A positive patient has one to all of its slides positive.
    Deterministic in (design.seed, prefix)."""
    rng = np.random.default_rng([design.seed, zlib.crc32(prefix.encode())])
    normal, tumour = pool[tiles.label[pool] == 0], pool[tiles.label[pool] == 1]
    if len(normal) == 0 or len(tumour) == 0:
        raise InputError(f"bags '{prefix}': the tile pool needs tumour and non-tumour tiles")
    per = design.slides_per_patient
    n_slides = design.n_patients * per
    positive = np.zeros(design.n_patients, dtype=bool)
    positive[
        rng.permutation(design.n_patients)[: round(design.n_patients * design.positive_fraction)]
    ] = True
    labels = np.zeros(n_slides, dtype=int)
    for p in np.flatnonzero(positive):  # a positive patient has 1..all slides with tumour
        k = int(rng.integers(1, per + 1))
        labels[p * per + rng.choice(per, k, replace=False)] = 1
    bags = []
    for lab in labels:
        n = min(int(rng.integers(design.n_tiles[0], design.n_tiles[1] + 1)), len(normal))
        idx = rng.choice(normal, n, replace=False)
        if lab:
            k = min(max(1, round(n * rng.uniform(*design.witness_rate))), len(tumour))
            idx[:k] = rng.choice(tumour, k, replace=False)
        bags.append(rng.permutation(idx))
    slide_ids = [f"{prefix}-{i:04d}" for i in range(n_slides)]
    patients = np.array(
        [f"{prefix}-P{i // design.slides_per_patient:03d}" for i in range(n_slides)]
    )
    return Bags(slide_ids, patients, labels, bags)


def instance_labels(tiles: TileSet, bags: Bags, i: int) -> np.ndarray:
    """Tumour flag of each tile of slide ``i``."""
    return tiles.label[bags.tiles[i]] == 1


def bag_features(
    tiles: TileSet,
    bags: Bags,
    variant: str = "none",
    augment: str | None = None,
    seed: int = 0,
) -> list[np.ndarray]:
    """Each slide's (n, d) features; with ``augment`` (e.g. ``none+hed``) every tile takes its
    augmented embedding with probability 1/2 (seeded) - use for training bags only."""
    x = tiles.variant(variant)
    xa = tiles.variant(augment) if augment else None
    rng = np.random.default_rng(seed)
    out = []
    for idx in bags.tiles:
        f = x[idx]
        if xa is not None:
            swap = rng.random(len(idx)) < 0.5
            f = np.where(swap[:, None], xa[idx], f)
        out.append(np.ascontiguousarray(f, dtype=np.float32))
    return out


def mil_data(
    tiles: TileSet,
    train: Bags,
    test: Bags | None = None,
    variant: str = "none",
    augment: str | None = None,
    seed: int = 0,
) -> tuple[MILData, np.ndarray, np.ndarray]:
    """One MILData (slide units, slide labels) holding train then test slides, and the unit
    indices of each side. Augmentation (if any) touches training slides only."""
    arrays = bag_features(tiles, train, variant, augment, seed)
    ids, patients, labels = list(train.slide_ids), [train.patient_ids], [train.labels]
    if test is not None:
        arrays += bag_features(tiles, test, variant)
        ids += test.slide_ids
        patients.append(test.patient_ids)
        labels.append(test.labels)
    data = MILData(
        ArrayBags(ids, arrays),
        [[i] for i in range(len(ids))],
        ids,
        np.concatenate(patients),
        Targets(label=np.concatenate(labels)),
        list(CLASSES),
    )
    return data, np.arange(len(train)), np.arange(len(train), len(ids))


def write_cohort(
    tiles: TileSet, bags: Bags, out_dir: str | Path, variant: str = "none", name: str = "manifest"
) -> Path:
    """Write the slides as metastat feature files plus ``<name>.csv`` (slide_id, patient_id,
    path, label = patient label, slide_label, n_tumour_tiles); returns the manifest path."""
    from metastat.atomic import atomic_write
    from metastat.slides.featurestore import HDF5Store

    out = Path(out_dir)
    feature_store = HDF5Store(out / "features")
    feats = bag_features(tiles, bags, variant)
    plabel = bags.patient_labels()
    rows = []
    for i, sid in enumerate(bags.slide_ids):
        idx = bags.tiles[i]
        side = int(np.ceil(np.sqrt(len(idx))))
        cells = np.arange(len(idx))
        xy = np.stack([cells % side, cells // side], axis=1) * 224  # tiles laid on a grid
        path = feature_store.write(
            sid,
            features=feats[i],
            coords_px0=xy.astype(np.int64),
            mpp=0.5,
            tissue_fraction=np.ones(len(idx), np.float32),
            attrs={
                "encoder": tiles.encoder,
                "tile_size_px0": 224,
                "tile_size_px": 224,
                "benchmark_tiles": ",".join(tiles.tile_id[idx]),
                **tiles.stain.get(variant, {}),
            },
            fingerprint="metastat-mil-planted",
        )
        rows.append(
            {
                "slide_id": sid,
                "patient_id": bags.patient_ids[i],
                "path": str(path.relative_to(out)),
                "label": int(plabel[i]),
                "slide_label": int(bags.labels[i]),
                "n_tumour_tiles": int(instance_labels(tiles, bags, i).sum()),
            }
        )
    manifest = out / f"{name}.csv"
    atomic_write(manifest, pd.DataFrame(rows).to_csv(index=False))
    return manifest
