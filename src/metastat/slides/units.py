"""Physical and pixel units used across the slide pipeline (explicit in names and types)."""

from __future__ import annotations

from typing import NewType

#: A length in micrometres.
Microns = NewType("Microns", float)
#: Micrometres per pixel (image resolution); 0.5 µm/px is roughly a 20x objective.
MicronsPerPixel = NewType("MicronsPerPixel", float)
#: A length in level-0 (full-resolution) pixels.
PixelsL0 = NewType("PixelsL0", int)

#: Plausible range for a slide's resolution; values outside are treated as broken metadata.
MPP_RANGE: tuple[float, float] = (0.05, 100.0)


def check_mpp(value: float, *, what: str) -> MicronsPerPixel:
    """Return ``value`` as µm/px or raise ``ValueError`` naming ``what`` if implausible."""
    v = float(value)
    if not (MPP_RANGE[0] <= v <= MPP_RANGE[1]):
        raise ValueError(
            f"{what} = {v!r} µm/px is outside the plausible range {MPP_RANGE[0]}-{MPP_RANGE[1]}"
        )
    return MicronsPerPixel(v)
