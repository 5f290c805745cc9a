"""What each backend reports for a bit-flipped JPEG tile, and what metastat's checks catch.

Flips one random bit inside the compressed data of a random inner tile of CMU-1-Small-Region
(``--trials`` times, fixed ``--seed``), then reads that tile with OpenSlide and tiffslide and
counts: raised an error, logged/warned, or decoded silently; how many silent decodes changed
the tile visibly (> 2 % of pixels by > 30), and how many of those
:func:`metastat.slides.integrity.implausible` flags (no lower level here: intrinsic checks).

    python benchmarks/bench_slides_decoders.py --trials 40 --seed 0
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CMU = REPO / "tests/data/slides/CMU-1-Small-Region.svs"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import openslide
    import tifffile
    import tiffslide

    from metastat.slides.integrity import implausible

    with tifffile.TiffFile(CMU) as tif:
        page = tif.pages[0]
        offs, counts = page.dataoffsets, page.databytecounts
        tw, th, nx = page.tilewidth, page.tilelength, -(-page.imagewidth // page.tilewidth)
        ny = -(-page.imagelength // th)
    original = CMU.read_bytes()
    intact = openslide.OpenSlide(str(CMU))
    rng = np.random.default_rng(a.seed)
    seen: Counter[str] = Counter()
    logged: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(record.getMessage())

    logging.getLogger("tifffile").addHandler(Grab())
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "flip.svs"
        while seen["trials"] < a.trials:
            i = int(rng.integers(0, len(offs)))
            if i % nx == nx - 1 or i // nx == ny - 1:
                continue  # edge tiles are partly outside the image
            x, y = (i % nx) * tw, (i // nx) * th
            ref = np.asarray(intact.read_region((x, y), 0, (tw, th)))[..., :3]
            if (ref.max(axis=2).astype(int) - ref.min(axis=2) > 20).mean() < 0.3:
                continue  # not a tissue tile
            blob = bytearray(original)
            blob[int(offs[i]) + int(rng.integers(10, counts[i] - 10))] ^= 1 << int(rng.integers(8))
            path.write_bytes(bytes(blob))
            seen["trials"] += 1
            try:
                got = np.asarray(openslide.OpenSlide(str(path)).read_region((x, y), 0, (tw, th)))
                got = got[..., :3]
                changed = (np.abs(got.astype(int) - ref).sum(axis=2) > 30).mean() > 0.02
                seen["openslide silent"] += 1
                if changed:
                    seen["openslide silent, visibly changed"] += 1
                    seen["  of which flagged implausible"] += implausible(got) is not None
            except openslide.OpenSlideError:
                seen["openslide raised"] += 1
            n_log = len(logged)
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                try:
                    tiffslide.TiffSlide(path).read_region((x, y), 0, (tw, th), as_array=True)
                    real = [m for m in w if not issubclass(m.category, ResourceWarning)]
                    warned = bool(real) or len(logged) > n_log
                    seen["tiffslide warned" if warned else "tiffslide silent"] += 1
                except Exception:
                    seen["tiffslide raised"] += 1
    print(f"{a.trials} single-bit flips in inner tissue tiles of {CMU.name} (seed {a.seed}):")
    for k, v in seen.items():
        if k != "trials":
            print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
