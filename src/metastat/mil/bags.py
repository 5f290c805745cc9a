"""Bags for MIL: slide sources, patient grouping, outcome targets and masked collation.

A *unit* is what the model sees as one bag: a patient (the tiles of all their slides pooled,
default) or a single slide. Features are validated on load (empty, NaN, wrong dimension) with
errors that name the slide and file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from metastat.data.target import Target
from metastat.errors import InputError, ModelError


class BagSource(Protocol):
    """Anything that yields one slide's tile features (and coordinates) by index."""

    @property
    def slide_ids(self) -> list[str]: ...

    def features(self, i: int) -> np.ndarray: ...

    def coords(self, i: int) -> np.ndarray: ...


def check_features(
    x: np.ndarray, slide_id: str, where: str = "", dim: int | None = None
) -> np.ndarray:
    """Return ``x`` as float32 (n, d) or raise naming the slide for empty / NaN / wrong-dim bags."""
    at = f" ({where})" if where else ""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InputError(
            f"slide '{slide_id}'{at} has an empty bag (shape {x.shape}): no tiles "
            "were extracted; check its tissue detection or drop it from the manifest"
        )
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise InputError(
            f"slide '{slide_id}'{at}: {int(bad.sum())} of {len(x)} tiles have NaN/inf "
            f"features (first row {int(np.flatnonzero(bad)[0])}); re-extract features"
        )
    if dim is not None and x.shape[1] != dim:
        raise ModelError(
            f"slide '{slide_id}'{at} has {x.shape[1]}-d features but the model expects "
            f"{dim}-d: use features from the encoder the model was trained on"
        )
    return x


@dataclass
class ArrayBags:
    """In-memory bags (tests, planted benchmark, small cohorts)."""

    slide_ids: list[str]
    arrays: list[np.ndarray]
    coord_arrays: list[np.ndarray] | None = None

    def features(self, i: int) -> np.ndarray:
        return check_features(self.arrays[i], self.slide_ids[i])

    def coords(self, i: int) -> np.ndarray:
        if self.coord_arrays is None:
            return np.full((len(self.arrays[i]), 2), -1, np.int64)
        return self.coord_arrays[i]


@dataclass
class FileBags:
    """Bags read lazily from feature files (metastat, CLAM or TRIDENT .h5), small LRU cache."""

    slide_ids: list[str]
    paths: list[Path]
    cache_size: int = 64
    _cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    encoders: dict[int, str | None] = field(default_factory=dict, repr=False)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._cache:
            from metastat.slides.store import load_bag

            bag = load_bag(self.paths[i])
            self.encoders[i] = bag.encoder
            x = check_features(bag.features, self.slide_ids[i], str(self.paths[i]))
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[i] = (x, bag.coords_px0)
        return self._cache[i]

    def features(self, i: int) -> np.ndarray:
        return self._load(i)[0]

    def coords(self, i: int) -> np.ndarray:
        return self._load(i)[1]


Targets = Target  # the one outcome type, metastat.data.target.Target (name kept for callers)


@dataclass
class MILData:
    """Units (lists of slide indices into ``source``), their patients and targets."""

    source: BagSource
    units: list[list[int]]
    unit_ids: list[str]
    patient_ids: np.ndarray
    targets: Target
    classes: list[str] = field(default_factory=lambda: ["0", "1"])

    def __len__(self) -> int:
        return len(self.units)

    def bag(self, u: int) -> np.ndarray:
        """All tiles of unit ``u`` (slides concatenated)."""
        return np.concatenate([self.source.features(i) for i in self.units[u]], axis=0)

    def dim(self) -> int:
        return int(self.source.features(self.units[0][0]).shape[1])


def group_units(
    slide_ids: Sequence[str], patient_ids: Sequence[str], unit: str
) -> tuple[list[list[int]], list[str], np.ndarray]:
    """Units and their ids/patients: one per patient (slides pooled) or one per slide."""
    pids = np.asarray(patient_ids).astype(str)
    if unit == "slide":
        return [[i] for i in range(len(slide_ids))], list(slide_ids), pids
    order = [str(p) for p in dict.fromkeys(pids)]
    units = [[int(i) for i in np.flatnonzero(pids == p)] for p in order]
    return units, order, np.asarray(order)


def _candidates(manifest_dir: Path, features_dir: str | Path | None, row: dict) -> list[Path]:
    """Where one manifest row's feature file may be, in the order tried (duplicates dropped):
    its ``path`` as given (absolute, or relative to the manifest's folder, then to
    ``features_dir``), else ``features_dir/<slide_id>.h5`` or ``<slide_id>/features.h5``."""
    feats = Path(features_dir) if features_dir is not None else None
    q = row.get("path")
    if isinstance(q, str) and q.strip():
        given = Path(q)
        if given.is_absolute():
            return [given]
        out = [manifest_dir / given]
        if feats is not None:
            out += [feats / given, feats / given.name]
    else:
        sid = str(row["slide_id"])
        out = [feats / f"{sid}.h5", feats / sid / "features.h5"] if feats is not None else []
    return list(dict.fromkeys(out))


def read_manifest(path: str | Path, features_dir: str | Path | None = None) -> pd.DataFrame:
    """Manifest CSV -> slide_id, patient_id, path (+ outcome columns), every path checked."""
    p = Path(path)
    try:
        df = pd.read_csv(p, dtype={"slide_id": str, "patient_id": str})
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read manifest '{p}': {exc}") from exc
    if "slide_id" not in df.columns:
        raise InputError(f"manifest '{p}' needs a 'slide_id' column (found {list(df.columns)})")
    if "patient_id" not in df.columns:
        df["patient_id"] = df["slide_id"]
    empty = df["patient_id"].isna() | (df["patient_id"].astype(str).str.strip() == "")
    if empty.any():
        raise InputError(
            f"manifest '{p}': slides {df.loc[empty, 'slide_id'].tolist()[:5]} have no patient_id"
        )
    if "path" not in df.columns and features_dir is None:
        raise InputError(
            f"manifest '{p}' has no 'path' column: pass --features DIR holding <slide_id>.h5 files"
        )
    tried = [_candidates(p.parent, features_dir, row) for row in df.to_dict("records")]
    df["path"] = [next((str(c) for c in cands if c.is_file()), "") for cands in tried]
    missing = [(s, c) for s, q, c in zip(df["slide_id"], df["path"], tried, strict=True) if not q]
    if missing:
        shown = "; ".join(
            f"{s}: tried {', '.join(map(str, c)) or 'nothing (no path, no --features)'}"
            for s, c in missing[:3]
        )
        raise InputError(
            f"manifest '{p}': no feature file for {len(missing)} slide(s) ({shown}); paths in the "
            "manifest are relative to its folder (or to --features); run 'metastat slides "
            "process' first if the bags do not exist yet"
        )
    return df


def check_patients(patients_with_outcome: Sequence[str], manifest: pd.DataFrame) -> None:
    """Raise if a patient with an outcome has no slide in the manifest."""
    have = set(manifest["patient_id"].astype(str))
    lost = [p for p in patients_with_outcome if str(p) not in have]
    if lost:
        raise InputError(
            f"patients {lost[:5]} have an outcome but no slides ({len(lost)} in all): "
            "add their slides to the manifest or remove them from the outcome table"
        )


def collate(bags: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad variable-size bags to (B, N_max, D) with a boolean mask (B, N_max) of real tiles."""
    n = max(len(b) for b in bags)
    x = torch.zeros(len(bags), n, bags[0].shape[1])
    mask = torch.zeros(len(bags), n, dtype=torch.bool)
    for i, b in enumerate(bags):
        x[i, : len(b)] = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))
        mask[i, : len(b)] = True
    return x, mask
