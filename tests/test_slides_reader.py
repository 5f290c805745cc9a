"""Slide reader: formats, µm/px, bounded reads, non-RGB input, reopen after a corrupt tile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metastat.errors import InputError, MetastatError
from metastat.slides import open_slide
from metastat.slides.errors import (
    MissingMppError,
    ReadTooLargeError,
    SlideOpenError,
    SlideReadError,
)
from metastat.slides.synthetic import corrupt_tile, write_synthetic_slide

DATA = Path(__file__).parent / "data"
CMU = DATA / "slides" / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_slide(
        tmp_path_factory.mktemp("s") / "synth.tiff", size_px0=(2048, 1536), mpp=0.25, seed=1
    )


def test_real_svs_geometry_and_mpp() -> None:
    with open_slide(CMU) as s:
        assert s.dimensions_px0 == (2220, 2967)
        assert s.mpp == pytest.approx(0.499)
        tile = s.read((1000, 1000), (224, 224))
        assert tile.shape == (224, 224, 3) and tile.dtype == np.uint8
        assert 50 < tile.mean() < 250  # real tissue, not an empty buffer


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_backends_agree_on_synthetic_pyramid(synth: Path, backend: str) -> None:
    with open_slide(synth, backend=backend) as s:
        assert s.backend == backend
        assert s.level_dimensions == ((2048, 1536), (1024, 768), (512, 384))
        assert s.mpp == pytest.approx(0.25)
        assert s.best_level_for_downsample(3.0) == 1
        assert s.best_level_for_downsample(0.5) == 0


def test_read_at_physical_resolution(synth: Path) -> None:
    with open_slide(synth) as s:  # 0.25 µm/px, levels at 0.5 and 1.0 µm/px
        assert s.level_for_mpp(0.5) == (1, 2.0)
        np.testing.assert_array_equal(
            s.read_at_mpp((512, 256), (64, 32), 0.5), s.read((512, 256), (64, 32), level=1)
        )
        coarse = s.read_at_mpp((512, 256), (50, 40), 1.6)  # between levels: read + resize
        assert coarse.shape == (40, 50, 3) and s.level_for_mpp(1.6)[0] == 2


def test_backends_return_same_pixels(synth: Path) -> None:
    with open_slide(synth, backend="openslide") as a, open_slide(synth, backend="tiffslide") as b:
        ra, rb = a.read((300, 200), (128, 96), 1), b.read((300, 200), (128, 96), 1)
    assert np.abs(ra.astype(int) - rb.astype(int)).mean() < 3  # same JPEG data, decoders differ


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_reads_past_the_edge_are_white(synth: Path, backend: str) -> None:
    with open_slide(synth, backend=backend) as s:
        t = s.read((2048 - 100, 1536 - 50), (200, 100))  # 100x50 px inside, rest outside
        inside = s.read((2048 - 100, 1536 - 50), (100, 50))
        outside = s.read((5000, 5000), (64, 64), level=1)
    assert np.all(t[50:, :] == 255) and np.all(t[:, 100:] == 255)
    np.testing.assert_array_equal(t[:50, :100], inside)
    assert np.all(outside == 255)


def test_missing_mpp_error_says_how_to_fix(tmp_path: Path) -> None:
    p = write_synthetic_slide(tmp_path / "nompp.tiff", size_px0=(512, 512), mpp=None, levels=1)
    s = open_slide(p)
    assert not s.has_mpp
    with pytest.raises(MissingMppError) as exc:
        _ = s.mpp
    msg = str(exc.value)
    assert "nompp.tiff" in msg and "--mpp" in msg and "manifest" in msg
    assert open_slide(p, mpp_override=0.5).mpp == 0.5


def test_implausible_override_rejected() -> None:
    with pytest.raises(MissingMppError):
        open_slide(CMU, mpp_override=1e6)


def test_huge_single_read_is_bounded() -> None:
    with open_slide(CMU, max_read_px=1000 * 1000) as s, pytest.raises(ReadTooLargeError):
        s.read((0, 0), (2000, 2000))


def test_thumbnail_is_bounded_by_strips() -> None:
    with open_slide(CMU, max_read_px=300_000) as s:  # forces many strips
        thumb = s.thumbnail(512)
    assert max(thumb.shape[:2]) == 512 and thumb.shape[2] == 3


def test_greyscale_slide_reads_as_rgb(tmp_path: Path) -> None:
    p = write_synthetic_slide(
        tmp_path / "grey.tiff",
        size_px0=(512, 512),
        levels=1,
        photometric="minisblack",
        compression="zlib",
    )
    for backend in ("openslide", "tiffslide"):
        with open_slide(p, backend=backend) as s:
            t = s.read((0, 0), (64, 64))
        assert t.shape == (64, 64, 3)
        assert np.array_equal(t[..., 0], t[..., 1])


@pytest.mark.parametrize("content", [b"", b"not a slide at all", b"II*\x00" + b"\x00" * 64])
def test_garbage_files_raise_open_error(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "bad.svs"
    p.write_bytes(content)
    with pytest.raises(SlideOpenError) as exc:
        open_slide(p)
    assert isinstance(exc.value, InputError) and "bad.svs" in str(exc.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(SlideOpenError, match="does not exist"):
        open_slide(tmp_path / "nope.svs")
    with pytest.raises(SlideOpenError, match="folder"):
        open_slide(tmp_path)


def test_corrupt_tile_fails_cleanly_and_handle_recovers(tmp_path: Path) -> None:
    p = write_synthetic_slide(tmp_path / "c.tiff", size_px0=(1024, 1024), levels=1, seed=3)
    corrupt_tile(p, tile_index=5)  # row 1, column 1 of 4x4 tiles
    with open_slide(p, cache_bytes=0) as s:
        with pytest.raises(SlideReadError) as exc:
            s.read((256, 256), (256, 256))
        assert isinstance(exc.value, MetastatError) and "c.tiff" in str(exc.value)
        # an OpenSlide handle is poisoned after an error: the reader must have reopened it
        good = s.read((0, 0), (256, 256))
        assert good.shape == (256, 256, 3)
