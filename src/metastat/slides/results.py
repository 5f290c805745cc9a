"""What a slide run is given (:class:`SlideJob`) and what it reports (:class:`SlideResult`).

Kept free of torch and the encoders, so coordinates-only runs (``metastat slides tile``) start
instantly. ``run_summary.json`` holds one :meth:`SlideResult.to_dict` per slide.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

#: ``done``: nothing was off; ``degraded``: finished, but some input was damaged (see
#: ``counts`` and ``message``); ``failed``: no output (see ``error_type`` and ``message``).
Status = Literal["done", "degraded", "failed"]
STATUSES: tuple[Status, ...] = ("done", "degraded", "failed")
#: An expected file digest: (algorithm, lower-case hex, where it came from).
Checksum = tuple[str, str, str]


@dataclass(frozen=True)
class SlideJob:
    """One slide to process; ``slide_id`` is what outputs are named by (maybe a pseudonym)."""

    path: Path
    slide_id: str
    mpp_override: float | None = None  # wins over the metadata
    mpp_fallback: float | None = None  # used only when the metadata has none
    redact: tuple[str, ...] = ()  # strings removed from messages (original names)
    checksum: Checksum | None = None  # expected digest (manifest, GDC manifest or sidecar)


@dataclass
class SlideResult:
    """Outcome of one slide, as recorded in ``run_summary.json`` (``slides[]``).

    ``counts`` holds the problems found (``unreadable_tiles``, ``implausible_tiles``,
    ``decoder_warnings``, ``unreadable_thumbnail_blocks``); any non-zero count makes a finished
    slide ``degraded``. ``resumed`` is True when an earlier run's output was reused.
    ``integrity`` is ``verified`` when the file matched its known checksum, ``mismatch`` when it
    did not (the slide failed), else ``unverified`` (no checksum known: nothing is claimed
    about bits the decoders cannot see).
    """

    slide_id: str
    status: Status
    n_tiles: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    message: str | None = None
    seconds: float = 0.0
    error_type: str | None = None
    resumed: bool = False
    integrity: Literal["verified", "unverified", "mismatch"] = "unverified"
    checksum: str | None = None  # "md5:<hex>" of the verified file
    feature_file: str | None = None
    coords_file: str | None = None
    geojson_file: str | None = None
    qc_file: str | None = None

    @property
    def error(self) -> str | None:
        """The message of a failed slide (None otherwise)."""
        return self.message if self.status == "failed" else None

    @property
    def n_unreadable(self) -> int:
        """Tiles that could not be read."""
        return int(self.counts.get("unreadable_tiles", 0))

    def fail(self, error_type: str, message: str) -> SlideResult:
        """Mark this result failed with ``message`` (returns self)."""
        self.status, self.error_type, self.message = "failed", error_type, message
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (``error`` repeats ``message`` for failed slides)."""
        d = asdict(self)
        d["error"] = self.error
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SlideResult:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


def failed(job: SlideJob, error_type: str, message: str) -> SlideResult:
    """A failed result for ``job``."""
    return SlideResult(job.slide_id, "failed", error_type=error_type, message=message)
