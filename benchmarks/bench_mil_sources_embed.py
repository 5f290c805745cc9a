"""Cut, label and embed the real H&E tiles of the held-out-source MIL benchmark (run once).

Sources (see src/metastat/mil/data/PROVENANCE.md):

- ``carcinoma``: the 1000 px H&E carcinoma region ``images/he_tumour_region_1000px.png``
  (= tiatoolbox 2.1.3's ``data/target_image.png``); every tissue tile labelled tumour.
- ``hgsc_nest`` / ``hgsc_stroma``: the two 1500 px H&E images of the histolytics 0.3.0 wheel
  (ovarian high-grade serous carcinoma: a tumour nest, a stromal region), labelled from the
  wheel's per-nucleus class polygons: tumour if >= 3 neoplastic nuclei lie in the tile,
  non-tumour if no neoplastic nucleus lies within the tile grown by 32 px, else dropped.
- ``cmu1_skin``: tissue of OpenSlide's CMU-1-Small-Region slide (skin, no tumour), non-tumour.

Each image is split at its midpoint (along its longer side) into regions 0 and 1; tiles that
cross the line are dropped, so no pixel is shared between regions. Tiles are embedded with the
default encoder (EfficientNet-Lite0, ImageNet) as they are (``none``), after Macenko and Reinhard
normalisation to the CRC-VAL-HE-7K normal-mucosa tile (used only as the stain reference), and
once more after a seeded HED stain jitter (``none+hed``, for training-time augmentation).
Stored fp16 in ``src/metastat/mil/data/histo_tiles.npz``.

Usage: python benchmarks/bench_mil_sources_embed.py --histolytics DIR [--shared ../shared/data]
(DIR: the unpacked wheel's ``histolytics/data``; ``pip download --no-deps histolytics==0.3.0``).
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from metastat.slides import open_slide
from metastat.slides.encoders import create_encoder
from metastat.slides.stain import HEDJitter, create_stain_normaliser, stained_fraction
from metastat.slides.tissue import detect_tissue_rgb

TILE = 224
MARGIN = 32  # px around a non-tumour tile that must be free of neoplastic nuclei
VARIANTS = ("none", "macenko", "reinhard", "none+hed")


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _wkb_centroid(b: bytes) -> tuple[float, float]:
    """Mean vertex of the exterior ring of a WKB (Multi)Polygon (enough to place a nucleus)."""
    end = "<" if b[0] == 1 else ">"
    kind = struct.unpack_from(end + "I", b, 1)[0] % 1000
    if kind == 6:  # MultiPolygon: use its first polygon
        return _wkb_centroid(b[9:])
    if kind != 3:
        raise ValueError(f"unexpected WKB geometry type {kind}")
    n = struct.unpack_from(end + "I", b, 9)[0]  # points of the first (exterior) ring
    xy = np.frombuffer(b, dtype=end + "f8", count=2 * n, offset=13).reshape(n, 2)
    return float(xy[:-1, 0].mean()), float(xy[:-1, 1].mean())


def nuclei(parquet: Path) -> pd.DataFrame:
    d = pd.read_parquet(parquet)
    xy = np.array([_wkb_centroid(g) for g in d["geometry"]])
    return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "cls": d["class_name"].to_numpy()})


def tissue_mask(img: np.ndarray, mpp: float, ds: int = 8) -> np.ndarray:
    """metastat's tissue mask, computed on an ``ds``-times downsampled copy (fast)."""
    small = detect_tissue_rgb(img[::ds, ::ds], mpp * ds)
    return np.repeat(np.repeat(small, ds, 0), ds, 1)[: img.shape[0], : img.shape[1]]


def grid(img: np.ndarray, mask: np.ndarray, stride: int, min_tissue: float = 0.6) -> pd.DataFrame:
    """Tile boxes on a stride grid with their region (0/1 either side of the midline)."""
    h, w = mask.shape
    along_x = w >= h
    mid = (w if along_x else h) // 2
    rows = []
    for y in range(0, h - TILE + 1, stride):
        for x in range(0, w - TILE + 1, stride):
            lo, hi = (x, x + TILE) if along_x else (y, y + TILE)
            if lo < mid < hi:
                continue  # crosses the midline: would share pixels with the other region
            if mask[y : y + TILE, x : x + TILE].mean() < min_tissue:
                continue
            if stained_fraction(img[y : y + TILE, x : x + TILE]) < 0.3:
                continue
            rows.append({"x": x, "y": y, "region": int(lo >= mid)})
    return pd.DataFrame(rows)


def label_by_nuclei(tiles: pd.DataFrame, nuc: pd.DataFrame) -> np.ndarray:
    """1 tumour, 0 non-tumour, -1 ambiguous (dropped)."""
    neo = nuc[nuc["cls"] == "neoplastic"][["x", "y"]].to_numpy()
    out = []
    for x, y in tiles[["x", "y"]].to_numpy():
        inside = ((neo >= (x, y)) & (neo < (x + TILE, y + TILE))).all(1).sum()
        near = (neo >= (x - MARGIN, y - MARGIN)) & (neo < (x + TILE + MARGIN, y + TILE + MARGIN))
        out.append(1 if inside >= 3 else 0 if not near.all(1).any() else -1)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--histolytics", required=True, help="unpacked wheel's histolytics/data")
    ap.add_argument("--out", default="src/metastat/mil/data/histo_tiles.npz")
    args = ap.parse_args()
    shared, hdir = Path(args.shared), Path(args.histolytics)
    t_start = time.perf_counter()
    parts = []

    def add(source: str, site: str, img: np.ndarray, tiles: pd.DataFrame, label) -> None:
        tiles = tiles.assign(source=source, site=site, label=label)
        tiles = tiles[tiles["label"] >= 0].reset_index(drop=True)
        tiles["pixels"] = [img[y : y + TILE, x : x + TILE] for x, y in tiles[["x", "y"]].values]
        parts.append(tiles)

    carc = _rgb(shared / "images/he_tumour_region_1000px.png")
    add("carcinoma", "carcinoma_skin", carc, grid(carc, tissue_mask(carc, 0.25), 64), 1)
    for source, jpg, pq in (
        ("hgsc_nest", "hgsc_nest.jpg", "hgsc_nest.parquet"),
        ("hgsc_stroma", "hgsc_stromal_he.jpg", "hgsc_stromal_cells.parquet"),
    ):
        img = _rgb(hdir / jpg)
        t = grid(img, tissue_mask(img, 0.25), 112)
        add(source, "hgsc", img, t, label_by_nuclei(t, nuclei(hdir / pq)))
    slide = open_slide(shared / "slides/CMU-1-Small-Region.svs")
    cmu = slide.read((0, 0), slide.dimensions_px0)
    add("cmu1_skin", "carcinoma_skin", cmu, grid(cmu, tissue_mask(cmu, slide.mpp), 112), 0)
    tiles = pd.concat(parts, ignore_index=True)
    pixels = np.stack(tiles.pop("pixels").to_list())
    print(tiles.groupby(["source", "region", "label"]).size().to_string(), flush=True)

    ref = _rgb(shared / "images/crc_normal_mucosa_tile.tif")
    norms = {n: create_stain_normaliser(n, ref) for n in ("none", "macenko", "reinhard")}
    enc = create_encoder("efficientnet_lite0", device="cpu")
    rng = np.random.default_rng(2026)
    jitter = HEDJitter()

    def embed(px: np.ndarray) -> np.ndarray:
        return np.concatenate([enc.encode(px[i : i + 32]) for i in range(0, len(px), 32)])

    feats, t0 = {}, time.perf_counter()
    for v in VARIANTS:
        px = jitter.batch(pixels, rng) if v == "none+hed" else norms[v].normalise_batch(pixels)
        feats[v] = embed(px).astype(np.float16)
        print(f"{v}: {feats[v].shape} in {time.perf_counter() - t0:.0f} s", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ids = [f"{s}:{x}:{y}" for s, x, y in tiles[["source", "x", "y"]].values]
    stain = {v: norms[v.split("+")[0]].feature_attrs() for v in VARIANTS}
    stain["none+hed"]["augmentation"] = json.dumps({"hed_jitter": vars(jitter) | {"seed": 2026}})
    np.savez_compressed(
        out,
        **{f"features/{v}": f for v, f in feats.items()},
        tile_id=np.array(ids),
        source=tiles["source"].to_numpy(str),
        site=tiles["site"].to_numpy(str),
        label=tiles["label"].to_numpy(np.int8),
        region=tiles["region"].to_numpy(np.int8),
        box=np.c_[tiles[["x", "y"]].to_numpy(), np.full((len(tiles), 2), TILE)].astype(np.int32),
        encoder=np.array(enc.name),
        encoder_version=np.array(enc.spec.version),
        stain=np.array(json.dumps(stain, sort_keys=True)),
    )
    print(
        f"{len(tiles)} tiles x {len(VARIANTS)} variants -> {out} "
        f"({out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t_start:.0f} s"
    )


if __name__ == "__main__":
    main()
