"""Property-based: truncated and bit-flipped slide files give metastat errors, never a crash,
a hang or a foreign exception."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metastat.errors import MetastatError
from metastat.slides import open_slide
from metastat.slides.synthetic import write_synthetic_slide

CMU = Path(__file__).parent / "data" / "slides" / "CMU-1-Small-Region.svs"


@functools.cache
def _synthetic_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        p = write_synthetic_slide(
            Path(d) / "s.tiff", size_px0=(768, 512), mpp=0.5, levels=2, seed=0
        )
        return p.read_bytes()


@functools.cache
def _real_bytes() -> bytes:
    return CMU.read_bytes()


def _exercise(blob: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"fuzzed{suffix}"
        p.write_bytes(blob)
        try:
            with open_slide(p, max_read_px=4 * 2**20) as s:
                w, h = s.dimensions_px0
                s.safe_metadata()
                for x, y in ((0, 0), (w // 2, h // 2), (max(w - 64, 0), max(h - 64, 0))):
                    tile = s.read((x, y), (64, 64))
                    assert tile.shape == (64, 64, 3) and tile.dtype == np.uint8
                s.thumbnail(64)
        except MetastatError:
            pass  # a clear, typed error is the expected outcome for a damaged file


FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(frac=st.floats(0.0, 0.999))
def test_truncated_synthetic(frac: float) -> None:
    blob = _synthetic_bytes()
    _exercise(blob[: int(len(blob) * frac)], ".tiff")


@FUZZ
@given(positions=st.lists(st.floats(0.0, 0.999), min_size=1, max_size=8), bit=st.integers(0, 7))
def test_bit_flipped_synthetic(positions: list[float], bit: int) -> None:
    blob = bytearray(_synthetic_bytes())
    for f in positions:
        blob[int(f * len(blob))] ^= 1 << bit
    _exercise(bytes(blob), ".tiff")


@FUZZ
@given(positions=st.lists(st.floats(0.0, 0.05), min_size=1, max_size=4), bit=st.integers(0, 7))
def test_bit_flipped_real_svs_header_region(positions: list[float], bit: int) -> None:
    blob = bytearray(_real_bytes())
    for f in positions:
        blob[int(f * len(blob))] ^= 1 << bit
    _exercise(bytes(blob), ".svs")


@FUZZ
@given(frac=st.floats(0.0, 0.999))
def test_truncated_real_svs(frac: float) -> None:
    blob = _real_bytes()
    _exercise(blob[: int(len(blob) * frac)], ".svs")
