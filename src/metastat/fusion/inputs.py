"""Assembling a :class:`MultimodalSet` from names and files (shared by the CLI and scripts).

Sources: a built-in expression cohort (``breast_nki`` ...), a clinical-only table
(``colon_adjuvant``, ``breast_gbsg2``, ``tcga_cdr``), the paired benchmark (``paired_benchmark``),
or user files; optional expression table and folder of tile-feature bags (metastat / CLAM /
TRIDENT ``.h5``) add modalities, matched by patient id.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from metastat.clinical.datasets import CLINICAL_TABLES, load_clinical_table
from metastat.clinical.encoder import Variable
from metastat.core.seeds import keyed_rng, subsample
from metastat.data.outcomes import OutcomeSpec, resolve_outcome
from metastat.data.registry import DATASETS, load_dataset
from metastat.data.tables import read_table
from metastat.errors import InputError
from metastat.fusion.modalities import (
    MultimodalSet,
    align_modalities,
    from_cohort,
    outcome_table,
    usable_mask,
)
from metastat.fusion.registry import get_modality

PAIRED = "paired_benchmark"
_TCGA = re.compile(r"^(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})")


def patient_of_slide(slide_id: str) -> str:
    """Patient id of a slide: the TCGA patient barcode (12 characters) or the slide id itself."""
    m = _TCGA.match(slide_id)
    return m.group(1) if m else slide_id


def load_histology(
    folder: str | Path,
    max_tiles: int | None = None,
    seed: int = 0,
    *,
    encoder: str | None = None,
) -> dict[str, np.ndarray]:
    """Tile-feature bags of a folder, grouped by patient (tiles of a patient's slides pooled).

    Bags from different tile encoders are refused (their features do not share a space), and
    so are bags of another encoder than ``encoder`` (the one a model was trained on)."""
    from metastat.slides.store import list_bags, load_bag

    paths = list_bags(folder, include_external=True)
    if not paths:
        raise InputError(f"no feature bags (.h5) found under {folder}.")
    by_patient: dict[str, list[np.ndarray]] = defaultdict(list)
    by_encoder: dict[str, str] = {}  # encoder -> first slide embedded with it
    for p in paths:
        bag = load_bag(p)
        by_patient[patient_of_slide(bag.slide_id)].append(bag.features)
        if bag.encoder:
            by_encoder.setdefault(bag.encoder, bag.slide_id)
    check_encoders(by_encoder, folder, encoder)
    return {
        pid: subsample(np.concatenate(parts), max_tiles, keyed_rng(seed, pid))
        for pid, parts in by_patient.items()
    }


def check_encoders(by_encoder: Mapping[str, str], folder: str | Path, expected: str | None) -> None:
    """Refuse a folder of bags from several encoders, or from another one than ``expected``."""
    if len(by_encoder) > 1:
        shown = ", ".join(f"{e!r} (e.g. slide {s!r})" for e, s in sorted(by_encoder.items()))
        raise InputError(
            f"the feature bags under {folder} come from different tile encoders: {shown}; "
            "embed every slide with one encoder (metastat slides process --encoder NAME)."
        )
    found = next(iter(by_encoder), None)
    if expected and found and found != expected:
        raise InputError(
            f"the feature bags under {folder} come from encoder {found!r} (e.g. slide "
            f"{by_encoder[found]!r}) but the model was trained on {expected!r} features; embed "
            f"the slides with --encoder {expected}."
        )


def histology_encoder(folder: str | Path, expected: str | None = None) -> str | None:
    """The tile encoder of a folder's bags (None when the files do not record it); reads only
    the files' attributes and refuses a folder mixing encoders or of another one than
    ``expected``."""
    from metastat.slides.store import list_bags, read_encoder

    by_encoder: dict[str, str] = {}
    for p in list_bags(folder, include_external=True):
        enc = read_encoder(p)
        if enc is not None:
            by_encoder.setdefault(enc, p.stem)
    check_encoders(by_encoder, folder, expected)
    return next(iter(by_encoder), None)


def read_variables(path: str | Path) -> list[Variable]:
    """Typed clinical variables from a JSON list of {name, column, kind[, recode, log1p]}."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read clinical variables from {path}: {exc}") from exc
    return [Variable(**v) for v in raw]


def parse_modality_files(items: list[str] | None) -> dict[str, Path]:
    """``NAME=PATH`` items (CLI ``--modality``) -> {registered modality: path}."""
    out: dict[str, Path] = {}
    for item in items or ():
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise InputError(f"--modality {item!r}: write NAME=PATH, e.g. radiology=radiomics.csv.")
        get_modality(name)  # unknown names raise with the list
        out[name] = Path(path)
    return out


def load_modalities(files: Mapping[str, Path] | None) -> dict[str, Any]:
    """Each registered modality's file or folder read by its registry loader."""
    return {m: get_modality(m).load(Path(p)) for m, p in (files or {}).items()}


def multimodal_from_options(
    dataset: str | None,
    outcome: str,
    *,
    horizon: str | float | None = None,
    clinical: Path | None = None,
    variables: Path | None = None,
    expression: Path | None = None,
    histology: Path | None = None,
    event_col: str | None = None,
    time_col: str | None = None,
    seed: int = 0,
    others: Mapping[str, Path] | None = None,
) -> MultimodalSet:
    """Build the multimodal set the CLI options describe (see module docstring); ``others``:
    further registered modalities by file (e.g. ``{"radiology": radiomics.csv}``)."""
    more = load_modalities(others)
    bags = load_histology(histology, seed=seed) if histology else None
    expr = read_table(expression) if expression else None
    vars_ = read_variables(variables) if variables else None
    if dataset == PAIRED:
        from metastat.fusion.paired import make_paired_benchmark

        return make_paired_benchmark(seed=seed).data
    if dataset in DATASETS:
        return from_cohort(
            load_dataset(dataset), outcome, horizon=horizon, variables=vars_, histology=bags, **more
        )
    if dataset in CLINICAL_TABLES:
        return from_cohort(
            load_clinical_table(dataset),
            outcome,
            horizon=horizon,
            variables=vars_,
            expression=False,
            expression_table=expr,
            histology=bags,
            **more,
        )
    if dataset is not None:
        names = sorted([*DATASETS, *CLINICAL_TABLES, PAIRED])
        raise InputError(f"unknown dataset {dataset!r}; use one of {names} or --clinical FILE.")
    if clinical is None or event_col is None:
        raise InputError(
            "give --dataset NAME, or --clinical FILE with --event-col (and --time-col)."
        )
    if vars_ is None:
        raise InputError("user clinical tables need --variables vars.json (typed variables).")
    table = read_table(clinical)
    table.index = table.index.astype(str)
    spec = OutcomeSpec(kind="survival" if time_col else "binary", event=event_col, time=time_col)
    obs = table.copy()
    obs["patient_id"] = obs.index
    adata = ad.AnnData(X=np.zeros((len(obs), 0)), obs=obs)
    out = resolve_outcome(adata, outcome, horizon=horizon, spec=spec)
    mask = usable_mask(out)
    ids = obs.index.to_numpy().astype(str)
    return align_modalities(
        outcome_table(out, ids, mask),
        kind=out.kind,
        horizon=out.horizon,
        clinical=table[mask],
        variables=vars_,
        expression=expr,
        histology=bags,
        extra="drop",
        name=Path(clinical).stem,
        **more,
    )


def prediction_set(
    *,
    variables: list[Variable] | None,
    clinical: Path | None = None,
    expression: Path | None = None,
    histology: Path | None = None,
    kind: str = "survival",
    horizon: float | None = None,
    others: Mapping[str, Path] | None = None,
    histology_encoder: str | None = None,
) -> MultimodalSet:
    """New patients without outcomes: every patient id found in any of the given tables
    (``histology_encoder``: the encoder the model's histology bags came from)."""
    tables = {
        "clinical": read_table(clinical) if clinical else None,
        "expression": read_table(expression) if expression else None,
        "histology": load_histology(histology, encoder=histology_encoder) if histology else None,
        **load_modalities(others),
    }
    ids = [
        str(i)
        for t in tables.values()
        if t is not None
        for i in (t.index if isinstance(t, pd.DataFrame) else t)
    ]
    if not ids:
        raise InputError("give at least one of --clinical, --expression, --histology, --modality.")
    uniq = list(dict.fromkeys(ids))
    nan = np.full(len(uniq), np.nan)
    outcome = pd.DataFrame({"event": nan, "time": nan, "binary": nan}, index=uniq)
    return align_modalities(
        outcome,
        kind=kind,
        horizon=horizon,
        variables=variables if tables["clinical"] is not None else None,
        name="new patients",
        **tables,
    )
