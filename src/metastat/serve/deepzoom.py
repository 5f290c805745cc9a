"""Deep-zoom tiles (the DZI layout OpenSeadragon reads) from a :class:`SlideReader`.

Level ``L`` of ``n`` halves the slide ``n - 1 - L`` times (the last level is level 0 of the
slide); each tile is ``tile`` px plus ``overlap`` px on every inner edge. A tile is read from
the pyramid level whose downsample is closest below the tile's and resized; label and macro
images are never read (:class:`SlideReader` reads the pyramid only).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from metastat.slides.reader import SlideReader


class DeepZoom:
    """DZI geometry and JPEG tiles of one slide."""

    def __init__(self, reader: SlideReader, tile: int = 254, overlap: int = 1) -> None:
        self.reader, self.tile, self.overlap = reader, tile, overlap
        w, h = reader.dimensions_px0
        self.size_px0 = (w, h)
        self.level_count = max(1, math.ceil(math.log2(max(w, h, 1)))) + 1
        self.level_dimensions = [
            (math.ceil(w / self._scale(lv)), math.ceil(h / self._scale(lv)))
            for lv in range(self.level_count)
        ]

    def _scale(self, level: int) -> float:
        """Level-0 pixels per pixel of deep-zoom ``level``."""
        return float(2 ** (self.level_count - 1 - level))

    def tile_image(self, level: int, col: int, row: int) -> np.ndarray:
        """RGB pixels of one tile; ValueError for a tile that does not exist."""
        if not 0 <= level < self.level_count:
            raise ValueError(f"no level {level}")
        lw, lh = self.level_dimensions[level]
        if not (0 <= col <= (lw - 1) // self.tile and 0 <= row <= (lh - 1) // self.tile):
            raise ValueError(f"no tile {col}_{row} at level {level}")
        x0, y0 = (
            col * self.tile - (self.overlap if col else 0),
            row * self.tile - (self.overlap if row else 0),
        )
        x1 = min(lw, (col + 1) * self.tile + self.overlap)
        y1 = min(lh, (row + 1) * self.tile + self.overlap)
        scale = self._scale(level)
        slide_level = self.reader.best_level_for_downsample(scale)
        ds = self.reader.level_downsamples[slide_level]
        rw = max(1, math.ceil((x1 - x0) * scale / ds))
        rh = max(1, math.ceil((y1 - y0) * scale / ds))
        region = self.reader.read((round(x0 * scale), round(y0 * scale)), (rw, rh), slide_level)
        if (rw, rh) != (x1 - x0, y1 - y0):
            resized = Image.fromarray(region).resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
            region = np.asarray(resized)
        return region

    def jpeg(self, level: int, col: int, row: int, quality: int = 80) -> bytes:
        """One tile as JPEG bytes."""
        buf = io.BytesIO()
        Image.fromarray(self.tile_image(level, col, row)).save(buf, format="JPEG", quality=quality)
        return buf.getvalue()
