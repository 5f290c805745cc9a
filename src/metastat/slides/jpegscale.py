"""Fast downsampled reads of JPEG-tiled TIFF levels by DCT scaling (decode at 1/2, 1/4, 1/8).

libjpeg can decode a JPEG at a fraction of its size for much less work than a full decode
plus resize. For the tissue mask this reads a level (often a single-level slide's level 0)
several times faster than a full-resolution read. Used only where it is safe: a tiled,
JPEG-compressed, chunky RGB/YCbCr page whose decoded pixels are first checked against the
slide reader on one tile; anything else returns None and the caller reads the normal way.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

#: Largest output of one scaled read (px); larger levels are read in strips the normal way.
MAX_SCALED_PX = 64 * 2**20
_TOLERANCE = 8.0  # mean abs difference (0-255) allowed in the check against the reader


def _page(tif, size: tuple[int, int]):
    for page in tif.pages:
        if (page.imagewidth, page.imagelength) == size and page.is_tiled:
            return page
    return None


def scale_for(factor: int) -> int:
    """Largest DCT scale (1, 2, 4 or 8) not above ``factor``."""
    return max(s for s in (1, 2, 4, 8) if s <= max(1, factor))


def read_scaled(
    path: Path,
    size: tuple[int, int],
    scale: int,
    reference: object | None = None,
) -> tuple[np.ndarray, int] | None:
    """The level of ``size`` (w, h) decoded at 1/``scale``, and the number of unreadable tiles.

    ``reference(x, y, w, h) -> RGB array`` reads a region of that level the normal way, to
    check one decoded tile; None skips the check. Returns None where not applicable.
    """
    if scale < 2:
        return None
    try:
        import tifffile

        tif = tifffile.TiffFile(path)
    except Exception:
        return None
    with tif:
        page = _page(tif, size)
        if (
            page is None
            or page.compression != 7
            or page.photometric not in (2, 6)
            or page.planarconfig != 1
            or page.samplesperpixel != 3
            or page.tilewidth % scale != 0
            or page.tilelength % scale != 0
        ):
            return None
        tw, th, (w, h) = page.tilewidth, page.tilelength, size
        nx, ny = -(-w // tw), -(-h // th)
        sw, sh = tw // scale, th // scale
        if nx * sw * ny * sh > MAX_SCALED_PX or len(page.dataoffsets) < nx * ny:
            return None
        mode = "YCbCr" if page.photometric == 2 else "RGB"  # RGB data: no colour transform
        tables = page.jpegtables
        fh = tif.filehandle

        def decode(i: int) -> np.ndarray:
            fh.seek(int(page.dataoffsets[i]))
            data = fh.read(int(page.databytecounts[i]))
            if tables is not None:
                data = bytes(tables[:-2]) + data[2:]
            im = Image.open(io.BytesIO(data))
            im.draft(mode, (sw, sh))
            a = np.asarray(im)
            if a.shape != (sh, sw, 3):
                raise ValueError(f"tile decoded to {a.shape}, expected {(sh, sw, 3)}")
            return a

        if reference is not None:
            i = (ny // 2) * nx + nx // 2
            try:
                mine = decode(i).astype(np.float32)
                full = reference((i % nx) * tw, (i // nx) * th, tw, th)  # type: ignore[operator]
                theirs = np.asarray(Image.fromarray(full).reduce(scale), np.float32)
            except Exception:
                return None
            if theirs.shape != mine.shape or np.abs(mine - theirs).mean() > _TOLERANCE:
                return None
        out = np.full((ny * sh, nx * sw, 3), 255, np.uint8)
        bad = 0
        for i in range(nx * ny):
            y, x = divmod(i, nx)
            try:
                out[y * sh : (y + 1) * sh, x * sw : (x + 1) * sw] = decode(i)
            except Exception:
                bad += 1  # left white, counted like an unreadable block
    return out[: -(-h // scale), : -(-w // scale)], bad
