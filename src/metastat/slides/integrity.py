"""Decode problems counted, never hidden: backend errors, decoder warnings and tiles whose
pixels look like decoder garbage (flat blocks, vivid stripes, disagreement with a lower level).

A bit flip in a JPEG tile often decodes without any error: OpenSlide raises for some
("Corrupt JPEG data: ..."), tiffslide/imagecodecs for none. The pixel checks here catch the
usual results: blocks of one flat colour where the decoder gave up, rainbow stripes of
out-of-gamut colours, and a colour shift against the slide's own lower-resolution level.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from metastat.slides.errors import SlideReadError

#: Loggers and warning modules through which the TIFF backends report decode problems.
DECODER_LOGGERS = ("tifffile", "tiffslide", "imagecodecs")
#: 8x8 blocks of exactly one colour, as a fraction of the tile's non-background blocks.
MAX_FLAT_BLOCK_FRACTION = 0.2
#: Pixels with a channel range above 170 and a clipped channel (H&E never gets there).
MAX_VIVID_FRACTION = 0.01
#: Largest difference (0-255) of a cell's mean colour from the lower pyramid level's ...
MAX_MEAN_COLOUR_SHIFT = 30.0
#: ... in this many cells of a tile (one cell on a sharp tissue edge can differ by chance).
MIN_SHIFTED_CELLS = 2
_BACKGROUND = 215  # mean of the darkest channel above this: glass, not tissue


class DecodeLog:
    """Thread-safe counters of one slide's decode problems, with the first few messages."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: list[str] = []
        self._lock = threading.Lock()

    def add(self, kind: str, message: str | None = None, n: int = 1) -> None:
        """Count ``n`` problems of ``kind`` (keep ``message`` if it is one of the first three)."""
        with self._lock:
            self.counts[kind] += n
            if message and len(self.examples) < 3:
                self.examples.append(message)


class _Handler(logging.Handler):
    def __init__(self, log: DecodeLog) -> None:
        super().__init__(logging.WARNING)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log.add("decoder_warnings", f"{record.name}: {record.getMessage()}"[:200])


@contextmanager
def capture_decoder_reports(log: DecodeLog) -> Iterator[None]:
    """Count warnings the TIFF decoders log (any thread) or warn (main thread) in the block."""
    handler = _Handler(log)
    loggers = [logging.getLogger(n) for n in DECODER_LOGGERS]
    for lg in loggers:
        lg.addHandler(handler)
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        mod = str(filename)
        if any(n in mod for n in DECODER_LOGGERS) and not issubclass(category, ResourceWarning):
            log.add("decoder_warnings", f"{category.__name__}: {message}"[:200])
        else:
            previous(message, category, filename, lineno, file, line)

    try:
        if threading.current_thread() is threading.main_thread():  # warnings state is global
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.simplefilter("ignore", ResourceWarning)
                warnings.showwarning = show
                yield
        else:  # e.g. the portal's slide thread: logged reports only
            yield
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


def implausible(tile: np.ndarray, reference: np.ndarray | None = None) -> str | None:
    """Why the pixels of an RGB ``tile`` look like decoder garbage, or None if they look sane.

    ``reference`` holds the mean colours (k, k, 3) of the tile's k x k cells on an
    independently stored lower pyramid level (None: not available, e.g. a single level).
    """
    a = np.asarray(tile)
    h, w = (a.shape[0] // 8) * 8, (a.shape[1] // 8) * 8
    if h == 0 or w == 0:
        return None
    r, g, bl = a[:, :, 0], a[:, :, 1], a[:, :, 2]
    mx, mn = np.maximum(np.maximum(r, g), bl), np.minimum(np.minimum(r, g), bl)
    vivid = (mx - mn > 170) & ((mn <= 8) | (mx >= 250))  # uint8: mx >= mn, no wrap
    frac = float(np.count_nonzero(vivid)) / vivid.size
    if frac > MAX_VIVID_FRACTION:
        return f"{frac:.1%} of its pixels are vivid out-of-gamut colours (stripes)"
    bmn = mn[:h, :w].reshape(h // 8, 8, w // 8, 8).min(axis=(1, 3))
    tissue = bmn < _BACKGROUND  # blocks with a pixel darker than glass
    n_tissue = int(np.count_nonzero(tissue))
    if n_tissue >= 8:
        b = a[:h, :w].reshape(h // 8, 8, w // 8, 8, 3)
        first = b[:, :1, :, :1, :]
        flat = np.all(b == first, axis=(1, 3, 4)) & tissue
        frac = float(np.count_nonzero(flat)) / n_tissue
        if frac > MAX_FLAT_BLOCK_FRACTION:
            return f"{frac:.0%} of its tissue is flat 8x8 blocks of one colour"
    if reference is not None:
        k = reference.shape[0]
        hc, wc = (a.shape[0] // k) * k, (a.shape[1] // k) * k
        cells = a[:hc, :wc].reshape(k, hc // k, k, wc // k, 3).mean(axis=(1, 3))
        shift = np.abs(cells - reference).max(axis=-1)  # (k, k)
        n_off = int(np.count_nonzero(shift > MAX_MEAN_COLOUR_SHIFT))
        if n_off >= MIN_SHIFTED_CELLS:
            return (
                f"{n_off} of its {k * k} cells differ in colour by up to {shift.max():.0f}/255 "
                "from the slide's lower level"
            )
    return None


def judge(log: DecodeLog, *, slide_id: str, n_tiles: int, max_bad_fraction: float) -> str | None:
    """Message for a slide with decode problems (None: nothing was off).

    Raises :class:`SlideReadError` when the excluded tiles exceed ``max_bad_fraction``.
    """
    c = log.counts
    bad = c["unreadable_tiles"] + c["implausible_tiles"]
    if n_tiles and (bad > max_bad_fraction * n_tiles or bad == n_tiles):
        raise SlideReadError(
            f"{bad} of {n_tiles} tiles of slide '{slide_id}' could not be read or decoded to "
            f"garbage ({c['unreadable_tiles']} unreadable, {c['implausible_tiles']} implausible; "
            f"limit {max_bad_fraction:.0%}; e.g. {'; '.join(log.examples[:2])}): the file is "
            "damaged; re-copy or re-scan it, or raise --max-unreadable-fraction"
        )
    found = {k: v for k, v in sorted(c.items()) if v}
    if not found:
        return None
    what = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in found.items())
    return (
        f"slide '{slide_id}' is damaged: {what} (of {n_tiles} tiles; bad tiles were left out; "
        f"e.g. {'; '.join(log.examples[:2]) or 'see counts'}): check its QC PNG and re-copy or "
        "re-scan it"
    )
