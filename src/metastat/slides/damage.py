"""Damaged copies of slides, for robustness tests and ``benchmarks/bench_slides_fuzz.py``.

Every kind of bad input the pipeline must report rather than pass as ``done``: truncation,
bit flips at several offsets, zero length, wrong format under a slide extension, no µm/px, a
slide coarser than the tiles asked for, and tiles that decode silently to garbage.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np

from metastat.slides.synthetic import plant_garbage_tile, tile_location, write_synthetic_slide


def _flip(blob: bytes, offset: int, n: int = 1, bit: int = 4) -> bytes:
    b = bytearray(blob)
    for i in range(offset, min(offset + n, len(b))):
        b[i] ^= 1 << bit
    return bytes(b)


def _inner_tissue_tile(size_px: int, tile_px: int = 256) -> int:
    """Index of a level-0 tile near the centre of a synthetic slide (tissue there)."""
    n = -(-size_px // tile_px)
    return (n // 2) * n + n // 2


def damaged_copies(real_svs: Path, out_dir: Path, *, seed: int = 0) -> dict[str, str]:
    """Write damaged copies of ``real_svs`` and of a synthetic pyramid into ``out_dir``.

    Returns {file name: what was done to it}. Two intact controls (``intact-*``) are included.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}

    def put(name: str, data: bytes, what: str) -> None:
        (out_dir / name).write_bytes(data)
        made[name] = what

    real = real_svs.read_bytes()
    n = len(real)
    shutil.copy(real_svs, out_dir / "intact-real.svs")
    made["intact-real.svs"] = "control: the real slide, unchanged"
    put("zero-length.svs", b"", "zero-length file")
    for frac in (0.1, 0.5, 0.9, 0.99):
        put(f"truncated-{int(frac * 100)}.svs", real[: int(n * frac)], f"cut at {frac:.0%}")
    put("flip-header.svs", _flip(real, 10), "1 bit flipped at byte 10 (TIFF header)")
    for frac in (0.2, 0.4, 0.6, 0.8):
        off = int(n * frac)
        put(f"flip-{int(frac * 100)}.svs", _flip(real, off), f"1 bit flipped at {frac:.0%}")
    off = int(n * 0.3)
    put("flip-200B-30.svs", _flip(real, off, 200), "200 bytes bit-flipped at 30%")
    many = real
    for k in range(8):
        many = _flip(many, int(n * (0.25 + 0.08 * k)), 1, k % 8)
    put("flip-8-spread.svs", many, "8 single bits flipped between 25% and 81%")
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(png, format="PNG")
    put("png-renamed.svs", png.getvalue(), "a PNG image renamed to .svs (wrong format)")
    put("text-renamed.tiff", b"patient,slide\n1,2\n" * 100, "a CSV renamed to .tiff")
    put("hdf5-renamed.svs", b"\x89HDF\r\n\x1a\n" + bytes(4096), "an HDF5 header renamed .svs")
    put("renamed-ext.ndpi", real, "the intact real slide renamed to .ndpi")

    size = 4096
    pyr = out_dir / "intact-synthetic.tiff"
    write_synthetic_slide(pyr, size_px0=(size, size), mpp=0.25, levels=4, seed=seed,
                          tissue_fraction=0.6)  # fmt: skip
    made[pyr.name] = "control: synthetic pyramid (0.25 µm/px, 4 levels), unchanged"
    # level 1 (0.5 µm/px) is the level 0.5 µm/px tiles are read from
    idx = _inner_tissue_tile(size // 2)
    for kind in ("stripes", "flat", "shift"):
        p = out_dir / f"garbage-{kind}.tiff"
        shutil.copy(pyr, p)
        plant_garbage_tile(p, idx, level=1, kind=kind)
        made[p.name] = f"one level-1 tissue tile decodes silently to {kind}"
    blob = pyr.read_bytes()
    off, count, _ = tile_location(pyr, idx, level=1)
    put("synthetic-flip-64B.tiff", _flip(blob, off + count // 3, 64),
        "64 bytes bit-flipped inside a level-1 tissue tile")  # fmt: skip
    put("synthetic-flip-1bit.tiff", _flip(blob, off + count // 2, 1, 6),
        "1 bit flipped inside a level-1 tissue tile")  # fmt: skip
    put("synthetic-truncated-60.tiff", blob[: int(len(blob) * 0.6)], "synthetic cut at 60%")
    write_synthetic_slide(out_dir / "no-mpp.tiff", size_px0=(2048, 2048), mpp=None, levels=2)
    made["no-mpp.tiff"] = "no µm/px in the metadata"
    write_synthetic_slide(out_dir / "coarse-2um.tiff", size_px0=(2048, 2048), mpp=2.0, levels=2)
    made["coarse-2um.tiff"] = "scanned at 2 µm/px, tiles asked at 0.5 µm/px"
    return made
