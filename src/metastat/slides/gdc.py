"""GDC download manifests as the list of slides to run.

A manifest from the GDC portal (tab-separated ``id filename md5 size state``) is what
``gdc-client download -m MANIFEST`` fetches: each file lands in ``<dir>/<id>/<filename>``. Given
as the slides of ``metastat slides tile / process``, every row that names a slide becomes a job
at that location (or ``<dir>/<filename>`` for a flat copy) with the manifest's md5 attached, so
an incomplete or damaged download fails before any decode. A file not downloaded yet fails as
its own slide, naming the command that fetches it; rows that are not slides are counted.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from metastat.errors import InputError
from metastat.slides.checksums import parse_digest
from metastat.slides.results import Checksum

log = logging.getLogger(__name__)
#: the columns that mark a GDC manifest (a cohort manifest with a ``path`` column is not one)
COLUMNS = ("id", "filename", "md5", "size")


@dataclass(frozen=True)
class GDCFile:
    """One slide of a manifest: where it is (or will be), its GDC file id and md5."""

    path: Path
    file_id: str
    slide_id: str  # the file name's stem; with the file id appended if two files share it
    checksum: Checksum


def is_gdc_manifest(path: Path) -> bool:
    """Whether ``path`` is a tab-separated file whose header has GDC's id, filename and md5."""
    if not path.is_file() or path.suffix.lower() not in (".txt", ".tsv"):
        return False
    try:
        with path.open(encoding="utf-8-sig") as fh:
            head = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    columns = [c.strip().lower() for c in head.split("\t")]
    return all(c in columns for c in COLUMNS) and "path" not in columns


def gdc_location(manifest: Path, file_id: str, filename: str, *, flat: bool = True) -> Path:
    """Where gdc-client put the file (``<dir>/<id>/<filename>``), or a flat copy beside it
    (``flat``: only for a file name that no other row of the manifest has)."""
    nested, beside = manifest.parent / file_id / filename, manifest.parent / filename
    return beside if flat and beside.exists() and not nested.exists() else nested


def read_gdc_manifest(manifest: Path, extensions: frozenset[str]) -> list[GDCFile]:
    """The slide rows (by file extension) of ``manifest``, each where gdc-client put it."""
    rows = []
    with manifest.open(encoding="utf-8-sig", newline="") as fh:
        for n, raw in enumerate(csv.DictReader(fh, delimiter="\t"), start=2):
            row = {str(k).strip().lower(): str(v or "").strip() for k, v in raw.items() if k}
            if any(row.values()):  # a line of blanks (e.g. trailing) is not a row
                rows.append((n, row))
    names = Counter(Path(row.get("filename", "")).name for _, row in rows)
    out, other = [], 0
    for n, row in rows:
        file_id, filename = row.get("id", ""), Path(row.get("filename", "")).name
        if not file_id or not filename:
            raise InputError(
                f"GDC manifest '{manifest.name}' line {n} lacks an id or a filename: give the "
                "manifest as downloaded from the GDC portal"
            )
        if Path(filename).suffix.lower() not in extensions:
            other += 1
            continue
        where = f"GDC manifest '{manifest.name}' line {n} (GDC file id {file_id})"
        digest = parse_digest("md5", row.get("md5"), where)
        if digest is None:
            raise InputError(f"{where} has no md5: give the manifest as the GDC portal wrote it")
        unique = names[filename] == 1
        stem = Path(filename).stem if unique else f"{Path(filename).stem}.{file_id[:8]}"
        path = gdc_location(manifest, file_id, filename, flat=unique)
        out.append(GDCFile(path, file_id, stem, digest))
    if other:
        log.warning("GDC manifest '%s': %d non-slide file(s) skipped", manifest.name, other)
    if not out:
        raise InputError(
            f"GDC manifest '{manifest.name}' lists no slide files "
            f"(looked for {', '.join(sorted(extensions))})"
        )
    return out
