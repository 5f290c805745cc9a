"""Reading sample tables (CSV / TSV / Parquet / h5ad) with validation and clear errors.

Every failure is an :class:`~metastat.errors.InputError` naming the file, row and column; nothing
from deep inside pandas reaches the user.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd

from metastat.errors import InputError

NA_TOKENS = ("", "NA", "NaN", "nan", "null", "NULL", "N/A", "na", ".")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".h5ad")


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zip"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _sniff_delimiter(path: Path) -> str:
    with _open_text(path) as fh:
        head = fh.readline()
    if not head.strip():
        raise InputError(f"{path}: the file is empty (no header line).")
    return "\t" if head.count("\t") > head.count(",") else ","


_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def read_table(path: str | Path, *, index_col: str | int | None = 0) -> pd.DataFrame:
    """Read a CSV / TSV (optionally gzipped) or Parquet table keeping duplicated column names.

    The first column (or ``index_col``) becomes the index of sample ids. Duplicate column names
    are kept as they are (pandas would silently rename them ``X.1``), so gene-collapsing rules can
    see them.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file.")
    if path.is_dir():
        tables = sorted(q.name for q in path.iterdir() if _suffix(q) in _TABLE_SUFFIXES)[:5]
        hint = f" (tables in it: {', '.join(tables)})" if tables else ""
        raise InputError(f"{path} is a directory, not a table: give the file inside it{hint}.")
    suffix = _suffix(path)
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            if index_col is not None:
                key = frame.columns[index_col] if isinstance(index_col, int) else index_col
                if key not in frame.columns:
                    raise InputError(f"{path}: no column {key!r} to use as sample ids.")
                frame = frame.set_index(key)
            return frame
        if suffix not in (".csv", ".tsv", ".txt"):
            raise InputError(
                f"{path}: unknown table format {suffix or '(no suffix)'!r}; "
                "use .csv, .tsv, .txt (tab/comma separated, optionally .gz) or .parquet."
            )
        sep = _sniff_delimiter(path)
        with _open_text(path) as fh:
            header = next(csv.reader(fh, delimiter=sep))
        id_pos = None
        if index_col is not None:
            id_pos = (
                index_col
                if isinstance(index_col, int)
                else _column_position(path, header, index_col)
            )
        body = pd.read_csv(
            path,
            sep=sep,
            header=None,
            skiprows=1,
            low_memory=False,
            dtype=None if id_pos is None else {id_pos: str},
        )
    except InputError:
        raise
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be parsed as a table ({exc}).") from exc
    if body.shape[1] != len(header):
        raise InputError(
            f"{path}: the header has {len(header)} columns but rows have {body.shape[1]}; "
            "check the delimiter and that the header names every column."
        )
    body.columns = pd.Index(header)
    if id_pos is not None:
        pos = id_pos
        ids = body.iloc[:, pos].astype(str).str.strip()
        body = body.drop(columns=body.columns[pos])
        body.index = pd.Index(ids, name=header[pos] or "sample_id")
    return body


def _column_position(path: Path, header: list[str], name: str) -> int:
    if name not in header:
        from metastat.errors import did_you_mean

        raise InputError(f"{path}: no column {name!r}.{did_you_mean(name, header)}")
    return header.index(name)


def check_unique_ids(index: pd.Index, where: str, what: str = "sample id") -> None:
    """Raise if ``index`` has empty or duplicated ids, naming the first offenders."""
    empty = [i for i, v in enumerate(index) if str(v).strip() in ("", "nan")]
    if empty:
        raise InputError(f"{where}: empty {what} on data row(s) {[i + 1 for i in empty[:5]]}.")
    dup = index[index.duplicated()].unique()
    if len(dup):
        raise InputError(
            f"{where}: duplicated {what}(s) {list(map(str, dup[:5]))}; each row needs a unique "
            f"{what} (merge or drop the repeats)."
        )


def to_numeric_matrix(frame: pd.DataFrame, where: str) -> np.ndarray:
    """Convert a table of strings / numbers to float64, raising on the first non-numeric cell.

    Empty cells and NA tokens become NaN (missing values are handled later, inside the training
    fold); ``inf`` is rejected.
    """
    if frame.shape[1] == 0:
        raise InputError(f"{where}: no value columns.")
    numeric = np.array(
        [
            pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t)
            for t in frame.dtypes
        ],
        dtype=bool,
    )
    values = np.empty(frame.shape, dtype=np.float64)
    if numeric.any():  # one vectorised copy for the (usual) numeric columns
        values[:, numeric] = frame.iloc[:, np.flatnonzero(numeric)].to_numpy(dtype=np.float64)
    for j in np.flatnonzero(~numeric):
        col = frame.columns[j]
        raw = frame.iloc[:, j].astype("string").str.strip().replace(list(NA_TOKENS), pd.NA)
        conv = pd.to_numeric(raw, errors="coerce")
        bad = conv.isna() & raw.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"{where}: non-numeric value {raw.iloc[i]!r} in column {col!r}, "
                f"row {frame.index[i]!r} (data row {i + 1}); expression values must be numbers "
                "(use empty cells or NA for missing values)."
            )
        values[:, j] = conv.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(values).any():
        r, c = (int(v) for v in np.argwhere(np.isinf(values))[0])
        raise InputError(
            f"{where}: infinite value in column {frame.columns[c]!r}, row {frame.index[r]!r}."
        )
    return values
