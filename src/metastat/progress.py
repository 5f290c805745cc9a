"""Progress for long steps, always on stderr so ``--json`` output stays clean.

One switch for the whole package: ``set_quiet(True)`` (the CLI's ``--quiet``) or the environment
variable ``METASTAT_QUIET=1`` silences every bar and status line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_quiet = os.environ.get("METASTAT_QUIET", "") not in ("", "0")


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) every progress bar and status line."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    """Whether progress output is switched off."""
    return _quiet


def progress(
    iterable: Iterable[T],
    desc: str,
    *,
    total: int | None = None,
    unit: str = "it",
    enabled: bool = True,
) -> Iterator[T]:
    """Iterate with a progress bar on stderr (nothing when quiet or not ``enabled``)."""
    if _quiet or not enabled:
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        file=sys.stderr,
        leave=False,
        mininterval=1.0,
        dynamic_ncols=True,
    )


def status(message: str) -> None:
    """One line on stderr saying what a long step is doing (nothing when quiet)."""
    if not _quiet:
        print(f"[metastat] {message}", file=sys.stderr, flush=True)
