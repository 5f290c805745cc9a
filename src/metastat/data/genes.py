"""Gene identifiers: probe -> symbol / Entrez annotation, duplicate collapsing, cohort alignment.

Collapse rule (documented, deterministic): features without a gene id are dropped (control and
unannotated probes); where several features map to one gene, the feature with the highest mean
expression across the cohort's samples is kept ("MaxMean", WGCNA ``collapseRows``' default), ties
broken by the first occurrence. The rule uses no outcome labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from metastat.errors import InputError

GeneKey = Literal["symbol", "entrez", "probe"]
GENE_KEYS: tuple[str, ...] = ("symbol", "entrez", "probe")


@dataclass
class GeneReport:
    """What a gene-id operation kept and dropped, per cohort."""

    n_in: dict[str, int] = field(default_factory=dict)
    n_out: dict[str, int] = field(default_factory=dict)
    dropped_unannotated: dict[str, list[str]] = field(default_factory=dict)
    collapsed: dict[str, int] = field(default_factory=dict)
    not_shared: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = []
        for name in self.n_in:
            lines.append(
                f"{name}: {self.n_in[name]} features -> {self.n_out.get(name, 0)} genes "
                f"({len(self.dropped_unannotated.get(name, []))} unannotated dropped, "
                f"{self.collapsed.get(name, 0)} duplicates collapsed, "
                f"{len(self.not_shared.get(name, []))} not shared)"
            )
        return "\n".join(lines)


def read_annotation(
    table: pd.DataFrame,
    *,
    probe_col: str | None = None,
    symbol_cols: tuple[str, ...] = (
        "symbol",
        "Symbol",
        "HUGO.gene.symbol",
        "NCBI.gene.symbol",
        "Gene.Symbol",
        "gene",
    ),
    entrez_cols: tuple[str, ...] = (
        "entrez",
        "Entrez",
        "EntrezGene.ID",
        "ENTREZ_GENE_ID",
        "Entrez_Gene_ID",
    ),
) -> pd.DataFrame:
    """Normalise a probe annotation table to index=probe id, columns ``symbol``, ``entrez``."""
    frame = table.copy()
    if probe_col is not None:
        if probe_col not in frame.columns:
            raise InputError(f"annotation table has no probe column {probe_col!r}.")
        frame = frame.set_index(probe_col)
    frame.index = frame.index.astype(str)

    def first(cols: tuple[str, ...]) -> pd.Series:
        for c in cols:
            if c in frame.columns:
                return frame[c]
        return pd.Series(pd.NA, index=frame.index)

    symbol = first(symbol_cols).astype("string").str.strip().replace({"": pd.NA, "---": pd.NA})
    entrez = pd.to_numeric(first(entrez_cols), errors="coerce").astype("Int64")
    return pd.DataFrame({"symbol": symbol, "entrez": entrez}, index=frame.index)


def _gene_ids(adata: ad.AnnData, key: GeneKey) -> pd.Series:
    if key not in GENE_KEYS:
        raise InputError(f"unknown gene key {key!r}; use one of {GENE_KEYS}.")
    if key == "probe":  # the table's own feature ids (probes, or whatever the columns are)
        col = adata.var["feature_id"] if "feature_id" in adata.var.columns else adata.var_names
        return pd.Series(col, index=adata.var_names).astype("string")
    if key not in adata.var.columns:
        raise InputError(f"cohort has no gene annotation column {key!r} in var.")
    ids = adata.var[key]
    if key == "entrez":
        return ids.astype("Int64").astype("string")
    return ids.astype("string").str.strip().replace({"": pd.NA})


def collapse_genes(
    adata: ad.AnnData, key: GeneKey = "symbol", report: GeneReport | None = None
) -> ad.AnnData:
    """One feature per gene (MaxMean rule); var_names become the gene ids."""
    name = str(adata.uns.get("metastat", {}).get("name", "cohort"))
    ids = _gene_ids(adata, key)
    keep = ids.notna().to_numpy()
    means = np.nanmean(np.asarray(adata.X, dtype=float), axis=0)
    order = pd.DataFrame({"gene": ids.to_numpy(), "mean": means, "pos": np.arange(len(ids))})
    order = order[keep].sort_values(["gene", "mean", "pos"], ascending=[True, False, True])
    chosen = np.sort(order.drop_duplicates("gene")["pos"].to_numpy())
    out = adata[:, chosen].copy()
    out.var["feature_id"] = out.var_names.astype(str)
    out.var_names = pd.Index(ids.to_numpy()[chosen].astype(str), name="gene")
    out.uns.setdefault("metastat", {})["gene_key"] = key
    if report is not None:
        report.n_in[name] = adata.n_vars
        report.n_out[name] = out.n_vars
        report.dropped_unannotated[name] = [str(v) for v in adata.var_names[~keep]]
        report.collapsed[name] = int(keep.sum() - len(chosen))
    return out


def align_cohorts(
    cohorts: list[ad.AnnData], key: GeneKey = "symbol", report: GeneReport | None = None
) -> list[ad.AnnData]:
    """Collapse each cohort to genes and keep the genes all cohorts share (in the first's order)."""
    report = report if report is not None else GeneReport()
    collapsed = [collapse_genes(c, key, report) for c in cohorts]
    shared = set(collapsed[0].var_names)
    for c in collapsed[1:]:
        shared &= set(c.var_names)
    if not shared:
        names = [str(c.uns.get("metastat", {}).get("name")) for c in cohorts]
        raise InputError(
            f"cohorts {names} share no genes by {key!r}; try key='entrez' or "
            "check that both tables are annotated."
        )
    genes = [g for g in collapsed[0].var_names if g in shared]
    out = []
    for c in collapsed:
        name = str(c.uns.get("metastat", {}).get("name", "cohort"))
        report.not_shared[name] = [g for g in c.var_names if g not in shared]
        report.n_out[name] = len(genes)
        out.append(c[:, genes].copy())
    return out
