"""Per-slide feature files: atomic HDF5 writes with a success marker, and bag loading.

Layout of a metastat feature file ``<slide_id>.h5`` (CLAM-compatible dataset names):

- ``features`` (n_tiles, dim) float16
- ``coords`` (n_tiles, 2) int64: tile top-left (x, y) in level-0 pixels
- ``coords_um`` (n_tiles, 2) float64: the same in µm
- ``tissue_fraction`` (n_tiles,) float32
- attributes: ``format``, ``slide_id``, ``mpp``, ``tile_size_px``, ``tile_size_um``,
  ``tile_size_px0``, ``target_mpp``, ``encoder``, ``encoder_version``, ``reader``,
  ``metastat_version``, ``created_utc``.

Next to it, ``<slide_id>.h5.done`` (JSON: size, SHA-256, versions, config fingerprint) is
written only after the file has been fsynced and renamed into place; a file without a valid
marker is never listed as complete. CLAM (``features``/``coords``) and TRIDENT
(``feats``/``coords``) bags load through the same :func:`load_bag`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from metastat import __version__
from metastat.atomic import atomic_path, atomic_write
from metastat.core.provenance import sha256_file
from metastat.slides.errors import FeatureStoreError

FORMAT = "metastat-features/1"
MARKER_SUFFIX = ".done"


@dataclass(frozen=True)
class FeatureBag:
    """The tile features of one slide, ready for multiple-instance learning."""

    slide_id: str
    features: np.ndarray  # (n_tiles, dim) float32
    coords_px0: np.ndarray  # (n_tiles, 2) int64, tile top-left (x, y) in level-0 px
    tile_size_px0: int | None
    mpp: float | None
    encoder: str | None
    path: Path | None = None
    source_format: str = FORMAT
    tissue_fraction: np.ndarray | None = None

    @property
    def n_tiles(self) -> int:
        """Number of tiles (instances) in the bag."""
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.features.shape[1])

    @property
    def coords_um(self) -> np.ndarray | None:
        """Tile top-left in µm (None when the slide's µm/px is unknown)."""
        return None if self.mpp is None else self.coords_px0.astype(np.float64) * self.mpp


def marker_path(path: Path) -> Path:
    """Success-marker path of a feature file."""
    return path.with_name(path.name + MARKER_SUFFIX)


def write_features(
    path: str | os.PathLike[str],
    *,
    slide_id: str,
    features: np.ndarray,
    coords_px0: np.ndarray,
    mpp: float,
    tissue_fraction: np.ndarray,
    attrs: Mapping[str, Any],
    fingerprint: str,
) -> Path:
    """Write one slide's feature file atomically, then its success marker; return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    feats = np.asarray(features)
    coords = np.asarray(coords_px0, dtype=np.int64).reshape(-1, 2)
    if feats.ndim != 2 or feats.shape[0] != coords.shape[0]:
        raise FeatureStoreError(
            f"features {feats.shape} and coords {coords.shape} of slide '{slide_id}' disagree"
        )
    marker = marker_path(out)
    marker.unlink(missing_ok=True)  # an old marker must never vouch for a new file
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("features", data=feats.astype(np.float16), chunks=True)
        h5.create_dataset("coords", data=coords)
        h5.create_dataset("coords_um", data=coords.astype(np.float64) * float(mpp))
        h5.create_dataset("tissue_fraction", data=np.asarray(tissue_fraction, np.float32))
        meta = {
            "format": FORMAT,
            "slide_id": slide_id,
            "mpp": float(mpp),
            "metastat_version": __version__,
            "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            **{k: v for k, v in attrs.items() if v is not None},
        }
        for key, value in meta.items():
            h5.attrs[key] = value
    record = {
        "format": FORMAT,
        "file": out.name,
        "size_bytes": out.stat().st_size,
        "sha256": sha256_file(out),
        "n_tiles": int(coords.shape[0]),
        "fingerprint": fingerprint,
        "metastat_version": __version__,
    }
    atomic_write(marker, json.dumps(record, indent=2))
    return out


def read_marker(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The success record of a feature file, or None if absent or unreadable."""
    m = marker_path(Path(path))
    try:
        record = json.loads(m.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_complete(
    path: str | os.PathLike[str], *, fingerprint: str | None = None, verify: bool = False
) -> bool:
    """Whether ``path`` is a finished feature file (marker present and matching the file).

    ``fingerprint`` additionally requires the same processing settings; ``verify`` recomputes
    the SHA-256 (otherwise the size is checked).
    """
    p = Path(path)
    record = read_marker(p)
    if record is None or not p.is_file():
        return False
    if record.get("size_bytes") != p.stat().st_size:
        return False
    if fingerprint is not None and record.get("fingerprint") != fingerprint:
        return False
    return not verify or record.get("sha256") == sha256_file(p)


def list_bags(directory: str | os.PathLike[str], *, include_external: bool = False) -> list[Path]:
    """Complete metastat feature files in ``directory`` (sorted); a run's ``--out`` folder
    works too (its ``features/`` subfolder is used).

    With ``include_external``, CLAM/TRIDENT ``.h5`` bags found anywhere below ``directory``
    (they have no success marker) are listed too.
    """
    d = Path(directory)
    if not d.is_dir():
        raise FeatureStoreError(
            f"feature folder '{d}' does not exist: run 'metastat slides process ... --out {d}' "
            "first, or pass the folder that holds the .h5 feature files"
        )
    if not any(d.glob("*.h5")) and (d / "features").is_dir():  # a run's --out folder
        d = d / "features"
    bags = [p for p in sorted(d.glob("*.h5")) if is_complete(p)]
    if include_external:
        own = set(bags)
        for p in sorted(d.rglob("*.h5")):
            if p in own or read_marker(p) is not None or p.name.startswith("."):
                continue
            try:
                with h5py.File(p, "r") as h5:
                    if "features" in h5 or "feats" in h5:
                        bags.append(p)
            except OSError:
                continue
    return bags


#: attributes naming the tile encoder (metastat, then CLAM / TRIDENT spellings)
ENCODER_ATTRS = ("encoder", "encoder_name", "patch_encoder")


def read_encoder(path: str | os.PathLike[str]) -> str | None:
    """The tile encoder a feature file records, without reading its features."""
    with h5py.File(path, "r") as h5:
        enc = _attr(h5, *ENCODER_ATTRS)
    return None if enc is None else str(enc)


def _attr(h5: h5py.File, *names: str) -> Any:
    for n in names:
        if n in h5.attrs:
            v = h5.attrs[n]
            return v.item() if isinstance(v, np.generic) else v
        if "coords" in h5 and n in h5["coords"].attrs:
            v = h5["coords"].attrs[n]
            return v.item() if isinstance(v, np.generic) else v
    return None


def _external_slide_id(path: Path) -> str:
    # TRIDENT/CLAM name files <slide_id>.h5; some exports use <slide_id>/features.h5
    return path.parent.name if path.stem in {"features", "feats"} else path.stem


def load_bag(path: str | os.PathLike[str]) -> FeatureBag:
    """Load a metastat feature file, or a CLAM / TRIDENT ``.h5`` bag, as a :class:`FeatureBag`."""
    p = Path(path)
    try:
        h5 = h5py.File(p, "r")
    except (OSError, FileNotFoundError) as exc:
        raise FeatureStoreError(
            f"cannot open feature file '{p}': {exc}. Check the path, or re-run "
            "'metastat slides process' for this slide"
        ) from exc
    with h5:
        own = _attr(h5, "format") == FORMAT
        if own and not is_complete(p):
            raise FeatureStoreError(
                f"feature file '{p}' has no valid success marker ({marker_path(p).name}): it is "
                "incomplete or was modified; re-run 'metastat slides process' to rewrite it"
            )
        key = "features" if "features" in h5 else "feats" if "feats" in h5 else None
        if key is None:
            raise FeatureStoreError(
                f"'{p}' has no 'features' or 'feats' dataset (found {sorted(h5)}): it is not a "
                "metastat, CLAM or TRIDENT feature bag"
            )
        feats = np.asarray(h5[key][()], dtype=np.float32)
        if feats.ndim == 3 and feats.shape[0] == 1:  # some exporters keep a batch axis
            feats = feats[0]
        if feats.ndim != 2:
            raise FeatureStoreError(f"'{p}': features must be 2-D, got shape {feats.shape}")
        if "coords" in h5:
            coords = np.asarray(h5["coords"][()]).reshape(-1, 2).astype(np.int64)
        else:
            coords = np.full((feats.shape[0], 2), -1, dtype=np.int64)  # unknown positions
        if coords.shape[0] != feats.shape[0]:
            raise FeatureStoreError(
                f"'{p}': {feats.shape[0]} feature rows but {coords.shape[0]} coordinates"
            )
        tile = _attr(h5, "tile_size_px0", "patch_size_level0")
        if tile is None:  # CLAM: patch_size at patch_level with a downsample
            size, ds = _attr(h5, "patch_size"), _attr(h5, "downsample")
            if size is not None:
                factor = float(np.ravel(ds)[0]) if ds is not None else 1.0
                tile = round(float(size) * factor)
        mpp = _attr(h5, "mpp")
        encoder = _attr(h5, *ENCODER_ATTRS)
        slide_id = _attr(h5, "slide_id") if own else _external_slide_id(p)
        tissue = np.asarray(h5["tissue_fraction"][()]) if "tissue_fraction" in h5 else None
    return FeatureBag(
        slide_id=str(slide_id),
        features=feats,
        coords_px0=coords,
        tile_size_px0=int(tile) if tile is not None else None,
        mpp=float(mpp) if mpp is not None else None,
        encoder=str(encoder) if encoder is not None else None,
        path=p,
        source_format=FORMAT if own else ("trident" if key == "feats" else "clam"),
        tissue_fraction=tissue,
    )
