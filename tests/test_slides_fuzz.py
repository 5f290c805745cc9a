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


def test_damaged_cohort_is_failed_or_degraded_never_done(tmp_path: Path) -> None:
    """The small version of benchmarks/bench_slides_fuzz.py: a cohort of damaged files."""
    from metastat.slides.coords import TileConfig
    from metastat.slides.damage import damaged_copies
    from metastat.slides.runner import discover_slides, run_cohort

    made = damaged_copies(CMU, tmp_path / "in")
    names = ["zero-length.svs", "truncated-50.svs", "png-renamed.svs", "text-renamed.tiff",
             "hdf5-renamed.svs", "garbage-stripes.tiff", "garbage-flat.tiff",
             "garbage-shift.tiff", "synthetic-flip-64B.tiff", "synthetic-truncated-60.tiff",
             "no-mpp.tiff", "coarse-2um.tiff", "intact-synthetic.tiff"]  # fmt: skip
    assert set(names) <= set(made) and len(made) >= 22
    manifest = tmp_path / "m.csv"
    manifest.write_text("path\n" + "\n".join(str(tmp_path / "in" / n) for n in names) + "\n")
    s = run_cohort(discover_slides(manifest), tmp_path / "out", TileConfig(qc=False),
                   workers=0, progress=False, slide_timeout=60)  # fmt: skip
    by_id = {r["slide_id"]: r for r in s.slides}
    assert by_id.pop("intact-synthetic")["status"] == "done"
    for sid, r in by_id.items():
        assert r["status"] in ("failed", "degraded"), (sid, r)
        assert r["message"] and sid in r["message"], (sid, r["message"])
        assert "Traceback" not in r["message"] and "unexpected" not in r["message"]
        assert r["seconds"] < 60
    expected = {"no-mpp": "MissingMppError", "coarse-2um": "ResolutionError",
                "zero-length": "SlideOpenError", "png-renamed": "SlideOpenError"}  # fmt: skip
    for sid, err in expected.items():
        assert by_id[sid]["error_type"] == err
    assert by_id["garbage-stripes"]["counts"].get("implausible_tiles", 0) >= 1
