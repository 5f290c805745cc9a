"""The expression default, chosen by a protocol fixed before the transfer benchmark was run.

Protocol (``docs/expression.md``, "Choosing the default"): candidates are every pair of a model
family in :data:`FAMILIES` and a representation in :data:`REPRESENTATIONS`; each is scored by
leave-one-cohort-out (LOCO) over the *training* cohorts only (train on all but one, test on the
held-out one; C-index for time-to-event outcomes, AUC for binary ones); the candidate with the
best mean held-out score wins, except that a candidate within :data:`TIE_MARGIN` of the best is
preferred when it is single-sample (``rank``) and then when it is simpler (order of
:data:`FAMILIES`). No test cohort takes part. :func:`metastat.expression.select.select_default`
runs it; :data:`DEFAULT` is what it chose on the built-in selection cohorts.
"""

from __future__ import annotations

from dataclasses import dataclass

#: model families, simplest first: family -> (model with a Cox head, model with a logistic head)
FAMILIES: dict[str, tuple[str, str]] = {
    "coxnet": ("coxnet", "logistic"),
    "library": ("library", "library_logistic"),
    "ensemble": ("ensemble", "ensemble_logistic"),
}
REPRESENTATIONS: tuple[str, ...] = ("rank", "standardise")
TIE_MARGIN = 0.01


@dataclass(frozen=True)
class Choice:
    """A model family and a representation (and why it was chosen)."""

    family: str
    representation: str
    reason: str = ""


def model_for(family: str, *, survival: bool) -> str:
    """The model name of ``family`` with a Cox head (``survival``) or a logistic head."""
    cox, logistic = FAMILIES[family]
    return cox if survival else logistic


#: Chosen by the protocol on the selection cohorts (see docs/expression.md for the table).
DEFAULT = Choice(
    "coxnet",
    "standardise",
    "LOCO over NKI, VDX, TRANSBIG (DMFS, Harrell C): coxnet/standardise 0.636, "
    "ensemble/standardise 0.631, coxnet/rank 0.594, ensemble/rank 0.589, library 0.500 "
    "(not fittable on the 8 genes all three share)",
)
