"""A cohort manifest -> one radiomics row per patient, resumable, bad cases reported and skipped.

Manifest columns: ``patient_id``, ``image``, ``mask`` and optionally ``label`` and ``series``
(paths relative to the manifest's folder). Each finished patient is written atomically to
``<out>.parts/<patient>.json`` with the settings it was computed with; a re-run skips patients
already done with the same settings. The table (CSV / TSV / Parquet by suffix) and a provenance
record ``<out>.json`` (settings, library versions, failures with their messages) are written last.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from metastat.atomic import atomic_path, atomic_write
from metastat.core.provenance import settings_digest
from metastat.data.tables import check_unique_ids, read_table
from metastat.errors import InputError
from metastat.progress import progress, status
from metastat.radiology.features import RadiomicsSettings, lesion_features, settings_json

REQUIRED = ("patient_id", "image", "mask")


@dataclass
class CohortResult:
    table: pd.DataFrame  # patients x features
    failures: dict[str, str]  # patient id -> one-line reason


def read_manifest(path: str | Path) -> pd.DataFrame:
    """The manifest with absolute paths (relative ones resolved against its folder)."""
    path = Path(path)
    frame = read_table(path, index_col=None)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: manifest lacks column(s) {missing}; it needs {list(REQUIRED)} "
            "(+ optional label, series)."
        )
    frame["patient_id"] = frame["patient_id"].astype(str)
    check_unique_ids(pd.Index(frame["patient_id"]), f"manifest {path}", "patient id")
    for col in ("image", "mask"):
        frame[col] = [str(p if Path(p).is_absolute() else path.parent / p) for p in frame[col]]
    return frame


def _key(settings: RadiomicsSettings) -> str:
    return settings_digest(settings_json(settings))


def _part(parts: Path, pid: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", pid)
    return parts / f"{safe}.{hashlib.sha1(pid.encode()).hexdigest()[:8]}.json"


def _opt(row: pd.Series, col: str) -> Any:
    v = row.get(col)
    return None if v is None or (isinstance(v, float) and pd.isna(v)) or v == "" else v


def cohort_features(
    manifest: str | Path | pd.DataFrame,
    out: str | Path,
    settings: RadiomicsSettings | None = None,
) -> CohortResult:
    """Radiomics of every manifest row into table ``out`` (see module docstring)."""
    settings = settings or RadiomicsSettings()
    frame = manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    key = _key(settings)
    rows: dict[str, pd.Series] = {}
    failures: dict[str, str] = {}
    for _, row in progress(frame.iterrows(), "radiomics", total=len(frame), unit="patient"):
        pid, part = str(row["patient_id"]), _part(parts, str(row["patient_id"]))
        if part.exists():
            done = json.loads(part.read_text())
            if done.get("settings") == key:
                rows[pid] = pd.Series(done["features"], dtype=float)
                continue
        try:
            feats = lesion_features(
                row["image"],
                row["mask"],
                label=_opt(row, "label"),
                series=_opt(row, "series"),
                settings=settings,
            )
        except (InputError, RuntimeError, OSError) as exc:  # SimpleITK raises RuntimeError
            failures[pid] = str(exc).strip().splitlines()[0]
            status(f"radiology: patient {pid} skipped: {exc}")
            continue
        payload = {"patient_id": pid, "settings": key, "features": feats.to_dict()}
        atomic_write(part, json.dumps(payload))
        rows[pid] = feats
    if not rows:
        raise InputError(f"no patient of the manifest gave features; first failures: {failures}")
    table = pd.DataFrame(rows).T.rename_axis("patient_id")
    write_feature_table(table, out)
    record = {
        "settings": settings_json(settings),
        "n_patients": len(table),
        "n_features": table.shape[1],
        "failures": failures,
    }
    atomic_write(out.with_name(out.name + ".json"), json.dumps(record, indent=2))
    return CohortResult(table, failures)


def write_feature_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Atomic CSV / TSV / Parquet (by suffix) with the patient id as the first column."""
    path = Path(path)
    name = path.name.lower()
    with atomic_path(path) as tmp:
        if name.endswith((".parquet", ".pq")):
            table.to_parquet(tmp)
        elif name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")):
            sep = "\t" if ".tsv" in name or name.endswith(".txt") else ","
            table.to_csv(tmp, sep=sep, index_label="patient_id",
                         compression="gzip" if name.endswith(".gz") else None)  # fmt: skip
        else:
            raise InputError(f"{path}: write the table as .csv, .tsv or .parquet.")
    return path


def read_feature_table(path: str | Path) -> pd.DataFrame:
    """A radiomics table (patient id first column), numeric; clear error otherwise."""
    table = read_table(path)
    table.index = table.index.astype(str)
    bad = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if bad:
        raise InputError(
            f"{path}: radiomics columns must be numeric; {bad[:5]} are not (is the patient id "
            "the first column?)."
        )
    return table.astype(float)
