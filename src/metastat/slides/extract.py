"""Tile reading overlapped with the forward pass: threaded, batched, bounded prefetch."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from metastat.slides.encoders import TileEncoder
from metastat.slides.errors import SlideReadError
from metastat.slides.reader import SlideReader
from metastat.slides.tiling import TileGrid


@dataclass(frozen=True)
class TileBatch:
    """Tiles ``start:start+len`` of a grid; ``ok`` is False where the read failed."""

    start: int
    tiles: np.ndarray  # (B, S, S, 3) uint8
    ok: np.ndarray  # (B,) bool


def read_tile(slide: SlideReader, grid: TileGrid, index: int) -> np.ndarray:
    """Read tile ``index`` of ``grid`` at the grid's resolution (best level, then resized)."""
    x, y = grid.coords_px0[index]
    size = (grid.tile_size_px, grid.tile_size_px)
    return slide.read_at_mpp((int(x), int(y)), size, grid.tile_size_um / grid.tile_size_px)


def _read_batch(slide: SlideReader, grid: TileGrid, start: int, stop: int) -> TileBatch:
    s = grid.tile_size_px
    tiles = np.empty((stop - start, s, s, 3), np.uint8)
    ok = np.ones(stop - start, bool)
    for j, i in enumerate(range(start, stop)):
        try:
            tiles[j] = read_tile(slide, grid, i)
        except SlideReadError:
            tiles[j] = 255
            ok[j] = False
    return TileBatch(start, tiles, ok)


def iter_batches(
    slide: SlideReader,
    grid: TileGrid,
    *,
    batch_size: int = 64,
    threads: int = 2,
    prefetch: int = 2,
) -> Iterator[TileBatch]:
    """Yield tile batches in grid order; up to ``prefetch`` batches are read ahead in threads.

    Backend decoders release the GIL, so reading proceeds while the caller runs the model.
    Memory is bounded by ``(prefetch + threads) * batch_size`` tiles.
    """
    n = len(grid)
    starts = list(range(0, n, batch_size))
    if not starts:
        return
    ahead = max(1, prefetch)
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="tile-read") as pool:
        pending: deque[Future[TileBatch]] = deque()
        it = iter(starts)
        for st in it:
            pending.append(pool.submit(_read_batch, slide, grid, st, min(st + batch_size, n)))
            if len(pending) >= ahead:
                break
        while pending:
            batch = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_read_batch, slide, grid, nxt, min(nxt + batch_size, n)))
            yield batch


def embed_grid(
    slide: SlideReader,
    grid: TileGrid,
    encoder: TileEncoder,
    *,
    batch_size: int = 64,
    threads: int = 2,
    prefetch: int = 2,
    progress: object | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed every tile of ``grid``; returns (features float16 (n, dim), ok mask (n,))."""
    n = len(grid)
    feats = np.zeros((n, encoder.embedding_dim), np.float16)
    ok = np.zeros(n, bool)
    for batch in iter_batches(
        slide, grid, batch_size=batch_size, threads=threads, prefetch=prefetch
    ):
        stop = batch.start + len(batch.ok)
        feats[batch.start : stop] = encoder.encode(batch.tiles)
        ok[batch.start : stop] = batch.ok
        if progress is not None:
            progress.update(len(batch.ok))  # type: ignore[attr-defined]
    return feats, ok
