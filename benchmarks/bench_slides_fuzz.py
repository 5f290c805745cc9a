"""Fuzz table: damaged slides through ``metastat slides tile`` exactly as a user runs it.

Writes >= 20 damaged copies (truncated, bit-flipped at several offsets, zero-length, wrong
format under a slide extension, renamed, no µm/px, coarser than asked, tiles that decode
silently to garbage) plus two intact controls, runs one cohort with ``--slide-timeout``, and
prints each slide's status, counts, time and message, and how many of its pixels differ from
the intact file (so a ``done`` can be checked: it must mean the pixels used are intact).

    python benchmarks/bench_slides_fuzz.py [--timeout 60] [--process] [--manifest]

``--process`` runs ``metastat slides process`` (with the encoder) instead of ``tile``.
``--manifest`` also writes a GDC-style download manifest (``id filename md5 size state``) with
the md5 of the intact original each copy stands for (the file the download should have been)
and passes it as ``--checksum-manifest``: then no damaged copy may end ``done``.
Exit status 1 if a damaged slide with changed pixels (with ``--manifest``: any damaged slide)
is ``done`` or a slide ran past the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CMU = REPO / "tests/data/slides/CMU-1-Small-Region.svs"


def _pixels(path: Path, level: int) -> np.ndarray | None:
    from metastat.slides import open_slide

    try:
        with open_slide(path, mpp_fallback=0.5) as s:
            if level >= s.level_count:
                return None
            return s.read_level_downsampled(level, 1)
    except Exception:
        return None


def changed_fraction(path: Path, intact: Path, level: int) -> str:
    """Share of pixels of ``level`` differing by > 30 (sum over RGB) from the intact file, and
    the largest difference of one channel."""
    a, b = _pixels(path, level), _pixels(intact, level)
    if a is None or b is None or a.shape != b.shape:
        return "n/a"
    diff = np.abs(a.astype(np.int16) - b)
    return f"{(diff.sum(axis=2) > 30).mean():.2%} (max {diff.max()})"


#: Files that are intact but unusable (metadata problems): their own digest is the expected one.
OWN_DIGEST = ("no-mpp.tiff", "coarse-2um.tiff", "renamed-ext.ndpi")


def write_gdc_manifest(folder: Path, made: dict[str, str]) -> Path:
    """A GDC-style manifest: every copy is listed with the md5 and size of its intact original."""
    import uuid

    from metastat.core.provenance import file_digest

    originals = {
        k: (file_digest(folder / k, "md5"), (folder / k).stat().st_size)
        for k in ("intact-real.svs", "intact-synthetic.tiff")
    }
    lines = ["id\tfilename\tmd5\tsize\tstate"]
    for name in made:
        if name in OWN_DIGEST:
            md5, size = file_digest(folder / name, "md5"), (folder / name).stat().st_size
        else:
            synthetic = name.startswith(("garbage-", "synthetic-", "intact-synthetic"))
            md5, size = originals["intact-synthetic.tiff" if synthetic else "intact-real.svs"]
        uid = uuid.uuid5(uuid.NAMESPACE_URL, f"metastat-fuzz/{name}")
        lines.append(f"{uid}\t{name}\t{md5}\t{size}\treleased")
    path = folder.parent / "gdc_manifest.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=60.0, help="--slide-timeout in s")
    ap.add_argument("--dir", type=Path, help="where to put the damaged copies (default: temp)")
    ap.add_argument("--process", action="store_true", help="run 'slides process' instead")
    ap.add_argument("--manifest", action="store_true", help="check md5s from a GDC manifest")
    a = ap.parse_args()
    import logging

    logging.getLogger("tifffile").disabled = True  # this script's own reads of broken files
    from metastat.slides.damage import damaged_copies

    root = a.dir or Path(tempfile.mkdtemp(prefix="metastat-fuzz-"))
    made = damaged_copies(CMU, root / "in")
    out = root / "out"
    cmd = [str(Path(sys.executable).with_name("metastat")), "slides",
           "process" if a.process else "tile", str(root / "in"), "--out", str(out),
           "--slide-timeout", str(a.timeout), "--workers", "1", "--no-progress"]  # fmt: skip
    if a.manifest:
        cmd += ["--checksum-manifest", str(write_gdc_manifest(root / "in", made))]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - t0
    summary = json.loads((out / "run_summary.json").read_text())
    by_id = {s["slide_id"]: s for s in summary["slides"]}
    bad = []
    print(f"{len(made)} files ({len(made) - 2} damaged + 2 controls); command exit {r.returncode}"
          f"; whole run {wall:.0f} s; --slide-timeout {a.timeout:g} s")  # fmt: skip
    print("\n| file | damage | status | integrity | counts | s | pixels changed (max Δ) "
          "| message |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, what in made.items():
        sid = Path(name).stem
        s = by_id.get(sid)
        if s is None:
            print(f"| {name} | {what} | MISSING | | | | |")
            bad.append(name)
            continue
        intact = root / "in" / ("intact-real.svs" if name.endswith((".svs", ".ndpi"))
                                else "intact-synthetic.tiff")  # fmt: skip
        level = 0 if intact.suffix == ".svs" else 1
        changed = changed_fraction(root / "in" / name, intact, level)
        counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items()) or "-"
        msg = (s["message"] or "").replace("|", "/")
        msg = msg if len(msg) < 230 else msg[:227] + "..."
        print(f"| {name} | {what} | **{s['status']}** | {s.get('integrity')} | {counts} "
              f"| {s['seconds']:.1f} | "
              f"{changed} | {msg} |")  # fmt: skip
        if s["seconds"] > a.timeout + 10:
            bad.append(name)
        silent = a.manifest or not changed.startswith("0.00%")
        if s["status"] == "done" and silent and "intact" not in name and name not in OWN_DIGEST:
            bad.append(name)
    n = {
        k: sum(s["status"] == k for s in summary["slides"]) for k in ("done", "degraded", "failed")
    }
    print(f"\n{n} | slowest slide {max(s['seconds'] for s in summary['slides']):.1f} s")
    if bad:
        print(f"NOT OK: {bad}")
        sys.exit(1)
    print("OK: no damaged slide with changed pixels passed as done; none ran past the limit")


if __name__ == "__main__":
    main()
