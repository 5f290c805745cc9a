"""The feature-store protocol: where per-slide tile features are written, read and listed.

A :class:`FeatureStore` maps slide ids to bags: ``write`` (atomic, with a success marker),
``read`` (a :class:`~metastat.slides.store.FeatureBag`), ``list`` (complete slides) and
``is_complete``. :class:`HDF5Store` is metastat's own layout (``<slide_id>.h5`` +
``<slide_id>.h5.done``, see :mod:`metastat.slides.store`); :class:`ExternalH5Store` reads CLAM
(``features``) and TRIDENT (``feats``) ``.h5`` exports, read-only. Callers name slides, never
file suffixes, so another format is one more class.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from metastat.slides import store
from metastat.slides.errors import FeatureStoreError
from metastat.slides.store import FeatureBag


@runtime_checkable
class FeatureStore(Protocol):
    """Per-slide tile features by slide id."""

    root: Path

    def path_for(self, slide_id: str) -> Path: ...

    def write(
        self,
        slide_id: str,
        *,
        features: np.ndarray,
        coords_px0: np.ndarray,
        mpp: float,
        tissue_fraction: np.ndarray,
        attrs: Mapping[str, Any],
        fingerprint: str,
    ) -> Path: ...

    def read(self, slide_id: str) -> FeatureBag: ...

    def list(self) -> list[str]: ...

    def is_complete(self, slide_id: str, fingerprint: str | None = None) -> bool: ...


class HDF5Store:
    """metastat's HDF5 feature files in one folder (a run's ``--out`` folder works too)."""

    suffix = ".h5"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        r = Path(root)
        if not any(r.glob(f"*{self.suffix}")) and (r / "features").is_dir():
            r = r / "features"
        self.root = r

    def path_for(self, slide_id: str) -> Path:
        return self.root / f"{slide_id}{self.suffix}"

    def write(self, slide_id: str, **fields: Any) -> Path:
        """Write one slide's bag (fields of :func:`metastat.slides.store.write_features`)."""
        return store.write_features(self.path_for(slide_id), slide_id=slide_id, **fields)

    def read(self, slide_id: str) -> FeatureBag:
        return store.load_bag(self.path_for(slide_id))

    def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name[: -len(self.suffix)] for p in store.list_bags(self.root)]

    def is_complete(self, slide_id: str, fingerprint: str | None = None) -> bool:
        return store.is_complete(self.path_for(slide_id), fingerprint=fingerprint)


class ExternalH5Store:
    """CLAM / TRIDENT ``.h5`` bags anywhere below ``root`` (read-only; no success markers)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._paths: dict[str, Path] | None = None

    def _index(self) -> dict[str, Path]:
        if self._paths is None:
            paths = store.list_bags(self.root, include_external=True)
            own = set(store.list_bags(self.root))
            self._paths = {store._external_slide_id(p): p for p in paths if p not in own}
        return self._paths

    def path_for(self, slide_id: str) -> Path:
        return self._index().get(slide_id, self.root / f"{slide_id}.h5")

    def write(self, slide_id: str, **_: Any) -> Path:
        raise FeatureStoreError(
            f"'{self.root}' holds CLAM / TRIDENT exports, which metastat only reads; write "
            f"slide '{slide_id}' to an HDF5Store folder instead"
        )

    def read(self, slide_id: str) -> FeatureBag:
        if slide_id not in self._index():
            raise FeatureStoreError(
                f"no CLAM / TRIDENT bag for slide '{slide_id}' under {self.root}"
            )
        return store.load_bag(self._index()[slide_id])

    def list(self) -> list[str]:
        return sorted(self._index())

    def is_complete(self, slide_id: str, fingerprint: str | None = None) -> bool:
        return slide_id in self._index()  # no marker: present and readable is all we know


def open_store(root: str | os.PathLike[str]) -> FeatureStore:
    """The store of a folder: metastat's own files if it holds any, else CLAM / TRIDENT."""
    own = HDF5Store(root)
    if own.root.is_dir() and own.list():
        return own
    ext = ExternalH5Store(root)
    if Path(root).is_dir() and ext.list():
        return ext
    return own
