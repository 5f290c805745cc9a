"""Per-request limits of the scoring endpoint, checked before anything is parsed."""

from __future__ import annotations

from dataclasses import dataclass

from metastat.errors import InputError


class RequestTooLarge(InputError):
    """A request over a width / cells / depth limit, found before parsing (answered 413)."""


@dataclass(frozen=True)
class Limits:
    """Profiles, columns, values and JSON nesting depth one request may carry."""

    max_samples: int = 2000
    max_columns: int = 60_000
    max_cells: int = 2_500_000
    max_depth: int = 8


def too_large(what: str, n: int, limit: int) -> RequestTooLarge:
    """The 413 error for ``what`` = ``n`` over ``limit``."""
    return RequestTooLarge(f"{what} {n:,} is over the limit of {limit:,} per request")
