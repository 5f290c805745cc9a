"""Scoring new patients with a saved fusion model, each with whatever modalities they have.

Shared by ``metastat fusion predict`` and the portal (:mod:`metastat.serve.routes_fusion`):
records of per-patient modality values -> a :class:`MultimodalSet` (aligned by patient id), the
saved generator filling in what it can (marked generated), then one row per patient naming the
modalities its prediction used and which of them were generated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metastat.clinical.encoder import Variable
from metastat.errors import InputError
from metastat.fusion.modalities import MultimodalSet, align_modalities
from metastat.fusion.registry import get_modality


def model_modalities(model: Any) -> list[str]:
    """The modalities a fitted fusion model reads."""
    return list(getattr(model, "models_", None) or getattr(model, "mods_", []))


def clinical_variables(model: Any) -> list[Variable] | None:
    """The typed clinical variables of a fusion model's clinical branch (None without one)."""
    clin = getattr(model, "models_", {}).get("clinical")
    if clin is not None:
        return clin.model_.encoder_.variables
    enc = getattr(model, "inputs_", {}).get("clinical")
    return enc.encoder.variables if enc is not None else None


def apply_generator(
    data: MultimodalSet, model_dir: Path, manifest: dict[str, Any]
) -> MultimodalSet:
    """Fill in the saved generator's target modality where its source is present."""
    if not manifest.get("generator"):
        return data
    from metastat.fusion.generate import fill_missing, load_ridge

    gen = load_ridge(Path(model_dir) / manifest["generator"])
    if not data.has(gen.source).any():
        return data
    if gen.target not in data.tables:  # no target table given: every patient may need one
        data = data.with_columns(gen.target, gen.genes_)
    return fill_missing(data, gen)


def records_to_set(
    records: Sequence[Mapping[str, Any]],
    *,
    model: Any,
    manifest: dict[str, Any],
    bags: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> MultimodalSet:
    """``records``: one mapping per patient, ``patient_id`` plus one ``{column: value}`` mapping
    per registered table modality it has; ``bags``: bag modality -> {patient id: features}."""
    if not records and not bags:
        raise InputError("no patient given.")
    tables: dict[str, dict[str, Mapping[str, Any]]] = {}
    ids: list[str] = []
    for r in records:
        pid = str(r.get("patient_id", "")).strip()
        if not pid:
            raise InputError("every patient needs a non-empty patient_id.")
        ids.append(pid)
        for m, values in r.items():
            if m == "patient_id" or values is None:
                continue
            if get_modality(m).form != "table":
                raise InputError(f"patient {pid}: {m} is a bag modality; pass it as a job/file.")
            if not isinstance(values, Mapping):
                raise InputError(f"patient {pid}: {m} must be an object of column -> value.")
            tables.setdefault(m, {})[pid] = values
    for per in (bags or {}).values():
        ids += [str(k) for k in per]
    uniq = list(dict.fromkeys(ids))
    if len(uniq) < len(records):
        raise InputError("patient ids must be unique within one request.")
    frames: dict[str, Any] = {
        m: pd.DataFrame.from_dict(dict(rows), orient="index") for m, rows in tables.items()
    }
    for m, frame in frames.items():
        if m != "clinical":
            frames[m] = _numeric(frame, m)
    variables = clinical_variables(model) if "clinical" in frames else None
    if "clinical" in frames and variables is None:
        raise InputError("this model has no clinical branch; do not send clinical variables.")
    nan = np.full(len(uniq), np.nan)
    outcome = pd.DataFrame({"event": nan, "time": nan, "binary": nan}, index=uniq)
    given: dict[str, Any] = {**frames, **dict(bags or {})}
    return align_modalities(
        outcome, kind=manifest["kind"], horizon=manifest.get("horizon"), variables=variables,
        name="new patients", **given,
    )  # fmt: skip


def _numeric(frame: pd.DataFrame, modality: str) -> pd.DataFrame:
    out = frame.apply(pd.to_numeric, errors="coerce")
    bad = out.isna() & frame.notna()
    if bad.to_numpy().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        raise InputError(
            f"patient {frame.index[r]}: {modality} value {frame.iat[r, c]!r} of "
            f"{frame.columns[c]!r} is not a number."
        )
    return out.astype(float)


def bag_width(model: Any, modality: str) -> int | None:
    """Feature width a fitted fusion model expects for bag modality ``modality`` (None: not
    known, e.g. the model does not use it)."""
    inp = getattr(model, "inputs_", {}).get(modality)  # neural fusion: the bag input
    if inp is not None:
        return int(inp.width)
    branch = getattr(model, "models_", {}).get(modality)  # late fusion: the pooled branch
    cols = getattr(getattr(getattr(branch, "model_", None), "encoder_", None), "columns_", None)
    return None if cols is None else len(cols)


def check_bag_widths(model: Any, data: MultimodalSet) -> None:
    """Refuse bags whose feature width differs from the model's (late fusion would otherwise
    cut wider bags silently): another slide encoder than the training bags'."""
    for m, bags in data.bags.items():
        width = bag_width(model, m)
        for pid, bag in zip(data.patient_ids, bags, strict=True):
            if width is not None and bag is not None and bag.shape[1] != width:
                raise InputError(
                    f"patient {pid}: {m} features are {bag.shape[1]}-d but the model was trained "
                    f"on {width}-d {m} features; embed the slides with the training bags' encoder."
                )


def predict_new(
    model: Any,
    manifest: dict[str, Any],
    model_dir: Path,
    data: MultimodalSet,
    *,
    generate: bool = True,
) -> pd.DataFrame:
    """Predictions (risk, prob, high_risk, modalities, generated, risk_group) of new patients."""
    check_bag_widths(model, data)
    if generate:
        data = apply_generator(data, model_dir, manifest)
    frame = model.predict_frame(data)
    frame["risk_group"] = np.where(frame["high_risk"], "high", "low")
    frame.loc[frame["modalities"] == "", "risk_group"] = "unknown (no modality)"
    return frame
