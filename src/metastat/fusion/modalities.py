"""A multimodal sample set: patients aligned *by id* across modality tables, with presence masks.

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
from metastat.errors import InputError
from metastat.expression.heads import make_target

MODALITIES = ("clinical", "expression", "histology")


@dataclass
class MultimodalSet:
    """Patients (``ids``) with their outcome target and whatever modalities each one has.

    ``clinical`` (raw columns) and ``expression`` (genes) are DataFrames indexed by ``ids`` (rows of
    absent patients are NaN); ``histology`` is one tile-feature bag (n_tiles, dim) per patient or
    None. ``present`` is a bool DataFrame (ids x modalities); ``generated`` marks patients whose
    expression was generated from histology rather than measured.
    """

    ids: np.ndarray
    target: np.ndarray  # metastat.expression.heads.make_target structure
    kind: str  # "binary" | "survival"
    horizon: float | None
    clinical: pd.DataFrame | None = None
    expression: pd.DataFrame | None = None
    histology: list[np.ndarray | None] | None = None
    variables: list[Variable] = field(default_factory=list)
    present: pd.DataFrame = field(default_factory=pd.DataFrame)
    generated: np.ndarray | None = None
    name: str = "cohort"

    def __post_init__(self) -> None:
        if self.generated is None:
            self.generated = np.zeros(len(self.ids), dtype=bool)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def modalities(self) -> list[str]:
        """Modalities present for at least one patient."""
        return [m for m in MODALITIES if m in self.present and bool(self.present[m].any())]

    @property
    def labels(self) -> np.ndarray:
        """Stratification label per patient (binary status, else event)."""
        if self.kind == "binary":
            return np.nan_to_num(self.target["binary"]).astype(int)
        return self.target["event"].astype(int)

    def subset(self, idx: np.ndarray) -> MultimodalSet:
        """Patients ``idx`` (positions)."""
        idx = np.asarray(idx)
        return replace(
            self,
            ids=self.ids[idx],
            target=self.target[idx],
            clinical=None if self.clinical is None else self.clinical.iloc[idx],
            expression=None if self.expression is None else self.expression.iloc[idx],
            histology=None if self.histology is None else [self.histology[i] for i in idx],
            present=self.present.iloc[idx],
            generated=self.generated[idx],  # type: ignore[index]
        )

    def without(self, *modalities: str) -> MultimodalSet:
        """The same patients with ``modalities`` removed (marked absent for everyone)."""
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise InputError(f"unknown modalities {sorted(unknown)}; modalities: {MODALITIES}.")
        present = self.present.copy()
        for m in modalities:
            if m in present:
                present[m] = False
        gen = self.generated & ~np.isin("expression", modalities)  # type: ignore[operator]
        return replace(self, present=present, generated=gen)

    def with_expression(self, frame: pd.DataFrame, rows: np.ndarray) -> MultimodalSet:
        """Expression of patients ``rows`` (bool mask) replaced by ``frame`` (generated values)."""
        if self.expression is None:
            raise InputError("no expression modality to fill in (no gene list).")
        expr = self.expression.copy()
        values = frame.reindex(index=expr.index[rows], columns=expr.columns)
        expr.loc[expr.index[rows]] = values.to_numpy()
        present = self.present.copy()
        present.loc[present.index[rows], "expression"] = True
        gen = self.generated.copy()  # type: ignore[union-attr]
        gen[rows] = True
        return replace(self, expression=expr, present=present, generated=gen)

    def with_gene_columns(self, genes: list[str]) -> MultimodalSet:
        """An all-absent expression table over ``genes`` (to be filled in by a generator)."""
        empty = pd.DataFrame(np.nan, index=self.ids, columns=list(genes))
        present = self.present.copy()
        present["expression"] = False
        return replace(self, expression=empty, present=present)

    def pooled_histology(self, dim: int | None = None) -> pd.DataFrame:
        """Mean tile feature per patient (NaN rows where histology is absent)."""
        bags = self.histology or [None] * len(self)
        d = dim or next((b.shape[1] for b in bags if b is not None), 0)
        out = np.full((len(self), d), np.nan)
        for i, b in enumerate(bags):
            if b is not None and self.present["histology"].iat[i]:
                out[i] = b.mean(axis=0)
        return pd.DataFrame(out, index=self.ids, columns=[f"tile_mean_{j}" for j in range(d)])

    def used(self, modalities: Iterable[str]) -> np.ndarray:
        """Per patient, the '+'-joined subset of ``modalities`` it has (what a model used)."""
        mods = [m for m in modalities if m in self.present]
        p = self.present[mods].to_numpy() if mods else np.zeros((len(self), 0), dtype=bool)
        return np.array(["+".join(m for m, ok in zip(mods, row, strict=True) if ok) for row in p])


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


def align_modalities(
    outcome: pd.DataFrame,
    *,
    kind: str,
    horizon: float | None = None,
    clinical: pd.DataFrame | None = None,
    variables: list[Variable] | None = None,
    expression: pd.DataFrame | None = None,
    histology: Mapping[str, np.ndarray] | None = None,
    extra: str = "error",
    name: str = "cohort",
) -> MultimodalSet:
    """Align modality tables on the outcome table's patient ids (its index).

    ``outcome`` has columns ``event``, ``time`` (NaN if none) and ``binary``; ``clinical`` and
    ``expression`` are indexed by patient id; ``histology`` maps patient id -> tile features.
    ``extra='drop'`` ignores modality rows of patients without an outcome (default: error).
    """
    if not any(t is not None for t in (clinical, expression, histology)):
        raise InputError("give at least one modality (clinical, expression or histology).")
    ids = pd.Index(outcome.index.astype(str), name="patient_id")
    check_unique_ids(ids, "outcome table", "patient id")
    present: dict[str, np.ndarray] = {}
    clin = expr = None
    bags: list[np.ndarray | None] | None = None
    if clinical is not None:
        if not variables:
            raise InputError("a clinical table needs its typed variables (list of Variable).")
        table = clinical.set_axis(clinical.index.astype(str))
        _check_ids(table.index, ids, "clinical", extra)
        clin = table.reindex(ids)
        cols = [v.column for v in variables if v.column in clin.columns]
        present["clinical"] = (
            clin[cols].notna().any(axis=1).to_numpy() & ids.isin(table.index)
            if cols
            else np.zeros(len(ids), dtype=bool)
        )
    if expression is not None:
        table = expression.set_axis(expression.index.astype(str))
        _check_ids(table.index, ids, "expression", extra)
        expr = table.reindex(ids).astype(float)
        present["expression"] = expr.notna().any(axis=1).to_numpy()
    if histology is not None:
        keys = pd.Index([str(k) for k in histology])
        _check_ids(keys, ids, "histology", extra)
        lookup = {str(k): v for k, v in histology.items()}
        bags = [lookup.get(i) for i in ids]
        dims = {np.asarray(b).shape[1] for b in bags if b is not None and np.ndim(b) == 2}
        if len(dims) > 1:
            raise InputError(f"histology bags have different feature dimensions {sorted(dims)}.")
        bags = [None if b is None or len(b) == 0 else np.asarray(b, np.float32) for b in bags]
        present["histology"] = np.array([b is not None for b in bags])
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
        ids=ids.to_numpy().astype(str),
        target=target,
        kind=kind,
        horizon=horizon,
        clinical=clin,
        expression=expr,
        histology=bags,
        variables=list(variables or []),
        present=pd.DataFrame(present, index=ids),
        name=name,
    )


def outcome_table(outcome: Outcome, ids: np.ndarray, mask: np.ndarray) -> pd.DataFrame:
    """Outcome arrays of the usable samples as a table indexed by patient id."""
    time = outcome.time[mask] if outcome.time is not None else np.full(mask.sum(), np.nan)
    return pd.DataFrame(
        {"event": outcome.event[mask], "time": time, "binary": outcome.binary[mask]},
        index=pd.Index(ids[mask], name="patient_id"),
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
) -> MultimodalSet:
    """A built-in / loaded cohort as a multimodal set: clinical variables from ``obs``, expression
    from ``X`` (genes collapsed to symbols), optional histology bags by patient id."""
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
