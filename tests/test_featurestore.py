"""The feature-store protocol: metastat HDF5 (write / read / list / is-complete) and CLAM /
TRIDENT exports behind the same interface."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from metastat.slides.errors import FeatureStoreError
from metastat.slides.featurestore import ExternalH5Store, FeatureStore, HDF5Store, open_store


def _write(fs: HDF5Store, sid: str, n: int = 5) -> None:
    fs.write(
        sid,
        features=np.ones((n, 4), np.float32),
        coords_px0=np.arange(2 * n).reshape(n, 2),
        mpp=0.5,
        tissue_fraction=np.ones(n, np.float32),
        attrs={"encoder": "toy"},
        fingerprint="fp1",
    )


def test_hdf5_store_round_trip_and_completeness(tmp_path):
    fs = HDF5Store(tmp_path / "features")
    assert isinstance(fs, FeatureStore) and fs.list() == []
    _write(fs, "S2")
    _write(fs, "S1", n=3)
    assert fs.list() == ["S1", "S2"]
    assert fs.is_complete("S1", "fp1") and not fs.is_complete("S1", "other")
    bag = fs.read("S1")
    assert bag.slide_id == "S1" and bag.features.shape == (3, 4) and bag.encoder == "toy"
    fs.path_for("S2").with_name("S2.h5.done").unlink()  # interrupted write: not complete
    assert fs.list() == ["S1"] and not fs.is_complete("S2")
    assert HDF5Store(tmp_path).root == tmp_path / "features"  # a run's --out folder works


def test_external_store_reads_clam_and_trident_and_refuses_writes(tmp_path):
    with h5py.File(tmp_path / "A.h5", "w") as h5:  # CLAM
        h5["features"] = np.zeros((4, 8), np.float32)
        h5["coords"] = np.zeros((4, 2), np.int64)
    (tmp_path / "B").mkdir()
    with h5py.File(tmp_path / "B" / "features.h5", "w") as h5:  # TRIDENT, per-slide folder
        h5["feats"] = np.zeros((6, 8), np.float32)
    fs = open_store(tmp_path)
    assert isinstance(fs, ExternalH5Store) and fs.list() == ["A", "B"]
    assert fs.read("B").source_format == "trident" and fs.is_complete("A")
    with pytest.raises(FeatureStoreError, match="only reads"):
        fs.write("C")
    with pytest.raises(FeatureStoreError, match="no CLAM / TRIDENT bag for slide 'Z'"):
        fs.read("Z")
