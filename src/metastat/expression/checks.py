"""Checks that turn silent problems of a run into warnings that name them.

Each function returns messages (strings); the caller logs them and records them in ``run.json``
(``warnings``), so they reach the console, the report and the portal alike.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: events per test fold / per selected variable below which estimates are unstable
MIN_EVENTS = 10

_PROBE = re.compile(r"^(\d+_(s_|x_|a_|i_|f_|g_|r_)?at|ILMN_\d+|A_\d+_P\d+|ENS[A-Z]*G\d+)")
_ACCESSION = re.compile(r"^(NM_|NR_|XM_|XR_)\d+|^[A-Z]{1,2}\d{5,6}(\.\d+)?$")
_ENTREZ = re.compile(r"^\d{1,9}$")


def id_kind(ids: pd.Index | list[str]) -> str | None:
    """'probe', 'accession' or 'entrez' when most ids look like that rather than symbols."""
    ids = [str(i) for i in ids][:2000]
    if not ids:
        return None
    for kind, pattern in (("accession", _ACCESSION), ("probe", _PROBE), ("entrez", _ENTREZ)):
        if np.mean([bool(pattern.match(i)) for i in ids]) > 0.5:
            return kind
    return None


def gene_id_warning(ids: pd.Index, where: str, expected: str = "symbol") -> str | None:
    """A warning when ``ids`` look like probes / accessions / Entrez ids, not symbols."""
    kind = id_kind(ids)
    if expected == "symbol" and kind is not None:
        example = ", ".join(map(str, list(ids[:3])))
        fix = "--gene-key entrez" if kind == "entrez" else "--genes ANNOTATION.csv"
        return (
            f"{where}: the gene columns look like {kind} ids (e.g. {example}), not gene "
            f"symbols; map them with {fix} (probe -> symbol / Entrez table) or --gene-key."
        )
    return None


def dropped_samples(
    ids: np.ndarray, time: np.ndarray | None, event: np.ndarray, where: str
) -> tuple[np.ndarray, list[str]]:
    """Samples usable for a time-to-event outcome and warnings for the others (by id)."""
    if time is None:
        return np.ones(len(ids), dtype=bool), []
    missing_time = np.isnan(time)
    non_positive = ~missing_time & (time <= 0)
    missing_event = np.isnan(event)
    keep = ~(missing_time | non_positive | missing_event)
    out = []
    for mask, what in (
        (missing_time, "no follow-up time"),
        (non_positive, "a follow-up time <= 0"),
        (missing_event & ~missing_time, "no event status"),
    ):
        if mask.any():
            shown = ", ".join(map(str, ids[mask][:8]))
            more = "" if mask.sum() <= 8 else f" (+{mask.sum() - 8} more)"
            out.append(f"{where}: dropped {int(mask.sum())} sample(s) with {what}: {shown}{more}")
    return keep, out


def few_events(events_per_fold: list[int], where: str) -> list[str]:
    """Warn when a test fold (or an external test cohort) holds fewer than MIN_EVENTS events."""
    low = [(i, n) for i, n in enumerate(events_per_fold) if n < MIN_EVENTS]
    if not low:
        return []
    shown = ", ".join(f"fold {i}: {n}" for i, n in low[:6])
    return [
        f"{where}: {len(low)} test set(s) have fewer than {MIN_EVENTS} events ({shown}); "
        "metrics on so few events are unstable and their CIs wide: pool cohorts, use fewer "
        "folds, or report them as exploratory."
    ]


def events_per_variable(events: int, n_selected: int, where: str) -> list[str]:
    """Warn when a fitted model has fewer than MIN_EVENTS training events per non-zero weight."""
    if n_selected and events / n_selected < MIN_EVENTS:
        return [
            f"{where}: {events} training events for {n_selected} selected variables "
            f"({events / n_selected:.1f} events per variable, < {MIN_EVENTS}); the model may be "
            "over-fitted: prefer a sparser or signature-based model, or more events."
        ]
    return []


def emit(messages: list[str]) -> list[str]:
    """Log each message as a warning (stderr through the CLI) and return them."""
    for m in messages:
        log.warning(m)
    return messages
