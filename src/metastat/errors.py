"""metastat's exceptions: every user-facing failure is one of these, with an actionable message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")


class MetastatError(Exception):
    """Base class of all metastat errors."""


class InputError(MetastatError, ValueError):
    """A file, table, column or value supplied by the user is invalid.

    The message names where the problem is (file, row, column) and how to fix it.
    """


class UnknownNameError(InputError, KeyError):
    """A name (dataset, outcome, model, encoder ...) that metastat does not know."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ValidationError(MetastatError):
    """An evaluation cannot be run honestly (e.g. a fold without events)."""


class ModelError(MetastatError):
    """A saved model cannot be loaded or cannot score the given input."""


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return a ' Did you mean ...?' hint for a misspelled ``name`` (or '')."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def lookup(registry: Mapping[str, V], name: str, what: str) -> V:
    """``registry[name]``, or an :class:`UnknownNameError` naming ``what`` and the known names."""
    if name not in registry:
        known = sorted(registry)
        raise UnknownNameError(
            f"unknown {what} {name!r}.{did_you_mean(name, known)} Known: {', '.join(known)}."
        )
    return registry[name]
