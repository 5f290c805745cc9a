"""Stain normalisation (Macenko, Reinhard) and HED augmentation on real H&E tiles (CMU-1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.color import rgb2lab

from metastat.errors import InputError, UnknownNameError
from metastat.slides import open_slide
from metastat.slides.stain import (
    STAIN_NORMALISERS,
    HEDJitter,
    StainNormaliser,
    create_stain_normaliser,
)

SLIDE = Path(__file__).parent / "data" / "slides" / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="module")
def tiles() -> dict[str, np.ndarray]:
    """Real tissue tiles of CMU-1 (dermis / epidermis) and a background tile."""
    s = open_slide(SLIDE)
    return {
        "ref": s.read((800, 1200), (448, 448)),
        "tile": s.read((1000, 1800), (224, 224)),
        "background": s.read((50, 50), (224, 224)),
    }


def _lab_mean(img: np.ndarray) -> np.ndarray:
    return rgb2lab(img).reshape(-1, 3).mean(0)


# Ruifrok & Johnston's H and E optical-density vectors: a different "lab's" stain
RUIFROK = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]]).T
RUIFROK = RUIFROK / np.linalg.norm(RUIFROK, axis=0)


def _restain(tile: np.ndarray, how: str) -> np.ndarray:
    if how == "hed":  # colour shift of every channel (scanner / stain batch)
        return HEDJitter(sigma=0.3, bias=0.03)(tile, np.random.default_rng(4))
    lab = StainNormaliser(  # same tissue, re-mixed with other stain vectors
        "macenko", {"stain_matrix": RUIFROK.tolist(), "max_conc": [1.4, 0.6]}
    )
    return lab.normalise(tile)


@pytest.mark.parametrize(("name", "how"), [("macenko", "vectors"), ("reinhard", "hed")])
def test_normalised_tiles_are_stain_invariant(
    tiles: dict[str, np.ndarray], name: str, how: str
) -> None:
    """A tile and its re-stained copy look alike once normalised to the same reference."""
    tile = tiles["tile"]
    shifted = _restain(tile, how)
    norm = create_stain_normaliser(name, tiles["ref"])
    a, b = norm.normalise(tile), norm.normalise(shifted)
    assert b.dtype == np.uint8 and b.shape == tile.shape
    before = np.linalg.norm(_lab_mean(shifted) - _lab_mean(tile))
    after = np.linalg.norm(_lab_mean(b) - _lab_mean(a))
    assert before > 5 and after < 0.5 * before, (before, after)
    assert np.abs(b.astype(int) - a).mean() < 0.5 * np.abs(shifted.astype(int) - tile).mean()


@pytest.mark.parametrize("name", STAIN_NORMALISERS)
def test_json_round_trip_and_feature_attrs(tiles: dict[str, np.ndarray], name: str) -> None:
    norm = create_stain_normaliser(name, tiles["ref"])
    again = StainNormaliser.from_json(norm.to_json())
    np.testing.assert_array_equal(again.normalise(tiles["tile"]), norm.normalise(tiles["tile"]))
    attrs = norm.feature_attrs()
    assert attrs["stain_normaliser"] == name and len(attrs["stain_params_sha256"]) == 16
    assert json.loads(attrs["stain_params"])["name"] == name
    assert again.digest() == norm.digest()


def test_digest_identifies_the_reference(tiles: dict[str, np.ndarray]) -> None:
    a = create_stain_normaliser("macenko", tiles["ref"])
    b = create_stain_normaliser("macenko", tiles["tile"])
    assert a.digest() != b.digest()
    assert a.params is not None and np.asarray(a.params["stain_matrix"]).shape == (3, 2)


def test_background_and_bad_input(tiles: dict[str, np.ndarray]) -> None:
    norm = create_stain_normaliser("macenko", tiles["ref"])
    bg = tiles["background"]
    np.testing.assert_array_equal(norm.normalise(bg), bg)  # no stain to estimate: unchanged
    with pytest.raises(InputError, match="almost no stained pixels"):
        create_stain_normaliser("macenko", bg)
    with pytest.raises(InputError, match="not fitted"):
        create_stain_normaliser("reinhard").normalise(tiles["tile"])
    with pytest.raises(UnknownNameError, match="macenko"):
        create_stain_normaliser("macenco")
    with pytest.raises(InputError, match="RGB uint8"):
        norm.normalise(tiles["tile"].astype(np.float32))


def test_hed_jitter_is_seeded_and_mild(tiles: dict[str, np.ndarray]) -> None:
    tile = tiles["tile"]
    jit = HEDJitter()
    a = jit(tile, np.random.default_rng(1))
    np.testing.assert_array_equal(a, jit(tile, np.random.default_rng(1)))
    b = jit(tile, np.random.default_rng(2))
    assert not np.array_equal(a, b)
    diff = np.abs(a.astype(int) - tile).mean()
    assert 1 < diff < 20  # changes the stain, keeps the tissue
    still = HEDJitter(sigma=0, bias=0)(tile, np.random.default_rng(0))
    assert np.abs(still.astype(int) - tile).mean() < 2  # colour deconvolution round-trips
    assert jit.batch(np.stack([tile, tile]), np.random.default_rng(0)).shape == (2, *tile.shape)
