"""A MIL cohort from a manifest CSV (one row per slide) and optional patient outcome table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metastat.errors import InputError
from metastat.mil.bags import FileBags, MILData, Targets, check_patients, group_units, read_manifest
from metastat.mil.config import MILConfig


def _outcome_columns(config: MILConfig) -> list[str]:
    d = config.data
    if config.task == "survival":
        if not d.time or not d.event:
            raise InputError(
                "a survival task needs data.time and data.event (--time-col, "
                "--event-col) naming the follow-up and event columns"
            )
        return [d.time, d.event]
    return [d.label]


def load_cohort(config: MILConfig, outcomes: str | Path | None = None) -> MILData:
    """Slides of the manifest grouped into units, with outcomes (from the manifest, or from
    ``outcomes``: a CSV keyed by patient_id). Slides/patients without an outcome are dropped."""
    if config.data.manifest is None:
        raise InputError("no manifest: pass --manifest CSV (slide_id, patient_id, [path], outcome)")
    slides = read_manifest(config.data.manifest, config.data.features_dir)
    cols = _outcome_columns(config)
    if outcomes is not None:
        table = pd.read_csv(outcomes, dtype={"patient_id": str})
        missing = [c for c in ["patient_id", *cols] if c not in table.columns]
        if missing:
            raise InputError(f"outcome table '{outcomes}' lacks columns {missing}")
        check_patients(table["patient_id"].astype(str).tolist(), slides)
        slides = slides.drop(columns=[c for c in cols if c in slides.columns]).merge(
            table[["patient_id", *cols]], on="patient_id", how="left"
        )
    missing = [c for c in cols if c not in slides.columns]
    if missing:
        raise InputError(
            f"manifest '{config.data.manifest}' lacks outcome columns {missing} "
            f"(has {list(slides.columns)}); set data.label / --label-col"
        )
    slides = slides[slides[cols].notna().all(axis=1)].reset_index(drop=True)
    if slides.empty:
        raise InputError("no slide has a non-missing outcome")
    units, unit_ids, pids = group_units(
        slides["slide_id"].tolist(), slides["patient_id"].tolist(), config.unit
    )
    first = [u[0] for u in units]
    for u in units:
        if len(slides.loc[u, cols].drop_duplicates()) > 1:
            raise InputError(
                f"patient '{slides.loc[u[0], 'patient_id']}' has conflicting outcomes "
                "across slides; use unit='slide' or fix the manifest"
            )
    rows = slides.loc[first]
    source = FileBags(slides["slide_id"].tolist(), [Path(p) for p in slides["path"]])
    if config.task == "survival":
        targets = Targets(
            time=rows[cols[0]].to_numpy(float), event=rows[cols[1]].to_numpy(float).astype(int)
        )
        classes: list[str] = []
    else:
        raw = rows[cols[0]].astype(str).to_numpy()
        classes = sorted(np.unique(raw), key=_natural)
        if config.task == "binary" and len(classes) != 2:
            raise InputError(
                f"binary task: column '{cols[0]}' has {len(classes)} values "
                f"{classes[:5]}; use task='multiclass' or recode it to 0/1"
            )
        lookup = {c: i for i, c in enumerate(classes)}
        targets = Targets(label=np.array([lookup[v] for v in raw]))
    return MILData(source, units, unit_ids, np.asarray(pids), targets, classes)


def _natural(v: str) -> tuple[int, float | str]:
    try:
        return (0, float(v))
    except ValueError:
        return (1, v)
