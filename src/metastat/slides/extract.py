"""Tile reading overlapped with the forward pass: threaded, batched, bounded prefetch.

Every tile read is checked: an unreadable tile and one whose pixels look like decoder garbage
(:func:`metastat.slides.integrity.implausible`) are counted in a :class:`DecodeLog` and marked
not ok, so they never enter a feature file unnoticed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from metastat.slides.errors import SlideReadError
from metastat.slides.integrity import DecodeLog, implausible
from metastat.slides.reader import SlideReader
from metastat.slides.tiling import TileGrid

if TYPE_CHECKING:
    from metastat.slides.encoders import TileEncoder


@dataclass(frozen=True)
class TileBatch:
    """Tiles ``start:start+len`` of a grid; ``ok`` is False where the read failed or the
    pixels are implausible."""

    start: int
    tiles: np.ndarray  # (B, S, S, 3) uint8
    ok: np.ndarray  # (B,) bool


def read_tile(slide: SlideReader, grid: TileGrid, index: int) -> np.ndarray:
    """Read tile ``index`` of ``grid`` at the grid's resolution (best level, then resized)."""
    x, y = grid.coords_px0[index]
    size = (grid.tile_size_px, grid.tile_size_px)
    return slide.read_at_mpp((int(x), int(y)), size, grid.tile_size_um / grid.tile_size_px)


def _read_batch(
    slide: SlideReader,
    grid: TileGrid,
    start: int,
    stop: int,
    refs: np.ndarray | None,
    log: DecodeLog,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> TileBatch:
    s = grid.tile_size_px
    tiles = np.empty((stop - start, s, s, 3), np.uint8)
    ok = np.ones(stop - start, bool)
    w0, h0 = slide.dimensions_px0
    for j, i in enumerate(range(start, stop)):
        x, y = (int(v) for v in grid.coords_px0[i])
        try:
            tiles[j] = read_tile(slide, grid, i)
        except SlideReadError as exc:
            tiles[j], ok[j] = 255, False
            log.add("unreadable_tiles", f"tile at ({x}, {y}): {str(exc).split(': ', 1)[-1][:120]}")
            continue
        inside = x + grid.tile_size_px0 <= w0 and y + grid.tile_size_px0 <= h0
        ref = refs[i] if refs is not None and inside else None
        why = implausible(tiles[j], ref)
        if why is not None:
            ok[j] = False
            log.add("implausible_tiles", f"tile at ({x}, {y}): {why}")
    if transform is not None:  # e.g. stain normalisation, after the checks on the raw pixels
        tiles = transform(tiles)
    return TileBatch(start, tiles, ok)


def iter_batches(
    slide: SlideReader,
    grid: TileGrid,
    *,
    batch_size: int = 64,
    threads: int = 2,
    prefetch: int = 2,
    references: np.ndarray | None = None,
    log: DecodeLog | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[TileBatch]:
    """Yield tile batches in grid order; up to ``prefetch`` batches are read ahead in threads.

    Backend decoders release the GIL, so reading proceeds while the caller runs the model.
    Memory is bounded by ``(prefetch + threads) * batch_size`` tiles. ``references`` are the
    tiles' cell colours on a lower level (see :func:`~metastat.slides.tiling.reference_colours`).
    ``transform`` maps each batch's pixels (in the reading threads) after they are checked.
    """
    n = len(grid)
    log = log if log is not None else DecodeLog()
    starts = list(range(0, n, batch_size))
    if not starts:
        return
    ahead = max(1, prefetch)
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="tile-read") as pool:

        def submit(st: int) -> Future[TileBatch]:
            return pool.submit(
                _read_batch, slide, grid, st, min(st + batch_size, n), references, log, transform
            )

        pending: deque[Future[TileBatch]] = deque()
        it = iter(starts)
        for st in it:
            pending.append(submit(st))
            if len(pending) >= ahead:
                break
        while pending:
            batch = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(submit(nxt))
            yield batch


def verify_grid(
    slide: SlideReader,
    grid: TileGrid,
    *,
    log: DecodeLog,
    references: np.ndarray | None = None,
    threads: int = 2,
) -> np.ndarray:
    """Read and check every tile of ``grid`` without an encoder; returns the ok mask."""
    ok = np.zeros(len(grid), bool)
    for batch in iter_batches(
        slide, grid, batch_size=32, threads=threads, references=references, log=log
    ):
        ok[batch.start : batch.start + len(batch.ok)] = batch.ok
    return ok


def embed_grid(
    slide: SlideReader,
    grid: TileGrid,
    encoder: TileEncoder,
    *,
    batch_size: int = 64,
    threads: int = 2,
    prefetch: int = 2,
    progress: object | None = None,
    references: np.ndarray | None = None,
    log: DecodeLog | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed every tile of ``grid``; returns (features float16 (n, dim), ok mask (n,))."""
    n = len(grid)
    feats = np.zeros((n, encoder.embedding_dim), np.float16)
    ok = np.zeros(n, bool)
    for batch in iter_batches(
        slide,
        grid,
        batch_size=batch_size,
        threads=threads,
        prefetch=prefetch,
        references=references,
        log=log,
        transform=transform,
    ):
        stop = batch.start + len(batch.ok)
        feats[batch.start : stop] = encoder.encode(batch.tiles)
        ok[batch.start : stop] = batch.ok
        if progress is not None:
            progress.update(len(batch.ok))  # type: ignore[attr-defined]
    return feats, ok
