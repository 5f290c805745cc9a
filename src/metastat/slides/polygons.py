"""Tissue as polygons with holes, in level-0 pixels, written as GeoJSON that QuPath opens."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.measure import find_contours

from metastat.atomic import atomic_write
from metastat.slides.tissue import TissueMask

Ring = list[list[float]]


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def simplify(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker simplification of an open or closed polyline (endpoints kept)."""
    keep = np.zeros(len(points), bool)
    keep[[0, -1]] = True
    stack = [(0, len(points) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        seg = points[b] - points[a]
        rel = points[a + 1 : b] - points[a]
        norm = float(np.hypot(*seg))
        if norm == 0:
            d = np.hypot(rel[:, 0], rel[:, 1])
        else:
            d = np.abs(seg[0] * rel[:, 1] - seg[1] * rel[:, 0]) / norm
        i = int(np.argmax(d))
        if d[i] > tolerance:
            keep[a + 1 + i] = True
            stack += [(a, a + 1 + i), (a + 1 + i, b)]
    return points[keep]


def _rings(component: np.ndarray, tolerance: float) -> list[np.ndarray]:
    """Closed (x, y) rings around one padded component: exterior first, holes after."""
    contours = find_contours(component.astype(np.uint8), 0.5, fully_connected="high")
    rings = []
    for c in contours:
        if len(c) < 4:
            continue
        ring = simplify(c, tolerance)[:, ::-1]  # (row, col) -> (x, y)
        if len(ring) >= 4 and abs(_signed_area(ring)) > 0:
            rings.append(ring)
    rings.sort(key=lambda r: -abs(_signed_area(r)))
    return rings


def tissue_polygons(
    mask: TissueMask,
    *,
    tolerance_px: float = 0.75,
    size_px0: tuple[int, int] | None = None,
) -> list[list[Ring]]:
    """One polygon per connected tissue region: ``[exterior, hole, hole, ...]`` in level-0 px.

    Exteriors wind counter-clockwise and holes clockwise (x right, y up, as RFC 7946 asks);
    ``tolerance_px`` (mask pixels) simplifies the outlines; ``size_px0`` clips to the slide.
    """
    hi = np.array(size_px0 if size_px0 is not None else (np.inf, np.inf), np.float64)
    labels, _ = ndimage.label(mask.mask, structure=np.ones((3, 3), bool))
    sx, sy = mask.downsample
    polygons: list[list[Ring]] = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = np.pad(labels[sl] == i, 1)
        rings = _rings(comp, tolerance_px)
        if not rings:
            continue
        off = np.array([sl[1].start - 1 + 0.5, sl[0].start - 1 + 0.5])
        out: list[Ring] = []
        for k, ring in enumerate(rings):
            xy = np.clip((ring + off) * np.array([sx, sy]), 0, hi)
            ccw = _signed_area(xy * np.array([1.0, -1.0])) > 0  # y down -> y up
            if ccw != (k == 0):
                xy = xy[::-1]
            out.append(np.round(xy, 1).tolist())
        polygons.append(out)
    return polygons


def tissue_geojson(
    mask: TissueMask, *, slide_id: str, mpp: float, size_px0: tuple[int, int] | None = None
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of tissue annotations (QuPath: File > Import objects)."""
    features = [
        {
            "type": "Feature",
            "id": f"{slide_id}-tissue-{k}",
            "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "Tissue", "color": [0, 170, 0]},
                "name": f"tissue {k}",
                "holes": len(rings) - 1,
            },
        }
        for k, rings in enumerate(tissue_polygons(mask, size_px0=size_px0))
    ]
    return {
        "type": "FeatureCollection",
        "features": features,
        "properties": {"slide_id": slide_id, "mpp": mpp, "units": "level-0 pixels"},
    }


def write_geojson(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write GeoJSON atomically."""
    atomic_write(path, json.dumps(data, separators=(",", ":")))
    return Path(path)
