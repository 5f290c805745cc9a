"""Feature store: atomic writes, success markers, re-run detection, CLAM/TRIDENT bags."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from metastat.slides import is_complete, list_bags, load_bag
from metastat.slides.errors import FeatureStoreError
from metastat.slides.store import marker_path, write_features

DATA = Path(__file__).parent / "data"


def _write(path: Path, n: int = 7, fingerprint: str = "fp") -> Path:
    rng = np.random.default_rng(0)
    return write_features(
        path,
        slide_id="S1",
        features=rng.standard_normal((n, 16)).astype(np.float32),
        coords_px0=np.arange(2 * n).reshape(n, 2) * 224,
        mpp=0.5,
        tissue_fraction=np.ones(n),
        attrs={"encoder": "efficientnet_lite0", "tile_size_px0": 224, "tile_size_um": 112.0},
        fingerprint=fingerprint,
    )


def test_roundtrip_own_format(tmp_path: Path) -> None:
    p = _write(tmp_path / "S1.h5")
    bag = load_bag(p)
    assert bag.slide_id == "S1" and bag.features.dtype == np.float32
    assert bag.features.shape == (7, 16) and bag.coords_px0.dtype == np.int64
    assert bag.tile_size_px0 == 224 and bag.mpp == 0.5 and bag.encoder == "efficientnet_lite0"
    np.testing.assert_allclose(bag.coords_um, bag.coords_px0 * 0.5)
    with h5py.File(p) as h5:
        assert h5["features"].dtype == np.float16
        assert h5.attrs["metastat_version"]
    assert list_bags(tmp_path) == [p]
    assert p.stat().st_mode & 0o044  # readable by group/others as the umask allows


def test_unmarked_or_modified_file_is_not_complete(tmp_path: Path) -> None:
    p = _write(tmp_path / "S1.h5")
    assert is_complete(p, fingerprint="fp", verify=True)
    assert not is_complete(p, fingerprint="other-settings")
    with open(p, "ab") as fh:  # a file changed after the marker was written
        fh.write(b"x")
    assert not is_complete(p)
    assert list_bags(tmp_path) == []
    with pytest.raises(FeatureStoreError, match="success marker"):
        load_bag(p)
    marker_path(p).unlink()
    assert not is_complete(p)


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError):
        write_features(
            tmp_path / "S2.h5",
            slide_id="S2",
            features=np.zeros((3, 4)),
            coords_px0=np.zeros((2, 2)),
            mpp=0.5,
            tissue_fraction=np.ones(3),
            attrs={},
            fingerprint="x",
        )
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_marker(tmp_path: Path) -> None:
    p = _write(tmp_path / "S1.h5", n=3, fingerprint="a")
    p = _write(tmp_path / "S1.h5", n=5, fingerprint="b")
    assert is_complete(p, fingerprint="b") and load_bag(p).n_tiles == 5
    assert [q.name for q in tmp_path.iterdir() if q.name.endswith(".tmp")] == []


def test_real_external_bag_loads() -> None:
    bags = list_bags(DATA / "features", include_external=True)
    assert len(bags) == 1
    bag = load_bag(bags[0])
    assert bag.slide_id == "TCGA-3X-AAVA-01Z-00-DX1"
    assert bag.features.shape == (180, 512) and bag.features.dtype == np.float32
    assert bag.coords_px0.shape == (180, 2)
    assert list_bags(DATA / "features") == []  # not success-marked: only with include_external


def test_trident_layout(tmp_path: Path) -> None:
    p = tmp_path / "TCGA-X.h5"
    with h5py.File(p, "w") as h5:
        h5["feats"] = np.ones((4, 8), np.float32)
        h5["coords"] = np.arange(8).reshape(4, 2)
        h5["coords"].attrs["patch_size_level0"] = 512
    bag = load_bag(p)
    assert (bag.slide_id, bag.tile_size_px0, bag.source_format) == ("TCGA-X", 512, "trident")


def test_shipped_real_bags() -> None:
    """Real TCGA bags shipped in tests/data (CLAM/TRIDENT folder layout), no ../shared needed."""
    data = Path(__file__).parent / "data"
    bags = [p for d in ("features", "mil") for p in list_bags(data / d, include_external=True)]
    loaded = {load_bag(p).slide_id: load_bag(p) for p in bags}
    assert loaded["TCGA-AD-6964-01Z-00-DX1"].features.shape == (777, 512)
    assert loaded["TCGA-AD-6964-01Z-00-DX1"].coords_px0[0].tolist() == [10240, 21504]
    assert loaded["TCGA-3X-AAVA-01Z-00-DX1"].features.shape == (180, 512)


def test_not_a_bag(tmp_path: Path) -> None:
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as h5:
        h5["other"] = np.zeros(3)
    with pytest.raises(FeatureStoreError, match="no 'features'"):
        load_bag(p)
    (tmp_path / "y.h5").write_bytes(b"garbage")
    with pytest.raises(FeatureStoreError, match="cannot open"):
        load_bag(tmp_path / "y.h5")
