"""Slide reader: one interface over OpenSlide (default) and tiffslide (fallback).

The reader exposes geometry and µm/px only; label/macro images and raw vendor properties stay
inside it (see :meth:`SlideReader.safe_metadata`). A failed read reopens the backend handle, since
an OpenSlide handle fails every later read after one corrupt tile.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from metastat.slides.errors import (
    MissingMppError,
    ReadTooLargeError,
    SlideOpenError,
    SlideReadError,
)
from metastat.slides.units import MicronsPerPixel, check_mpp

Backend = Literal["auto", "openslide", "tiffslide"]

#: Largest single region read allowed, in output pixels (about 256 MiB as RGBA).
DEFAULT_MAX_READ_PX = 64 * 2**20
#: Largest level a thumbnail is computed from, strip by strip (16 Gpx).
MAX_THUMBNAIL_SOURCE_PX = 2**34
#: OpenSlide's decoded-tile cache per open slide.
DEFAULT_CACHE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class _Handle:
    """A live backend handle plus what the reader needs to know about it."""

    obj: Any
    name: str
    version: str
    mpp_keys: tuple[str, str]


def _open_openslide(path: Path, cache_bytes: int) -> _Handle:
    import openslide

    obj = openslide.OpenSlide(str(path))
    if cache_bytes > 0 and hasattr(openslide, "OpenSlideCache"):
        obj.set_cache(openslide.OpenSlideCache(cache_bytes))
    version = (
        f"openslide-python {openslide.__version__} / OpenSlide {openslide.__library_version__}"
    )
    return _Handle(obj, "openslide", version, ("openslide.mpp-x", "openslide.mpp-y"))


def _open_tiffslide(path: Path, cache_bytes: int) -> _Handle:
    import tiffslide

    obj = tiffslide.TiffSlide(str(path))
    obj.level_dimensions  # noqa: B018 - force parsing now, so a broken file fails at open
    keys = ("tiffslide.mpp-x", "tiffslide.mpp-y")
    return _Handle(obj, "tiffslide", f"tiffslide {tiffslide.__version__}", keys)


_OPENERS = {"openslide": _open_openslide, "tiffslide": _open_tiffslide}


def _to_rgb(arr: np.ndarray) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB array from any backend output (RGBA, grey, 16-bit)."""
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.integer):
            shift = max(int(a.dtype.itemsize * 8) - 8, 0)
            a = (a >> shift).astype(np.uint8) if shift else a.astype(np.uint8)
        else:
            a = (np.clip(a, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    channels = a.shape[2]
    if channels == 1:
        return np.repeat(a, 3, axis=2)
    if channels == 2:  # grey + alpha
        a = np.concatenate([np.repeat(a[:, :, :1], 3, axis=2), a[:, :, 1:]], axis=2)
        channels = 4
    if channels == 4:
        alpha = a[:, :, 3]
        if alpha.min() == 255:
            return np.ascontiguousarray(a[:, :, :3])
        # transparent areas (outside scanned regions) become white background
        w = alpha[:, :, None].astype(np.uint16)
        rgb = (a[:, :, :3].astype(np.uint16) * w + 255 * (255 - w) + 127) // 255
        return rgb.astype(np.uint8)
    return np.ascontiguousarray(a[:, :, :3])


class SlideReader:
    """A whole-slide image opened for reading; thread-safe for concurrent :meth:`read` calls.

    Use :func:`open_slide` to create one. Coordinates are level-0 pixels (``*_px0``) unless named
    otherwise; sizes of reads are in pixels of the level read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mpp_override: float | None = None,
        mpp_fallback: float | None = None,
        backend: Backend = "auto",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_read_px: int = DEFAULT_MAX_READ_PX,
    ) -> None:
        self.path = Path(path)
        self.max_read_px = int(max_read_px)
        self._cache_bytes = int(cache_bytes)
        self._lock = threading.Lock()
        self._generation = 0
        self.unreadable_blocks = 0  # thumbnail blocks that could not be read (shown white)
        if not self.path.exists():
            raise SlideOpenError(
                f"slide file '{self.path}' does not exist: check the path, the manifest's "
                "'path' column, or the working directory"
            )
        if self.path.is_dir():
            raise SlideOpenError(
                f"'{self.path}' is a folder, not a slide file: pass the slide file itself "
                "(for MRXS the .mrxs file next to its data folder)"
            )
        order = ("openslide", "tiffslide") if backend == "auto" else (backend,)
        errors: list[str] = []
        self._handle: _Handle | None = None
        for name in order:
            try:
                handle = _OPENERS[name](self.path, self._cache_bytes)
            except Exception as exc:  # backends raise many types for broken files
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            try:  # a header can parse while the pixel data is cut off: probe first/last tile
                last = len(handle.obj.level_dimensions) - 1
                lw, lh = handle.obj.level_dimensions[last]
                ds = float(handle.obj.level_downsamples[last])
                for x, y in ((0, 0), (lw - 1, lh - 1)):
                    np.asarray(handle.obj.read_region((int(x * ds), int(y * ds)), last, (1, 1)))
            except Exception as exc:
                errors.append(f"{name}: cannot read pixels: {type(exc).__name__}: {exc}")
                with contextlib.suppress(Exception):
                    handle.obj.close()
                continue
            self._handle = handle
            break
        if self._handle is None:
            raise SlideOpenError(
                f"cannot open slide '{self.path.name}' ({'; '.join(errors)}). The file may be "
                "truncated, corrupt or in an unsupported format: re-copy or re-export it, convert "
                "it to a tiled pyramidal TIFF, or exclude it from the manifest"
            )
        h = self._handle.obj
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple(
            (int(w), int(hh)) for w, hh in h.level_dimensions
        )
        self.level_downsamples: tuple[float, ...] = tuple(float(d) for d in h.level_downsamples)
        self.mpp_source: str
        self._mpp = self._resolve_mpp(mpp_override)
        if self._mpp is None and mpp_fallback is not None:
            self._mpp = self._resolve_mpp(mpp_fallback)
            self.mpp_source = "fallback"

    # -- metadata -----------------------------------------------------------------------------
    def _resolve_mpp(self, override: float | None) -> MicronsPerPixel | None:
        if override is not None:
            self.mpp_source = "override"
            try:
                return check_mpp(override, what=f"µm/px override for '{self.path.name}'")
            except ValueError as exc:
                msg = f"{exc}: pass the slide's real µm/px (e.g. 0.25 or 0.5)"
                raise MissingMppError(msg) from exc
        assert self._handle is not None
        props = self._handle.obj.properties
        values = []
        for key in self._handle.mpp_keys:
            raw = props.get(key)
            if raw in (None, ""):
                continue
            try:
                values.append(float(raw))
            except (TypeError, ValueError):
                continue
        self.mpp_source = "metadata"
        if not values or not all(math.isfinite(v) for v in values):
            return None
        try:
            return check_mpp(sum(values) / len(values), what="metadata µm/px")
        except ValueError:
            return None

    @property
    def slide_id(self) -> str:
        """Slide id derived from the file name (without extension)."""
        return self.path.stem

    @property
    def backend(self) -> str:
        """Name of the backend library that reads this slide."""
        assert self._handle is not None
        return self._handle.name

    @property
    def backend_version(self) -> str:
        """Versions of the backend library (recorded in feature files)."""
        assert self._handle is not None
        return self._handle.version

    @property
    def dimensions_px0(self) -> tuple[int, int]:
        """(width, height) of level 0 in pixels."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_dimensions)

    @property
    def has_mpp(self) -> bool:
        """Whether µm/px is known (from metadata or an override)."""
        return self._mpp is not None

    @property
    def mpp(self) -> MicronsPerPixel:
        """Level-0 resolution in µm/px; raises :class:`MissingMppError` when unknown."""
        if self._mpp is None:
            raise MissingMppError(
                f"slide '{self.path.name}' has no µm/px in its metadata: pass --mpp 0.5 (or the "
                "scanner's value) on the command line, add an 'mpp' column to the manifest, or "
                "call open_slide(path, mpp_override=...)"
            )
        return self._mpp

    def safe_metadata(self) -> dict[str, Any]:
        """Non-identifying metadata that may be written to outputs (no raw vendor properties)."""
        assert self._handle is not None
        props = self._handle.obj.properties
        vendor = props.get("openslide.vendor") or props.get("tiffslide.vendor")
        return {
            "vendor": str(vendor) if vendor else None,
            "level_count": self.level_count,
            "dimensions_px0": list(self.dimensions_px0),
            "mpp": float(self._mpp) if self._mpp is not None else None,
            "mpp_source": self.mpp_source if self._mpp is not None else None,
            "reader": self.backend_version,
        }

    def best_level_for_downsample(self, downsample: float) -> int:
        """Lowest-resolution level whose downsample is <= ``downsample`` (never upsample)."""
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if ds <= downsample * (1 + 1e-6):
                best = i
        return best

    def level_for_mpp(self, target_mpp: float) -> tuple[int, float]:
        """(level to read, level-0 px per output px) for output at ``target_mpp`` µm/px."""
        scale = float(target_mpp) / float(self.mpp)
        return self.best_level_for_downsample(scale), scale

    # -- reading ------------------------------------------------------------------------------
    def read_at_mpp(
        self, location_px0: tuple[int, int], size_px: tuple[int, int], target_mpp: float
    ) -> np.ndarray:
        """Read ``size_px`` (width, height) pixels at ``target_mpp`` µm/px from the best level.

        The region is read from the lowest-resolution level still at least as fine as the
        target, then resized; e.g. a 224 px tile at 0.5 µm/px on a 0.25 µm/px slide.
        """
        level, scale = self.level_for_mpp(target_mpp)
        ds = self.level_downsamples[level]
        w, h = int(size_px[0]), int(size_px[1])
        rw, rh = max(1, round(w * scale / ds)), max(1, round(h * scale / ds))
        region = self.read(location_px0, (rw, rh), level)
        if (rw, rh) != (w, h):
            resized = Image.fromarray(region).resize((w, h), Image.Resampling.BILINEAR)
            region = np.asarray(resized)
        return region

    def _reopen(self, seen_generation: int) -> None:
        """Replace the handle after an error. The old one is not closed here: reads still
        running in other threads hold a reference, and it is freed when the last one ends."""
        with self._lock:
            if self._generation != seen_generation:  # another thread already reopened
                return
            assert self._handle is not None
            self._handle = _OPENERS[self._handle.name](self.path, self._cache_bytes)
            self._generation += 1

    def _read_once(
        self,
        location_px0: tuple[int, int],
        level: int,
        size_px: tuple[int, int],
        handle: _Handle | None = None,
    ):
        h = handle if handle is not None else self._handle
        assert h is not None
        loc = (int(location_px0[0]), int(location_px0[1]))
        if h.name == "tiffslide":
            return h.obj.read_region(loc, level, size_px, as_array=True)
        return np.asarray(h.obj.read_region(loc, level, size_px))

    def read(
        self, location_px0: tuple[int, int], size_px: tuple[int, int], level: int = 0
    ) -> np.ndarray:
        """Read an RGB region: top-left in level-0 px, ``size_px`` = (width, height) at ``level``.

        Returns an (height, width, 3) uint8 array; areas outside the slide are white.
        """
        w, h = int(size_px[0]), int(size_px[1])
        if w <= 0 or h <= 0:
            raise ReadTooLargeError(f"read size must be positive, got {size_px!r}")
        if w * h > self.max_read_px:
            raise ReadTooLargeError(
                f"a single read of {w}x{h} px from '{self.path.name}' exceeds the limit of "
                f"{self.max_read_px:,} px: read tiles instead, read from a lower-resolution level, "
                "or raise max_read_px"
            )
        if not 0 <= level < self.level_count:
            raise SlideReadError(
                f"level {level} does not exist in '{self.path.name}' "
                f"(levels 0-{self.level_count - 1})"
            )
        # parts outside the slide are white for every backend (tiffslide would pad black)
        ds = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        x_l, y_l = location_px0[0] / ds, location_px0[1] / ds
        left, top = max(0, -round(x_l)), max(0, -round(y_l))
        right = min(w, lw - round(x_l))
        bottom = min(h, lh - round(y_l))
        if right <= left or bottom <= top:
            return np.full((h, w, 3), 255, np.uint8)
        if (left, top, right, bottom) != (0, 0, w, h):
            inner = self.read(
                (location_px0[0] + round(left * ds), location_px0[1] + round(top * ds)),
                (right - left, bottom - top),
                level,
            )
            out = np.full((h, w, 3), 255, np.uint8)
            out[top:bottom, left:right] = inner
            return out
        gen = self._generation
        try:
            return _to_rgb(self._read_once(location_px0, level, (w, h)))
        except Exception as exc:  # reopen the handle: OpenSlide poisons it after one error
            last: Exception = exc
        try:
            self._reopen(gen)
            # Retry on a private fresh handle: the first failure may come from another thread's
            # corrupt tile poisoning the shared handle, and only a region that fails on a clean
            # handle of its own is unreadable.
            assert self._handle is not None
            private = _OPENERS[self._handle.name](self.path, self._cache_bytes)
            try:
                return _to_rgb(self._read_once(location_px0, level, (w, h), private))
            finally:
                private.obj.close()
        except Exception as exc:
            last = exc
        raise SlideReadError(
            f"cannot read {w}x{h} px at level {level}, level-0 position {tuple(location_px0)} of "
            f"slide '{self.path.name}': {type(last).__name__}: {last}. The file is probably "
            "corrupt there: re-copy or re-scan the slide, or let the pipeline skip unreadable tiles"
        ) from last

    def thumbnail(self, max_px: int = 2048) -> np.ndarray:
        """RGB thumbnail whose longer side is at most ``max_px``; read strip by strip (bounded)."""
        W, H = self.dimensions_px0
        ds = max(W, H) / float(max_px)
        ds = max(ds, 1.0)
        out_w, out_h = max(1, round(W / ds)), max(1, round(H / ds))
        level = self.best_level_for_downsample(ds)
        lw, lh = self.level_dimensions[level]
        lds = self.level_downsamples[level]
        if lw * lh > MAX_THUMBNAIL_SOURCE_PX:
            raise ReadTooLargeError(
                f"slide '{self.path.name}' has no pyramid level small enough for a thumbnail "
                f"(smallest usable: {lw}x{lh} px): convert it to a pyramidal TIFF (e.g. with "
                "vips tiffsave --pyramid --tile), or check that the file is not damaged"
            )
        factor = max(1, int(ds / lds))  # box-average what is read, then resize exactly
        img = Image.fromarray(self.read_level_downsampled(level, factor))
        return np.asarray(img.resize((out_w, out_h), Image.Resampling.BOX))

    def read_level_downsampled(self, level: int, factor: int = 1) -> np.ndarray:
        """All of ``level``, box-averaged by an integer ``factor``, read strip by strip.

        Memory stays bounded by one strip plus the output (never a full level 0). The output is
        ``ceil(width / factor)`` x ``ceil(height / factor)``. JPEG-tiled TIFF levels are decoded
        at 1/2-1/8 scale by libjpeg (checked on one tile against a normal read) when the factor
        allows. Unreadable blocks come back white and are counted.
        """
        f = max(1, int(factor))
        lw, lh = self.level_dimensions[level]
        scaled = self._read_dct_scaled(level, f)
        if scaled is not None:
            return scaled
        ow, oh = -(-lw // f), -(-lh // f)
        if ow * oh * 3 > 4 * self.max_read_px:
            raise ReadTooLargeError(
                f"a {ow}x{oh} px image of level {level} of '{self.path.name}' is too large: "
                "use a coarser mask resolution, or convert the slide to a pyramidal TIFF"
            )
        lds = self.level_downsamples[level]
        rows = max(1, self.max_read_px // max(lw, 1) // 2 // f)  # output rows per strip
        out = np.empty((oh, ow, 3), np.uint8)
        for oy in range(0, oh, rows):
            n = min(rows, oh - oy)
            y, hh = oy * f, min(n * f, lh - oy * f)
            strip = self._read_tolerant((0, round(y * lds)), (lw, hh), level)
            if f > 1:  # box average (the last partial box averages what is there)
                strip = np.asarray(Image.fromarray(strip).reduce(f))
            out[oy : oy + n] = strip[:n, :ow]
        return out

    def _read_dct_scaled(self, level: int, factor: int) -> np.ndarray | None:
        """The level box-averaged by ``factor`` via JPEG DCT scaling, or None (not possible)."""
        from metastat.slides.jpegscale import read_scaled, scale_for

        scale = scale_for(factor)
        ds = self.level_downsamples[level]

        def reference(x: int, y: int, w: int, h: int) -> np.ndarray:
            return self.read((round(x * ds), round(y * ds)), (w, h), level)

        got = read_scaled(self.path, self.level_dimensions[level], scale, reference)
        if got is None:
            return None
        img, bad = got
        self.unreadable_blocks += bad
        lw, lh = self.level_dimensions[level]
        size = (-(-lw // factor), -(-lh // factor))
        if (img.shape[1], img.shape[0]) != size:  # the rest of the factor: box filter
            img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BOX))
        return img

    def _read_tolerant(
        self, location_px0: tuple[int, int], size_px: tuple[int, int], level: int, block: int = 256
    ) -> np.ndarray:
        """Like :meth:`read`, but unreadable blocks (corrupt tiles) come back white."""
        try:
            return self.read(location_px0, size_px, level)
        except SlideReadError:
            pass
        w, h = size_px
        ds = self.level_downsamples[level]
        out = np.full((h, w, 3), 255, np.uint8)
        for by in range(0, h, block):
            for bx in range(0, w, block):
                bw, bh = min(block, w - bx), min(block, h - by)
                loc = (location_px0[0] + round(bx * ds), location_px0[1] + round(by * ds))
                try:
                    out[by : by + bh, bx : bx + bw] = self.read(loc, (bw, bh), level)
                except SlideReadError:
                    self.unreadable_blocks += 1
        return out

    def close(self) -> None:
        """Release the backend handle."""
        with self._lock:
            if self._handle is not None:
                try:
                    self._handle.obj.close()
                finally:
                    self._handle = None

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SlideReader({self.path.name!r}, backend={self.backend!r}, "
            f"dimensions_px0={self.dimensions_px0}, mpp={self._mpp})"
        )


def open_slide(
    path: str | os.PathLike[str],
    mpp_override: float | None = None,
    *,
    mpp_fallback: float | None = None,
    backend: Backend = "auto",
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    max_read_px: int = DEFAULT_MAX_READ_PX,
) -> SlideReader:
    """Open a whole-slide image (OpenSlide formats; tiffslide as fallback).

    ``mpp_override`` replaces the metadata's µm/px; ``mpp_fallback`` is used only when the
    metadata has none.
    """
    return SlideReader(
        path,
        mpp_override=mpp_override,
        mpp_fallback=mpp_fallback,
        backend=backend,
        cache_bytes=cache_bytes,
        max_read_px=max_read_px,
    )


@contextmanager
def opened(path: str | os.PathLike[str], **kwargs: Any) -> Iterator[SlideReader]:
    """Context manager around :func:`open_slide`."""
    reader = open_slide(path, **kwargs)
    try:
        yield reader
    finally:
        reader.close()
