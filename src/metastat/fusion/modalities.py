"""A multimodal sample set: patients aligned *by id* across modality tables, with presence masks.

The modalities are the registered ones (:mod:`metastat.fusion.registry`), any set of them.

Every modality table is indexed by patient id. Alignment is always by id, never by row position:
shuffling the rows of any table gives the same set. Patients of the outcome table who lack a
modality are marked absent (``present[m] = False``); ids found in a modality table but not in the
outcome table, duplicated ids, a modality absent for every patient and a modality sharing no id with
the outcome table are errors that name the offending ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import anndata as ad
import numpy as np
import pandas as pd

from metastat.clinical.datasets import clinical_variables
from metastat.clinical.encoder import Variable
from metastat.data.cohort import cohort_name, expression_frame, patients
from metastat.data.genes import GeneReport, collapse_genes
from metastat.data.outcomes import Outcome, resolve_outcome
from metastat.data.tables import check_unique_ids
from metastat.data.target import Target, make_target
from metastat.errors import InputError
from metastat.fusion.registry import get_modality, modality_names

MODALITIES = modality_names()


@dataclass
class MultimodalSet:
    """Patients (``patient_ids``) with their outcome target and whatever modalities each has.

    ``tables`` maps a table modality (e.g. clinical raw columns, expression genes, radiomics) to a
    DataFrame indexed by ``patient_ids`` (rows of absent patients are NaN); ``bags`` maps a bag
    modality (e.g. histology tile features) to one (n, dim) array per patient or None.
    ``present`` is a bool DataFrame (patients x modalities); ``synthetic`` marks modality values
    that were generated from another modality rather than measured (patients x modalities).
    """

    patient_ids: np.ndarray
    target: np.ndarray  # metastat.data.target.make_target structure (Target.structured())
    kind: str  # "binary" | "survival"
    horizon: float | None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    bags: dict[str, list[np.ndarray | None]] = field(default_factory=dict)
    variables: list[Variable] = field(default_factory=list)
    present: pd.DataFrame = field(default_factory=pd.DataFrame)
    synthetic: pd.DataFrame | None = None
    name: str = "cohort"

    def __post_init__(self) -> None:
        if self.synthetic is None:
            self.synthetic = pd.DataFrame(
                False, index=self.present.index, columns=self.present.columns
            )

    def __len__(self) -> int:
        return len(self.patient_ids)

    @property
    def modalities(self) -> list[str]:
        """Modalities present for at least one patient (registry order)."""
        return [m for m in self.present if bool(self.present[m].any())]

    @property
    def generated(self) -> np.ndarray:
        """Per patient: is any of its modality values generated (not measured)?"""
        return self.synthetic.to_numpy(dtype=bool).any(axis=1)  # type: ignore[union-attr]

    # shorthands of the built-in modalities (None when the set lacks them)
    @property
    def clinical(self) -> pd.DataFrame | None:
        return self.tables.get("clinical")

    @property
    def expression(self) -> pd.DataFrame | None:
        return self.tables.get("expression")

    @property
    def histology(self) -> list[np.ndarray | None] | None:
        return self.bags.get("histology")

    @property
    def labels(self) -> np.ndarray:
        """Stratification label per patient (binary status, else event)."""
        if self.kind == "binary":
            return np.nan_to_num(self.target["binary"]).astype(int)
        return self.target["event"].astype(int)

    def has(self, modality: str) -> np.ndarray:
        """Bool mask of the patients who have ``modality``."""
        if modality not in self.present:
            return np.zeros(len(self), dtype=bool)
        return self.present[modality].to_numpy(dtype=bool)

    def measured(self, modality: str) -> np.ndarray:
        """Bool mask of the patients whose ``modality`` is present and not generated."""
        syn = self.synthetic
        gen = syn[modality].to_numpy(bool) if modality in syn else np.zeros(len(self), bool)  # type: ignore[operator,index]
        return self.has(modality) & ~gen

    def subset(self, idx: np.ndarray) -> MultimodalSet:
        """Patients ``idx`` (positions)."""
        idx = np.asarray(idx)
        return replace(
            self,
            patient_ids=self.patient_ids[idx],
            target=self.target[idx],
            tables={m: t.iloc[idx] for m, t in self.tables.items()},
            bags={m: [b[i] for i in idx] for m, b in self.bags.items()},
            present=self.present.iloc[idx],
            synthetic=self.synthetic.iloc[idx],  # type: ignore[union-attr]
        )

    def with_target(self, target: Target) -> MultimodalSet:
        """The same patients with outcome ``target`` (binary or survival, one per patient)."""
        if len(target) != len(self) or target.kind == "multiclass":
            raise InputError(
                f"a fusion target must be binary or survival with one entry per patient "
                f"({len(self)}); got a {target.kind} target of {len(target)}."
            )
        return replace(self, target=target.structured(), kind=target.kind, horizon=target.horizon)

    def without(self, *modalities: str) -> MultimodalSet:
        """The same patients with ``modalities`` removed (marked absent for everyone)."""
        for m in modalities:
            get_modality(m)  # unknown names raise with the list of modalities
        present, synthetic = self.present.copy(), self.synthetic.copy()  # type: ignore[union-attr]
        for m in modalities:
            if m in present:
                present[m] = False
                synthetic[m] = False
        return replace(self, present=present, synthetic=synthetic)

    def with_values(self, modality: str, frame: pd.DataFrame, rows: np.ndarray) -> MultimodalSet:
        """Table ``modality`` of patients ``rows`` (bool mask) replaced by ``frame`` (generated)."""
        if modality not in self.tables:
            raise InputError(f"no {modality} table to fill in (no columns); give its columns.")
        table = self.tables[modality].copy()
        values = frame.reindex(index=table.index[rows], columns=table.columns)
        table.loc[table.index[rows]] = values.to_numpy()
        present, synthetic = self.present.copy(), self.synthetic.copy()  # type: ignore[union-attr]
        present.loc[present.index[rows], modality] = True
        synthetic.loc[synthetic.index[rows], modality] = True
        return replace(
            self, tables={**self.tables, modality: table}, present=present, synthetic=synthetic
        )

    def with_columns(self, modality: str, columns: list[str]) -> MultimodalSet:
        """An all-absent ``modality`` table over ``columns`` (to be filled in by a generator)."""
        empty = pd.DataFrame(np.nan, index=self.patient_ids, columns=list(columns))
        present, synthetic = self.present.copy(), self.synthetic.copy()  # type: ignore[union-attr]
        present[modality] = synthetic[modality] = False
        return replace(
            self, tables={**self.tables, modality: empty}, present=present, synthetic=synthetic
        )

    def pooled(self, modality: str, dim: int | None = None) -> pd.DataFrame:
        """Mean instance feature per patient of bag ``modality`` (NaN rows where absent)."""
        bags = self.bags.get(modality) or [None] * len(self)
        d = dim or next((b.shape[1] for b in bags if b is not None), 0)
        out = np.full((len(self), d), np.nan)
        has = self.has(modality)
        for i, b in enumerate(bags):
            if b is not None and has[i]:
                out[i] = b.mean(axis=0)
        return pd.DataFrame(
            out, index=self.patient_ids, columns=[f"tile_mean_{j}" for j in range(d)]
        )

    def pooled_histology(self, dim: int | None = None) -> pd.DataFrame:
        """:meth:`pooled` for histology."""
        return self.pooled("histology", dim)

    def features(self, modality: str) -> pd.DataFrame:
        """The per-patient table of ``modality``: the table itself, or mean-pooled bags."""
        if modality in self.tables:
            return self.tables[modality]
        if modality in self.bags:
            return self.pooled(modality)
        raise InputError(f"modality {modality!r} is not part of this data set.")

    def used(self, modalities: Iterable[str]) -> np.ndarray:
        """Per patient, the '+'-joined subset of ``modalities`` it has (what a model used)."""
        mods = [m for m in modalities if m in self.present]
        p = self.present[mods].to_numpy() if mods else np.zeros((len(self), 0), dtype=bool)
        return np.array(["+".join(m for m, ok in zip(mods, row, strict=True) if ok) for row in p])

    def generated_in(self, used: np.ndarray) -> np.ndarray:
        """Per patient, the '+'-joined modalities of ``used`` that were generated."""
        syn = self.synthetic
        out = []
        for i, u in enumerate(used):
            out.append("+".join(m for m in str(u).split("+") if m and bool(syn[m].iat[i])))  # type: ignore[index]
        return np.array(out, dtype=object)

    def provenance(self, used: np.ndarray) -> dict[str, np.ndarray]:
        """Prediction-frame columns naming what each patient's prediction used: ``modalities``,
        ``generated`` (those of them generated) and ``expression_generated``."""
        gen = self.generated_in(used)
        return {
            "modalities": used,
            "generated": gen,
            "expression_generated": np.array(["expression" in g.split("+") for g in gen], bool),
        }


def _hint(extra: list[str], known: pd.Index) -> str:
    short = {str(k)[:12] for k in known}
    if any(str(e)[:12] in short for e in extra):
        return (
            " Some match a patient id on their first 12 characters: sample barcodes "
            "(e.g. TCGA-XX-XXXX-01A) must be mapped to patient ids (TCGA-XX-XXXX) first."
        )
    return ""


def _check_ids(table_ids: pd.Index, ids: pd.Index, modality: str, extra: str) -> None:
    check_unique_ids(table_ids, f"{modality} table", "patient id")
    unknown = table_ids.difference(ids)
    if len(unknown) and extra == "error":
        shown = list(map(str, unknown[:5]))
        raise InputError(
            f"{modality} table: {len(unknown)} patient id(s) have no outcome, e.g. {shown}."
            f"{_hint(shown, ids)} Fix the ids, or pass extra='drop' to ignore these rows."
        )
    if len(table_ids.intersection(ids)) == 0:
        raise InputError(
            f"{modality} table shares no patient id with the outcome table (e.g. "
            f"{list(map(str, table_ids[:3]))} vs {list(map(str, ids[:3]))})."
            f"{_hint(list(table_ids[:50]), ids)}"
        )


def _align_bags(
    bags: Mapping[str, np.ndarray], ids: pd.Index, modality: str, extra: str
) -> list[np.ndarray | None]:
    keys = pd.Index([str(k) for k in bags])
    _check_ids(keys, ids, modality, extra)
    lookup = {str(k): v for k, v in bags.items()}
    out = [lookup.get(i) for i in ids]
    dims = {np.asarray(b).shape[1] for b in out if b is not None and np.ndim(b) == 2}
    if len(dims) > 1:
        raise InputError(f"{modality} bags have different feature dimensions {sorted(dims)}.")
    return [None if b is None or len(b) == 0 else np.asarray(b, np.float32) for b in out]


def align_modalities(
    outcome: pd.DataFrame,
    *,
    kind: str,
    horizon: float | None = None,
    variables: list[Variable] | None = None,
    extra: str = "error",
    name: str = "cohort",
    **modalities: pd.DataFrame | Mapping[str, np.ndarray] | None,
) -> MultimodalSet:
    """Align modality tables on the outcome table's patient ids (its index).

    ``outcome`` has columns ``event``, ``time`` (NaN if none) and ``binary``; each keyword names a
    registered modality (:mod:`metastat.fusion.registry`): a table indexed by patient id, or for
    bag modalities a mapping patient id -> (n, dim) features (``None``: not given). The clinical
    table needs its typed ``variables``. ``extra='drop'`` ignores modality rows of patients
    without an outcome (default: error).
    """
    given = {m: v for m, v in modalities.items() if v is not None}
    if not given:
        raise InputError(f"give at least one modality ({', '.join(modality_names())}).")
    entries = {m: get_modality(m) for m in given}
    ids = pd.Index(outcome.index.astype(str), name="patient_id")
    check_unique_ids(ids, "outcome table", "patient id")
    present: dict[str, np.ndarray] = {}
    tables: dict[str, pd.DataFrame] = {}
    bags: dict[str, list[np.ndarray | None]] = {}
    for m in (m for m in modality_names() if m in given):
        entry, value = entries[m], given[m]
        if entry.form == "bag":
            bags[m] = _align_bags(value, ids, m, extra)  # type: ignore[arg-type]
            present[m] = np.array([b is not None for b in bags[m]])
            continue
        table = value.set_axis(value.index.astype(str))  # type: ignore[union-attr]
        _check_ids(table.index, ids, m, extra)
        aligned = table.reindex(ids)
        if entry.presence is None:
            aligned = aligned.astype(float)
            present[m] = aligned.notna().any(axis=1).to_numpy()
        else:
            present[m] = entry.presence(aligned, list(variables or [])) & ids.isin(table.index)
        tables[m] = aligned
    for m, p in present.items():
        if not p.any():
            raise InputError(
                f"modality {m!r} has no values for any patient; drop it (it cannot inform a "
                "model) or check its table."
            )
    target = make_target(
        outcome["event"].to_numpy(float),
        outcome["time"].to_numpy(float) if "time" in outcome else None,
        outcome["binary"].to_numpy(float),
    )
    return MultimodalSet(
        patient_ids=ids.to_numpy().astype(str),
        target=target,
        kind=kind,
        horizon=horizon,
        tables=tables,
        bags=bags,
        variables=list(variables or []),
        present=pd.DataFrame(present, index=ids),
        name=name,
    )


def outcome_table(outcome: Outcome, patient_ids: np.ndarray, mask: np.ndarray) -> pd.DataFrame:
    """Outcome arrays of the usable samples as a table indexed by patient id."""
    time = outcome.time[mask] if outcome.time is not None else np.full(mask.sum(), np.nan)
    return pd.DataFrame(
        {"event": outcome.event[mask], "time": time, "binary": outcome.binary[mask]},
        index=pd.Index(patient_ids[mask], name="patient_id"),
    )


def usable_mask(outcome: Outcome) -> np.ndarray:
    """Samples usable for the outcome (binary: status known; survival: time and event known)."""
    mask = outcome.usable_mask
    if outcome.kind == "binary" and outcome.time is not None:
        mask = mask & outcome.survival_mask
    return mask


def from_cohort(
    adata: ad.AnnData,
    outcome: str,
    *,
    horizon: str | float | None = None,
    variables: list[Variable] | None = None,
    expression: bool = True,
    expression_table: pd.DataFrame | None = None,
    histology: Mapping[str, np.ndarray] | None = None,
    **modalities: pd.DataFrame | Mapping[str, np.ndarray] | None,
) -> MultimodalSet:
    """A built-in / loaded cohort as a multimodal set: clinical variables from ``obs``, expression
    from ``X`` (genes collapsed to symbols), optional histology bags and any other registered
    modality (e.g. ``radiology=`` a radiomics table) by patient id."""
    name = cohort_name(adata)
    if variables is None:
        variables = clinical_variables(name)
    if expression and adata.n_vars:
        adata = collapse_genes(adata, "symbol", GeneReport())
    out = resolve_outcome(adata, outcome, horizon=horizon)
    ids = patients(adata)
    if len(set(ids)) != len(ids):
        raise InputError(
            f"cohort {name!r} has several samples per patient; fusion predicts per patient: keep "
            "one sample per patient (e.g. the primary tumour) first."
        )
    mask = usable_mask(out)
    obs = adata.obs.set_axis(ids)
    expr = expression_frame(adata).set_axis(ids) if expression and adata.n_vars else None
    if expr is not None:
        expr = expr[mask]
    if expression_table is not None:
        if expr is not None:
            raise InputError("the cohort already has expression; do not pass another table.")
        expr = expression_table
    return align_modalities(
        outcome_table(out, ids, mask),
        kind=out.kind,
        horizon=out.horizon,
        clinical=obs[mask],
        variables=variables,
        expression=expr,
        histology=histology,
        extra="drop",
        name=name,
        **modalities,
    )


class single_thread:
    """Run small torch models on one CPU thread (faster than contended multi-threading for
    full-batch nets of a few thousand parameters); restores the previous setting."""

    def __enter__(self) -> None:
        import torch

        self._n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self._n)
