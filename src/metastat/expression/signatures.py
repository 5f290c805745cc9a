"""Gene signatures: published sets shipped with metastat, user gene sets (GMT / CSV), scoring.

A signature is a mapping gene -> weight (relative direction of each gene within the set).
Its score for a sample is the weighted mean of the sample's standardised expression over the
signature genes present; coverage below ``min_coverage`` makes the signature unusable on that
cohort (reported, not silently scored on a handful of genes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from metastat.errors import InputError, UnknownNameError, did_you_mean


@dataclass(frozen=True)
class Signature:
    name: str
    weights: dict[str, float]  # gene id -> weight
    source: str = ""

    def coverage(self, genes: pd.Index) -> float:
        return float(np.mean([g in genes for g in self.weights])) if self.weights else 0.0

    def score(self, z: pd.DataFrame) -> np.ndarray:
        """Weighted mean of standardised expression over the genes present."""
        present = [g for g in self.weights if g in z.columns]
        if not present:
            raise InputError(f"signature {self.name!r}: none of its genes is in the data.")
        w = np.array([self.weights[g] for g in present])
        return z[present].to_numpy() @ w / np.abs(w).sum()


def _published_dir() -> Path:
    return Path(str(resources.files("metastat.data") / "datasets" / "signatures"))


def _published() -> dict[str, tuple[str, str, str]]:
    # name -> (file, weight column, citation); weights as published (a fitted model learns the
    # direction and scale of the score, so the sign convention of the source does not matter)
    return {
        "gene70": (
            "gene70.csv",
            "correlation",
            "van 't Veer L.J. et al. Nature 2002;415:530-6 (MammaPrint 70-gene)",
        ),
        "gene76": (
            "gene76.csv",
            "std.cox.coefficient",
            "Wang Y. et al. Lancet 2005;365:671-9 (Rotterdam 76-gene)",
        ),
    }


@cache
def _library() -> tuple[str, dict[str, dict[str, str]], dict[str, dict[str, float]]]:
    """The shipped signature library: version, per-set metadata, per-set gene weights."""
    meta = json.loads((_published_dir() / "library.json").read_text())
    frame = pd.read_csv(_published_dir() / "library.csv")
    weights = {
        str(name): dict(zip(g["gene"].astype(str), g["weight"].astype(float), strict=True))
        for name, g in frame.groupby("set", sort=False)
    }
    return str(meta["version"]), meta["sets"], weights


def signature_names() -> list[str]:
    """Every signature shipped with metastat (the 70- and 76-gene sets and the library)."""
    return sorted([*_published(), *_library()[1]])


def library_version() -> str:
    """Version of the shipped signature library (recorded in runs and models)."""
    return _library()[0]


def library_signatures(names: tuple[str, ...] | None = None) -> tuple[Signature, ...]:
    """Shipped signatures by name (default: all of them, gene symbols)."""
    return tuple(published_signature(n) for n in (names or signature_names()))


def signature_table() -> pd.DataFrame:
    """One row per shipped signature: genes, description, citation."""
    _, meta, _ = _library()
    rows = [
        {"name": n, "n_genes": len(published_signature(n).weights), "description": d, "citation": c}
        for n, (d, c) in {
            **{k: (f"published {k} signature", v[2]) for k, v in _published().items()},
            **{k: (m["description"], m["citation"]) for k, m in meta.items()},
        }.items()
    ]
    return pd.DataFrame(rows).set_index("name").sort_index()


def published_signature(name: str, key: str = "symbol") -> Signature:
    """A shipped signature keyed by gene ``symbol`` (library sets: symbols only), ``entrez`` or
    ``probe`` (70- / 76-gene sets)."""
    _, meta, weights = _library()
    if name in meta:
        if key != "symbol":
            raise InputError(f"signature {name!r} is defined on gene symbols, not {key!r}.")
        return Signature(name, weights[name], meta[name]["citation"])
    table = _published()
    if name not in table:
        names = signature_names()
        raise UnknownNameError(
            f"unknown signature {name!r}; shipped: {names}.{did_you_mean(name, names)}"
        )
    file, wcol, cite = table[name]
    frame = pd.read_csv(_published_dir() / file)
    col = {"symbol": "HUGO.gene.symbol", "entrez": "EntrezGene.ID", "probe": "probe"}[key]
    frame = frame[frame[col].notna()]
    ids = frame[col].astype("Int64").astype(str) if key == "entrez" else frame[col].astype(str)
    weights = frame[wcol].astype(float).to_numpy()
    out: dict[str, float] = {}
    for g, w in zip(ids, weights, strict=True):
        out.setdefault(g, float(w))
    return Signature(name, out, cite)


def read_gene_sets(path: str | Path) -> list[Signature]:
    """Read user gene sets: GMT, or CSV with columns ``set``, ``gene`` [, ``weight``]."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such gene-set file.")
    sets: list[Signature] = []
    if path.suffix.lower() == ".gmt":
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            parts = [p.strip() for p in line.split("\t")]
            if not line.strip():
                continue
            if len(parts) < 3:
                raise InputError(
                    f"{path}, line {lineno}: a GMT line needs name, description "
                    "and at least one gene, tab-separated."
                )
            sets.append(Signature(parts[0], {g: 1.0 for g in parts[2:] if g}, str(path)))
        return sets
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot be parsed as a gene-set CSV ({exc}).") from exc
    missing = {"set", "gene"} - set(frame.columns)
    if missing:
        raise InputError(
            f"{path}: gene-set CSV needs columns 'set' and 'gene' "
            f"(optional 'weight'); missing {sorted(missing)}."
        )
    if "weight" not in frame.columns:
        frame["weight"] = 1.0
    for name, g in frame.groupby("set", sort=False):
        sets.append(
            Signature(
                str(name),
                dict(zip(g["gene"].astype(str), g["weight"].astype(float), strict=True)),
                str(path),
            )
        )
    return sets
