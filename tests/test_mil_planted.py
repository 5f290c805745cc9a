"""The held-out-source benchmark data: tile identity never crosses a split, bags as designed,
the shipped embeddings match their provenance, and `metastat mil planted` writes a cohort."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from metastat.cli.main import app
from metastat.errors import UnknownNameError
from metastat.mil.bags import read_manifest
from metastat.mil.planted import (
    BagDesign,
    TileSet,
    instance_labels,
    load_tiles,
    make_bags,
    mil_data,
    split_names,
    split_tiles,
)
from metastat.slides.stain import StainNormaliser
from metastat.slides.store import load_bag


@pytest.fixture(scope="module")
def tiles() -> TileSet:
    return load_tiles()


def _pixel_overlap(tiles: TileSet, a: np.ndarray, b: np.ndarray) -> int:
    """Pairs of tiles (one from a, one from b) of the same source that share any pixel."""
    n = 0
    for src in np.unique(tiles.source):
        ba = tiles.box[a[tiles.source[a] == src]]
        bb = tiles.box[b[tiles.source[b] == src]]
        if len(ba) and len(bb):
            ox = (ba[:, None, 0] < bb[None, :, 0] + bb[None, :, 2]) & (
                bb[None, :, 0] < ba[:, None, 0] + ba[:, None, 2]
            )
            oy = (ba[:, None, 1] < bb[None, :, 1] + bb[None, :, 3]) & (
                bb[None, :, 1] < ba[:, None, 1] + ba[:, None, 3]
            )
            n += int((ox & oy).sum())
    return n


def test_shipped_tiles_are_as_documented(tiles: TileSet) -> None:
    assert set(tiles.features) == {"none", "macenko", "reinhard", "none+hed"}
    assert all(f.shape == (len(tiles), 1280) for f in tiles.features.values())
    assert all(np.isfinite(f).all() for f in tiles.features.values())
    assert tiles.encoder == "efficientnet_lite0"
    assert len(set(tiles.tile_id)) == len(tiles)
    assert tiles.sites == ["carcinoma_skin", "hgsc"]
    by_source = pd.crosstab(tiles.source, tiles.label)
    assert by_source.loc["carcinoma", 0] == 0 and by_source.loc["cmu1_skin", 1] == 0
    assert (by_source.loc["hgsc_nest"] > 20).all()
    assert tiles.stain["macenko"]["stain_normaliser"] == "macenko"
    digests = {v: a["stain_params_sha256"] for v, a in tiles.stain.items()}
    assert digests["none"] != digests["macenko"] != digests["reinhard"]
    for attrs in tiles.stain.values():  # the recorded params rebuild the recorded normaliser
        rebuilt = StainNormaliser.from_json(attrs["stain_params"])
        assert rebuilt.digest() == attrs["stain_params_sha256"]
    # normalisation and augmentation both changed the embeddings
    d_mac = np.abs(tiles.features["macenko"] - tiles.features["none"]).mean()
    d_hed = np.abs(tiles.features["none+hed"] - tiles.features["none"]).mean()
    assert d_mac > 0 and d_hed > 0


@pytest.mark.parametrize("split", ["site:hgsc", "site:carcinoma_skin", "spatial"])
def test_no_tile_or_pixel_shared_between_train_and_test(tiles: TileSet, split: str) -> None:
    train, test = split_tiles(tiles, split)
    assert len(train) and len(test) and not set(train) & set(test)
    assert not set(tiles.tile_id[train]) & set(tiles.tile_id[test])
    assert _pixel_overlap(tiles, train, test) == 0
    if split.startswith("site:"):  # a held-out site's sources are never seen in training
        assert not set(tiles.source[train]) & set(tiles.source[test])
    design = BagDesign(n_patients=6, seed=1)
    tr, te = make_bags(tiles, train, design, "tr"), make_bags(tiles, test, design, "te")
    used_tr = np.concatenate(tr.tiles)
    used_te = np.concatenate(te.tiles)
    assert set(used_tr) <= set(train) and set(used_te) <= set(test)
    assert not set(tiles.tile_id[used_tr]) & set(tiles.tile_id[used_te])
    assert not set(tr.patient_ids) & set(te.patient_ids)


def test_pixel_overlap_check_detects_a_shared_tile(tiles: TileSet) -> None:
    train, test = split_tiles(tiles, "spatial")
    assert _pixel_overlap(tiles, train, np.r_[test, train[:1]]) >= 1  # the check has teeth


def test_bags_follow_the_design(tiles: TileSet) -> None:
    train, _ = split_tiles(tiles, "site:carcinoma_skin")
    design = BagDesign(n_patients=10, slides_per_patient=3, witness_rate=(0.05, 0.15), seed=3)
    bags = make_bags(tiles, train, design, "b")
    assert len(bags) == 30 and pd.Series(bags.patient_ids).value_counts().eq(3).all()
    frac = np.array([instance_labels(tiles, bags, i).mean() for i in range(len(bags))])
    assert (frac[bags.labels == 0] == 0).all()  # negatives free of tumour
    assert ((frac[bags.labels == 1] > 0) & (frac[bags.labels == 1] <= 0.2)).all()
    assert all(len(set(t)) == len(t) for t in bags.tiles)  # no tile twice in one slide
    again = make_bags(tiles, train, design, "b")
    assert all(np.array_equal(a, b) for a, b in zip(bags.tiles, again.tiles, strict=True))
    plabel = bags.patient_labels()
    assert (plabel >= bags.labels).all() and pd.Series(plabel).groupby(
        bags.patient_ids
    ).nunique().eq(1).all()


def test_mil_data_augments_training_slides_only(tiles: TileSet) -> None:
    tr_t, te_t = split_tiles(tiles, "spatial")
    design = BagDesign(n_patients=4, seed=0)
    train, test = make_bags(tiles, tr_t, design, "a"), make_bags(tiles, te_t, design, "b")
    plain, _, te = mil_data(tiles, train, test, "none")
    aug, _, _ = mil_data(tiles, train, test, "none", augment="none+hed", seed=0)
    assert len(plain) == len(train) + len(test) and list(te) == list(range(len(train), len(plain)))
    assert not np.array_equal(plain.bag(0), aug.bag(0))
    for u in te:
        np.testing.assert_array_equal(plain.bag(int(u)), aug.bag(int(u)))
    with pytest.raises(UnknownNameError, match="macenko"):
        mil_data(tiles, train, test, "macenco")
    with pytest.raises(UnknownNameError, match="spatial"):
        split_tiles(tiles, "spatail")
    assert split_names(tiles) == ["site:carcinoma_skin", "site:hgsc", "spatial"]


def test_cli_planted_writes_a_labelled_cohort(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["mil", "planted", "--out", str(tmp_path), "--patients", "4", "--stain", "macenko"]
    )
    assert res.exit_code == 0, res.output
    paths = json.loads(res.output)
    train = read_manifest(paths["manifest"])
    held = read_manifest(paths["heldout"])
    assert len(train) == len(held) == 12
    assert set(train["label"]) == {0, 1} and (train["label"] >= train["slide_label"]).all()
    bag = load_bag(held["path"].iloc[0])
    assert bag.dim == 1280 and bag.encoder == "efficientnet_lite0"
    with h5py.File(held["path"].iloc[0]) as h5:
        attrs = dict(h5.attrs)
    assert attrs["stain_normaliser"] == "macenko"
    held_sources = {t.split(":")[0] for t in str(attrs["benchmark_tiles"]).split(",")}
    assert held_sources <= {"hgsc_nest", "hgsc_stroma"}
    bad = CliRunner().invoke(app, ["mil", "planted", "--out", str(tmp_path), "--stain", "vahadane"])
    assert bad.exit_code != 0 and "vahadane" in str(bad.exception)  # main() prints it as one line
