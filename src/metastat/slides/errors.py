"""Errors of the whole-slide-image pipeline; each says what failed, where, and how to fix it."""

from __future__ import annotations

from metastat.errors import InputError, MetastatError


class SlideError(MetastatError):
    """Base class of slide-pipeline errors."""


class SlideOpenError(SlideError, InputError):
    """A slide file cannot be opened: missing, truncated, corrupt or an unsupported format."""


class SlideIntegrityError(SlideError, InputError):
    """A slide file does not match its known checksum (or none is known but one is required)."""


class SlideReadError(SlideError):
    """A region of an opened slide cannot be read (e.g. a corrupt tile mid-slide)."""


class MissingMppError(SlideError, InputError):
    """A slide has no µm/px in its metadata and none was supplied."""


class ResolutionError(SlideError, InputError):
    """The slide's resolution cannot give the requested tile resolution (no upsampling)."""


class NoTissueError(SlideError):
    """Tissue detection found no tissue (or no tile with enough tissue) on a slide."""


class ReadTooLargeError(SlideError, InputError):
    """A single region read would exceed the configured pixel budget."""


class SlideTimeoutError(SlideError):
    """A slide took longer than the per-slide time limit (``--slide-timeout``)."""


class SlideLockedError(SlideError):
    """Another run is computing this slide right now (its per-slide lock is held)."""


class FeatureStoreError(SlideError):
    """A feature file is incomplete, corrupt or in an unknown layout."""
