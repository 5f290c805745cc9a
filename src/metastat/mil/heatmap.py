"""Heatmaps: per-tile attention (or attention x gradient) mapped back to slide coordinates.

Outputs for one slide: an overlay PNG on the slide thumbnail (or on a blank coordinate canvas
when no slide file is at hand) with a colour bar, a GeoJSON of scored tiles for QuPath, and the
top-k / bottom-k tiles as image crops with their scores (candidate occult-tumour regions).
Rendering is vectorised: a whole slide takes seconds, not the tens of minutes of patch-wise
re-scoring pipelines.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata

from metastat.atomic import atomic_write
from metastat.mil.bags import check_features, collate
from metastat.mil.checkpoint import Checkpoint

Method = Literal["attention", "attention_x_grad"]


def target_index(ckpt: Checkpoint) -> int:
    """Output explained by default: the positive / last class, or the (first) risk output."""
    return ckpt.head.n_out - 1 if ckpt.head.task != "survival" else 0


def tile_scores(
    ckpt: Checkpoint, features: np.ndarray, method: Method = "attention", target: int | None = None
) -> np.ndarray:
    """One score per tile: the model's attention, or attention x d(target logit)/d(attention).

    Pooling baselines without attention weights use uniform (mean) or tile-logit (max) scores;
    for them and for TransMIL (whose head-averaged attention is not on the gradient path)
    ``attention_x_grad`` falls back to input x gradient summed over features.
    """
    model, k = ckpt.model.eval(), target_index(ckpt) if target is None else target
    x, mask = collate([features])
    if method == "attention":
        with torch.no_grad():
            att = model(x, mask).attention
        return _branch(att, k)[0].numpy().astype(np.float64)
    x.requires_grad_(True)
    with torch.enable_grad():
        out = model(x, mask)
        att = out.attention
        if att.requires_grad:
            att.retain_grad()
        out.logits[0, k].backward()
    if ckpt.name not in {"mean", "max"} and att.grad is not None:
        score = _branch(att * att.grad, k)[0]
    else:  # no differentiable attention (pooling baselines, TransMIL): input x gradient
        assert x.grad is not None
        score = (x * x.grad).sum(-1)[0]
    return score.detach().numpy().astype(np.float64)


def _branch(att: torch.Tensor, k: int) -> torch.Tensor:
    return att[:, min(k, att.shape[1] - 1)] if att.ndim == 3 else att


def percentile_scores(scores: np.ndarray) -> np.ndarray:
    """Scores as percentiles in [0, 1] (what the colour map shows)."""
    return (rankdata(scores) - 1) / max(len(scores) - 1, 1)


def canvas_coords(coords: np.ndarray, tile: int) -> np.ndarray:
    """Coordinates to draw: the real ones, or a square grid when a bag has none (all -1)."""
    if len(coords) and (coords >= 0).all():
        return coords
    side = int(np.ceil(np.sqrt(len(coords))))
    i = np.arange(len(coords))
    return np.stack([i % side, i // side], axis=1).astype(np.int64) * tile


def rasterise(
    coords: np.ndarray,
    tile: int,
    values: np.ndarray,
    size_px0: tuple[int, int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    """Average tile values onto an (h, w) grid covering ``size_px0``; NaN where no tile."""
    h, w = out_hw
    sx, sy = w / size_px0[0], h / size_px0[1]
    acc, cnt = np.zeros((h, w)), np.zeros((h, w))
    x0 = np.clip(np.floor(coords[:, 0] * sx).astype(int), 0, w - 1)
    y0 = np.clip(np.floor(coords[:, 1] * sy).astype(int), 0, h - 1)
    x1 = np.clip(np.ceil((coords[:, 0] + tile) * sx).astype(int), x0 + 1, w)
    y1 = np.clip(np.ceil((coords[:, 1] + tile) * sy).astype(int), y0 + 1, h)
    for a, b, c, d, v in zip(y0, y1, x0, x1, values, strict=True):
        acc[a:b, c:d] += v
        cnt[a:b, c:d] += 1
    with np.errstate(invalid="ignore"):
        return np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan)


def render_png(
    path: Path,
    grid: np.ndarray,
    background: np.ndarray | None,
    title: str,
    label: str,
    alpha: float = 0.5,
) -> None:
    """Overlay ``grid`` (values in [0, 1], NaN = no tile) on ``background`` with a colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = grid.shape
    fig_w = 8.0
    fig, ax = plt.subplots(figsize=(fig_w, fig_w * h / w * 0.9 + 0.6), dpi=120)
    if background is not None:
        ax.imshow(background)
    else:
        ax.imshow(np.full((h, w, 3), 255, np.uint8))
        alpha = 1.0
    im = ax.imshow(
        np.ma.masked_invalid(grid), cmap="jet", vmin=0, vmax=1, alpha=alpha, interpolation="nearest"
    )
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label=label)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def geojson(
    coords: np.ndarray, tile: int, scores: np.ndarray, pct: np.ndarray, slide_id: str
) -> dict[str, Any]:
    """QuPath-readable FeatureCollection: one detection polygon per tile (level-0 px)."""
    feats = []
    order = np.argsort(-scores)
    rank = np.empty(len(scores), int)
    rank[order] = np.arange(1, len(scores) + 1)
    for (x, y), s, p, r in zip(coords.tolist(), scores, pct, rank, strict=True):
        ring = [[x, y], [x + tile, y], [x + tile, y + tile], [x, y + tile], [x, y]]
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "detection",
                    "name": f"rank {r}",
                    "classification": {"name": "MIL attention", "color": [255, 64, 0]},
                    "measurements": {"score": float(s), "percentile": float(p), "rank": int(r)},
                },
            }
        )
    return {"type": "FeatureCollection", "features": feats, "properties": {"slide_id": slide_id}}


@dataclass
class HeatmapResult:
    """Paths written and timing for one slide."""

    slide_id: str
    png: Path
    geojson: Path
    tiles_csv: Path
    crops: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    prob: float = float("nan")


def slide_heatmap(
    ckpt: Checkpoint,
    *,
    slide_id: str,
    features: np.ndarray,
    coords: np.ndarray,
    tile_size_px0: int | None,
    out_dir: str | Path,
    slide_path: str | Path | None = None,
    method: Method = "attention",
    k: int = 8,
    encoder: str | None = None,
    where: str = "",
) -> HeatmapResult:
    """Score every tile of one slide and write PNG, GeoJSON, tile table and top/bottom crops."""
    from metastat.mil.infer import outputs, predict_logits

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = check_features(features, slide_id, where)
    ckpt.check_bag(slide_id, x.shape[1], encoder, where)
    scores = tile_scores(ckpt, x, method)
    prob = float(outputs(predict_logits(ckpt.model, [x]), ckpt.head)["prob"].iloc[0])
    pct = percentile_scores(scores)
    tile = int(tile_size_px0 or _infer_tile(coords))
    xy = canvas_coords(np.asarray(coords, np.int64), tile)
    reader, thumb, draw = None, None, xy
    if slide_path is not None:
        from metastat.slides import open_slide

        reader = open_slide(slide_path)  # drawing and crops need no µm/px
        size0 = reader.dimensions_px0
        thumb = reader.thumbnail(1600)
        hw = thumb.shape[:2]
    else:  # canvas: the tiles' bounding box (GeoJSON and tables keep level-0 coordinates)
        draw = xy - xy.min(axis=0)
        size0 = (int(draw[:, 0].max()) + tile, int(draw[:, 1].max()) + tile)
        scale = min(1.0, 1600 / max(size0))
        hw = (max(1, round(size0[1] * scale)), max(1, round(size0[0] * scale)))
    grid = rasterise(draw, tile, pct, size0, hw)
    stem = out / slide_id
    label = "attention percentile" if method == "attention" else "attention x gradient pct."
    title = f"{slide_id}: {ckpt.name} {method}, p={prob:.2f}" + (
        "" if reader is not None else " (coordinate canvas, no slide image)"
    )
    png = stem.with_name(f"{slide_id}_heatmap.png")
    render_png(png, grid, thumb, title, label)
    gj = stem.with_name(f"{slide_id}_tiles.geojson")
    atomic_write(gj, json.dumps(geojson(xy, tile, scores, pct, slide_id)))
    table = pd.DataFrame(
        {
            "tile": np.arange(len(scores)),
            "x_px0": xy[:, 0],
            "y_px0": xy[:, 1],
            "score": scores,
            "percentile": pct,
        }
    )
    table["rank"] = table["score"].rank(ascending=False, method="first").astype(int)
    order = np.argsort(-scores)
    kk = min(k, len(scores) // 2)
    picks = [("top", r + 1, int(i)) for r, i in enumerate(order[:kk])] + [
        ("bottom", r + 1, int(i)) for r, i in enumerate(order[::-1][:kk])
    ]
    crops = []
    table["crop"] = ""
    if reader is not None:
        crop_dir = out / f"{slide_id}_tiles"
        crop_dir.mkdir(exist_ok=True)
        from PIL import Image

        for side, r, i in picks:
            img = reader.read((int(xy[i, 0]), int(xy[i, 1])), (tile, tile))
            p = crop_dir / f"{side}{r:02d}_x{xy[i, 0]}_y{xy[i, 1]}_s{scores[i]:.3g}.png"
            Image.fromarray(img).save(p)
            crops.append(p)
            table.loc[i, "crop"] = str(p)
        reader.close()
    table["selected"] = ""
    for side, _, i in picks:
        table.loc[i, "selected"] = side
    csv = stem.with_name(f"{slide_id}_tiles.csv")
    atomic_write(csv, table.sort_values("rank").to_csv(index=False))
    return HeatmapResult(slide_id, png, gj, csv, crops, time.perf_counter() - t0, prob)


def _infer_tile(coords: np.ndarray) -> int:
    """Tile side from the smallest positive step between coordinates (default 256)."""
    steps = [np.diff(np.unique(coords[:, a])) for a in (0, 1)]
    pos = np.concatenate([s[s > 0] for s in steps]) if len(coords) > 1 else np.array([])
    return int(pos.min()) if pos.size else 256
