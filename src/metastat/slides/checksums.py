"""Slide checksums: what each file's digest should be, and the check before any decode.

TIFF has no checksum, so a flipped bit in a JPEG tile can decode to plausible pixels. The
known digest of each slide comes from, first to last:

- a ``md5`` / ``sha256`` column of metastat's cohort manifest;
- a checksum manifest (``--checksum-manifest``): a GDC download manifest (tab-separated
  ``id filename md5 size state``), any CSV/TSV with ``filename`` (or ``path``) and ``md5`` /
  ``sha256`` columns, or ``md5sum`` / ``sha256sum`` output (``HEX  NAME`` lines);
- a sidecar file next to the slide: ``<slide>.md5``, ``<slide>.sha256`` (also
  ``<stem>.md5`` / ``<stem>.sha256``), holding the hex digest first.

The file is hashed streamed (1 MiB chunks, :func:`metastat.core.provenance.file_digest`).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Literal

from metastat.core.provenance import file_digest
from metastat.errors import InputError
from metastat.slides.errors import SlideIntegrityError, SlideOpenError
from metastat.slides.results import Checksum, SlideJob, SlideResult

#: ``auto``: check where a digest is known; ``off``: never; ``require``: fail slides without one.
ChecksumMode = Literal["auto", "off", "require"]
ALGORITHMS = {"md5": 32, "sha256": 64}
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_GDC_ID = re.compile(r"\(GDC file id ([^)\s]+)\)$")  # the end of a GDC manifest row's ``where``


def parse_digest(algorithm: str, value: object, where: str) -> Checksum | None:
    """``(algorithm, lower-case hex, where)``, None for an empty cell; bad hex raises."""
    text = str(value or "").strip().lower()
    if not text or text == "nan":
        return None
    if len(text) != ALGORITHMS[algorithm] or not _HEX.match(text):
        raise InputError(
            f"{where}: {algorithm} {text[:70]!r} is not a {ALGORITHMS[algorithm]}-character hex "
            f"digest: fix the value or leave the cell empty"
        )
    return (algorithm, text, where)


def read_checksum_manifest(path: str | os.PathLike[str]) -> dict[str, Checksum]:
    """File name -> expected digest, from a GDC manifest, a CSV/TSV or ``md5sum`` output."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read checksum manifest '{p}': {exc}") from exc
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"checksum manifest '{p}' is empty: give a GDC manifest or md5sum output")
    head = lines[0]
    sep = "\t" if "\t" in head else ","
    columns = [c.strip().lower() for c in head.split(sep)]
    algos = [a for a in ALGORITHMS if a in columns]
    name_col = next((c for c in ("filename", "file_name", "path") if c in columns), None)
    out: dict[str, Checksum] = {}
    if algos and name_col:  # GDC manifest or CSV/TSV with a header
        for n, row in enumerate(csv.DictReader(lines, delimiter=sep), start=2):
            row = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
            name = Path(str(row.get(name_col) or "").strip()).name
            where = f"checksum manifest '{p.name}' line {n}"
            if row.get("id"):  # a GDC manifest: the file id is what gdc-client downloads
                where += f" (GDC file id {str(row['id']).strip()})"
            for algo in algos:
                digest = parse_digest(algo, row.get(algo), where)
                if name and digest is not None:
                    out[name] = digest
                    break
        return out
    for n, line in enumerate(lines, start=1):  # md5sum / sha256sum: "HEX  NAME" or "HEX *NAME"
        parts = line.split(maxsplit=1)
        kind = next((a for a, k in ALGORITHMS.items() if len(parts[0]) == k), None)
        if len(parts) != 2 or kind is None or not _HEX.match(parts[0]):
            raise InputError(
                f"checksum manifest '{p}' line {n} is neither a header with 'filename' and "
                "'md5'/'sha256' columns (a GDC manifest) nor 'HEX  NAME' (md5sum output): "
                "fix the file or drop --checksum-manifest"
            )
        where = f"checksum file '{p.name}' line {n}"
        out[Path(parts[1].strip().lstrip("*")).name] = (kind, parts[0].lower(), where)
    return out


def sidecar_checksum(path: Path) -> Checksum | None:
    """The digest in ``<slide>.md5`` / ``<slide>.sha256`` (or ``<stem>.*``) if present."""
    for algo in ALGORITHMS:
        for side in (path.with_name(f"{path.name}.{algo}"), path.with_suffix(f".{algo}")):
            if side.is_file():
                first = (side.read_text(encoding="utf-8", errors="replace").split() or [""])[0]
                return parse_digest(algo, first, f"sidecar '{side.name}'")
    return None


def attach_checksums(
    jobs: list[SlideJob], manifest: str | os.PathLike[str] | None = None
) -> list[SlideJob]:
    """Jobs with their expected digest filled in (cohort manifest > checksum manifest > sidecar)."""
    known = read_checksum_manifest(manifest) if manifest is not None else {}
    out = []
    for job in jobs:
        digest = job.checksum or known.get(job.path.name) or sidecar_checksum(job.path)
        out.append(replace(job, checksum=digest) if digest != job.checksum else job)
    return out


def verify_checksum(job: SlideJob, mode: ChecksumMode, result: SlideResult) -> None:
    """Check the slide file against its known digest before any decode.

    Sets ``result.integrity`` to ``verified`` (digest matched), ``mismatch`` or ``unverified``
    (none known, or ``mode`` off); raises :class:`SlideIntegrityError` on a mismatch, or with
    ``require`` when no digest is known.
    """
    result.integrity = "unverified"
    if mode == "off":
        return
    if job.checksum is None:
        if mode == "require":
            raise SlideIntegrityError(
                f"slide '{job.slide_id}' has no known checksum and --checksums require is set: "
                "add an md5/sha256 column to the manifest, pass --checksum-manifest (e.g. the "
                "GDC manifest), write a '<slide>.md5' sidecar, or use --checksums auto"
            )
        return
    algo, expected, where = job.checksum
    if not job.path.is_file():  # e.g. a manifest row not downloaded yet
        gdc = _GDC_ID.search(where)
        if job.redact:  # pseudonymised: neither the path nor the GDC file id (it names a case)
            fetch = "download the manifest's files (gdc-client download -m MANIFEST)"
            raise SlideOpenError(
                f"slide '{job.slide_id}' does not exist: "
                + (fetch if gdc else "check the path or the manifest")
            )
        fetch = f"gdc-client download {gdc.group(1)}" if gdc else "check the path or the manifest"
        raise SlideOpenError(
            f"slide '{job.slide_id}' ({job.path}) of {where} does not exist: "
            + (f"download it first ({fetch})" if gdc else fetch)
        )
    found = file_digest(job.path, algo)
    if found != expected:
        result.integrity = "mismatch"
        shown = f"expected {expected}, found {found}" if not job.redact else "digests differ"
        if job.redact:  # a GDC file id names a case: not in pseudonymised messages
            where = _GDC_ID.sub("", where).rstrip()
        raise SlideIntegrityError(
            f"slide '{job.slide_id}' is damaged or incomplete: its {algo} does not match "
            f"{where} ({shown}): re-download the file (GDC: 'gdc-client download FILE_ID') "
            "and re-run"
        )
    result.integrity = "verified"
    result.checksum = f"{algo}:{found}"
