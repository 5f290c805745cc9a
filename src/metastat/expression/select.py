"""The default-choosing protocol: leave-one-cohort-out over training cohorts only.

See :mod:`metastat.expression.defaults` for the rule. With one training cohort the held-out
scores come from its patient-grouped 5-fold CV instead; the protocol never sees a test cohort.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anndata as ad
import pandas as pd

from metastat.data.cohort import cohort_name
from metastat.data.pool import pool_cohorts
from metastat.errors import InputError, MetastatError
from metastat.expression.defaults import FAMILIES, REPRESENTATIONS, TIE_MARGIN, Choice, model_for
from metastat.progress import status

if TYPE_CHECKING:
    from metastat.expression.validate import EvaluationResult


@dataclass
class Selection:
    """Held-out score of every candidate on every held-out cohort, and the choice."""

    scores: pd.DataFrame  # rows: candidates (family, representation); columns: held-out cohorts
    metric: str
    choice: Choice
    ranking: list[tuple[str, str]]  # candidates in the rule's order (the choice first)


def candidates() -> list[tuple[str, str]]:
    """Every (family, representation) pair the protocol compares."""
    return list(itertools.product(FAMILIES, REPRESENTATIONS))


def rank_candidates(scores: pd.DataFrame) -> list[tuple[str, str]]:
    """Candidates in the rule's order: those within the margin of the best first (``rank``, then
    simpler families first), then the rest by mean score."""
    mean = scores.mean(axis=1)
    best = float(mean.max())
    order = list(FAMILIES)

    def key(c: tuple[str, str]) -> tuple:
        if mean[c] >= best - TIE_MARGIN:
            return (0, c[1] != "rank", order.index(c[0]), -mean[c])
        return (1, 0, 0, -mean[c])

    return sorted(mean.index, key=key)


def choose(scores: pd.DataFrame) -> Choice:
    """Apply the rule to a candidates x held-out table: best mean; within the margin prefer
    ``rank``, then the simpler family."""
    mean = scores.mean(axis=1)
    best = float(mean.max())
    close = [c for c in mean.index if mean[c] >= best - TIE_MARGIN]
    fam, rep = rank_candidates(scores)[0]
    return Choice(
        fam,
        rep,
        f"mean held-out score {mean[(fam, rep)]:.3f} (best {best:.3f}; "
        f"{len(close)} candidate(s) within {TIE_MARGIN})",
    )


def select_default(
    cohorts: list[ad.AnnData],
    outcome: str,
    *,
    seed: int = 0,
    gene_key: str = "symbol",
    test_outcomes: dict[str, str] | None = None,
) -> Selection:
    """Score every candidate by LOCO over ``cohorts`` (or 5-fold CV of a single cohort)."""
    if not cohorts:
        raise InputError("the protocol needs at least one training cohort.")
    names = [cohort_name(c) for c in cohorts]
    test_outcomes = test_outcomes or {}
    rows: dict[tuple[str, str], dict[str, float]] = {c: {} for c in candidates()}
    metric = ""
    for fam, rep in candidates():
        for i, held in enumerate(names):
            try:
                res = _held_out(cohorts, i, fam, rep, outcome, seed, gene_key, test_outcomes)
            except MetastatError as exc:  # cannot be fitted there: no information (0.5)
                status(f"protocol: {fam}/{rep} on {held} not fitted ({exc}); scored 0.5")
                rows[(fam, rep)][held] = 0.5
                continue
            metric = "c_index" if res.outcome.kind == "survival" else "auc"
            rows[(fam, rep)][held] = float(res.metrics[metric].estimate)
    scores = pd.DataFrame(rows).T
    scores.index = pd.MultiIndex.from_tuples(scores.index, names=["family", "representation"])
    return Selection(scores, metric, choose(scores), rank_candidates(scores))


def _held_out(
    cohorts: list[ad.AnnData],
    i: int,
    fam: str,
    rep: str,
    outcome: str,
    seed: int,
    gene_key: str,
    test_outcomes: dict[str, str],
) -> EvaluationResult:
    """One held-out evaluation of one candidate (no bootstrap)."""
    from metastat.expression.validate import cross_validate, external_validate

    held = cohort_name(cohorts[i])
    model = _model(fam, cohorts[0], outcome)
    common: dict[str, Any] = {
        "representation": rep,
        "n_boot": 0,
        "seed": seed,
        "gene_key": gene_key,
    }
    if len(cohorts) == 1:
        status(f"protocol: {fam}/{rep}, 5-fold CV on {held}")
        return cross_validate(cohorts[0], outcome, model=model, progress=False, **common)
    status(f"protocol: {fam}/{rep}, held-out {held}")
    rest = [c for j, c in enumerate(cohorts) if j != i]
    train = rest[0] if len(rest) == 1 else pool_cohorts(rest, outcome)
    return external_validate(
        train,
        cohorts[i],
        outcome,
        model=model,
        batch_key=None if len(rest) == 1 else "cohort",
        test_outcome=test_outcomes.get(held, outcome),
        progress=False,
        **common,
    )


def _model(family: str, cohort: ad.AnnData, outcome: str) -> str:
    from metastat.data.outcomes import resolve_outcome

    return model_for(family, survival=resolve_outcome(cohort, outcome).time is not None)


def mean_scores(selection: Selection) -> pd.Series:
    """Mean held-out score per candidate (what the rule ranks)."""
    return selection.scores.mean(axis=1).sort_values(ascending=False)
