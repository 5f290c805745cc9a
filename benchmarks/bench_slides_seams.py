"""Is a JPEG-tile seam check robust enough to flag silently garbled tiles? (It is not wired in.)

Score of a JPEG tile: the largest mean step (sum over RGB) across one of its four seams in
excess of the median step of the 8 neighbouring rows/columns. Computed on every inner tissue
tile of the intact slides given, and on tiles whose single flipped bit decoded silently
(OpenSlide, no error) but visibly (> 2 % of pixels changed by > 30), ``--trials`` flips per
seed on the first slide.

    python benchmarks/bench_slides_seams.py tests/data/slides/CMU-1-Small-Region.svs \
        /work/shared/data/slides/TCGA-CR-7395-01A-01-TS1.svs
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import openslide
import tifffile

M = 8  # margin read around each JPEG tile


def seam_score(region: np.ndarray, tw: int, th: int) -> float:
    """Largest excess step across the four seams of the tile inside ``region``."""
    a = region.astype(np.float32)
    out = []
    for img, b in ((a, M), (a, M + tw), (a.transpose(1, 0, 2), M), (a.transpose(1, 0, 2), M + th)):
        s = np.abs(np.diff(img, axis=1)).mean(axis=0).sum(axis=-1)  # s[j-1]: step j-1 -> j
        k = b - 1
        if k - 5 >= 0 and k + 5 < len(s):
            out.append(float(s[k] - np.median(np.r_[s[k - 5 : k - 1], s[k + 2 : k + 6]])))
    return max(out, default=0.0)


def _layout(path: Path) -> tuple:
    with tifffile.TiffFile(path) as t:
        p = t.pages[0]
        nx, ny = -(-p.imagewidth // p.tilewidth), -(-p.imagelength // p.tilelength)
        return p.dataoffsets, p.databytecounts, p.tilewidth, p.tilelength, nx, ny


def _inner(i: int, nx: int, ny: int) -> bool:
    return 0 < i % nx < nx - 1 and 0 < i // nx < ny - 1


def _tissue(r: np.ndarray) -> bool:
    inner = r[M:-M, M:-M]
    return float((inner.max(axis=2).astype(int) - inner.min(axis=2) > 20).mean()) >= 0.3


def _read(s: openslide.OpenSlide, i: int, tw: int, th: int, nx: int) -> np.ndarray:
    x, y = (i % nx) * tw, (i // nx) * th
    return np.asarray(s.read_region((x - M, y - M), 0, (tw + 2 * M, th + 2 * M)))[..., :3]


def intact_scores(path: Path) -> np.ndarray:
    offs, _, tw, th, nx, ny = _layout(path)
    s = openslide.OpenSlide(str(path))
    regions = (_read(s, i, tw, th, nx) for i in range(len(offs)) if _inner(i, nx, ny))
    return np.array([seam_score(r, tw, th) for r in regions if _tissue(r)])


def flip_scores(path: Path, trials: int, seed: int) -> list[float]:
    offs, counts, tw, th, nx, ny = _layout(path)
    original, intact = path.read_bytes(), openslide.OpenSlide(str(path))
    rng, out, n = np.random.default_rng(seed), [], 0
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / f"flip{path.suffix}"
        while n < trials:
            i = int(rng.integers(0, len(offs)))
            if not _inner(i, nx, ny) or not _tissue(ref := _read(intact, i, tw, th, nx)):
                continue
            b = bytearray(original)
            b[int(offs[i]) + int(rng.integers(10, counts[i] - 10))] ^= 1 << int(rng.integers(8))
            f.write_bytes(bytes(b))
            n += 1
            try:
                got = _read(openslide.OpenSlide(str(f)), i, tw, th, nx)
            except openslide.OpenSlideError:
                continue  # reported by the backend: counted as unreadable anyway
            if (np.abs(got.astype(int) - ref).sum(axis=2) > 30).mean() > 0.02:
                out.append(seam_score(got, tw, th))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("slides", nargs="+", type=Path)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = ap.parse_args()
    for p in a.slides:
        sc = intact_scores(p)
        print(f"{p.name}: {len(sc)} intact tissue tiles, seam score max {sc.max():.1f}, "
              f"p99 {np.percentile(sc, 99):.1f}, median {np.median(sc):.1f}")  # fmt: skip
    for seed in a.seeds:
        fl = sorted(flip_scores(a.slides[0], a.trials, seed))
        print(f"{a.slides[0].name} seed {seed}: {len(fl)} silent visible flips, scores "
              f"{[round(x, 1) for x in fl]}")  # fmt: skip


if __name__ == "__main__":
    main()
