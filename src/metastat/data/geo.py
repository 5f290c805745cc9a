"""GEO series-matrix files (``GSE*_series_matrix.txt[.gz]``), read locally.

Sample metadata lines (``!Sample_*``) become the clinical table; ``!Sample_characteristics_ch1``
entries of the form ``key: value`` become one column per key. The table between
``!series_matrix_table_begin`` and ``!series_matrix_table_end`` is probes x samples and is returned
transposed (samples x probes).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import defaultdict
from pathlib import Path

import pandas as pd

from metastat.errors import InputError


def _lines(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_series_matrix(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(expression samples x probes as strings, clinical samples x fields)``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file.")
    sample_meta: dict[str, list[list[str]]] = defaultdict(list)
    header: list[str] | None = None
    rows: list[list[str]] = []
    in_table = ended = False
    try:
        with _lines(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                if line.startswith("!series_matrix_table_begin"):
                    in_table = True
                    continue
                if line.startswith("!series_matrix_table_end"):
                    ended = True
                    break
                fields = next(csv.reader([line], delimiter="\t"))
                if in_table:
                    if header is None:
                        header = fields
                    else:
                        if len(fields) != len(header):
                            raise InputError(
                                f"{path}, line {lineno}: {len(fields)} fields, expected "
                                f"{len(header)} (probe {fields[0]!r})."
                            )
                        rows.append(fields)
                elif line.startswith("!Sample_"):
                    sample_meta[fields[0][len("!Sample_") :]].append(fields[1:])
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: cannot be read as a series matrix ({exc}).") from exc
    if header is None or not rows:
        raise InputError(f"{path}: no expression table (missing '!series_matrix_table_begin').")
    if not ended:
        raise InputError(f"{path}: truncated, no '!series_matrix_table_end' line.")
    samples = header[1:]
    expr = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows], columns=samples).T
    expr.index.name = "sample_id"
    clinical = pd.DataFrame(index=pd.Index(samples, name="sample_id"))
    for key, blocks in sample_meta.items():
        for block in blocks:
            if len(block) != len(samples):
                continue
            if key.startswith("characteristics") and all(": " in v or not v for v in block):
                for i, v in enumerate(block):
                    if v:
                        k, _, val = v.partition(": ")
                        clinical.loc[samples[i], k.strip()] = val.strip()
            elif key not in clinical.columns:
                clinical[key] = block
    return expr, clinical
