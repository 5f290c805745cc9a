"""Stain normalisation in ``slides process``: fitted once on a reference tile, applied to every
tile before the encoder, recorded in the settings fingerprint and in each feature file (CMU-1)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from pydantic import ValidationError

from metastat.slides import load_bag, open_slide
from metastat.slides.encoders import create_encoder
from metastat.slides.extract import read_tile
from metastat.slides.pipeline import ProcessConfig, SlideJob, process_slide
from metastat.slides.runner import run_cohort
from metastat.slides.stain import StainNormaliser, fit_stain_reference
from metastat.slides.tiling import TilingConfig, plan_tiles
from metastat.slides.tissue import detect_tissue
from tests.conftest import run_main as _main

DATA = Path(__file__).parent / "data"
SLIDE = DATA / "slides" / "CMU-1-Small-Region.svs"
REFERENCE = DATA / "tiles" / "liver-level2-10907-7808-11707-8608.png"  # real H&E, 99 % stained
BACKGROUND = DATA / "tiles" / "no-tissue.png"
JOB = SlideJob(SLIDE, "CMU-1-Small-Region")


@pytest.fixture(scope="module")
def plain(tiny_weights: Path) -> ProcessConfig:
    return ProcessConfig(
        tiling=TilingConfig(tile_size_px=64, target_mpp=2.0, min_tissue_fraction=0.5),
        encoder="timm:test_efficientnet",
        encoder_weights=str(tiny_weights),
        encoder_input_px=64,
        device="cpu",
        batch_size=32,
        torch_threads=1,
        qc=False,
    )


@pytest.fixture(scope="module")
def macenko() -> StainNormaliser:
    return fit_stain_reference("macenko", REFERENCE)


def _attrs(path: str | None) -> dict[str, object]:
    assert path is not None
    with h5py.File(path) as h5:
        return dict(h5.attrs)


def test_stain_is_applied_before_the_encoder_and_recorded(
    plain: ProcessConfig, macenko: StainNormaliser, tmp_path: Path
) -> None:
    stained = plain.model_copy(update={"stain": macenko.to_json()})
    assert stained.fingerprint() != plain.fingerprint()
    reinhard = ProcessConfig(
        **{**plain.model_dump(), "stain": fit_stain_reference("reinhard", REFERENCE)}
    )
    assert len({plain.fingerprint(), stained.fingerprint(), reinhard.fingerprint()}) == 3
    # "none" is no normalisation: the same settings as before the option existed
    off = ProcessConfig(**{**plain.model_dump(), "stain": StainNormaliser("none", {})})
    assert off.stain is None and off.fingerprint() == plain.fingerprint()

    a = process_slide(JOB, tmp_path / "plain", plain)
    b = process_slide(JOB, tmp_path / "macenko", stained)
    assert (a.status, b.status) == ("done", "done") and a.n_tiles == b.n_tiles > 20, (a, b)
    attrs = _attrs(b.feature_file)
    assert attrs["stain_normaliser"] == "macenko"
    assert attrs["stain_params_sha256"] == macenko.digest()
    assert json.loads(str(attrs["stain_params"])) == json.loads(macenko.to_json())
    assert attrs["fingerprint"] == stained.fingerprint()
    assert _attrs(a.feature_file)["stain_normaliser"] == "none"
    assert a.feature_file and b.feature_file
    bag_a, bag_b = load_bag(a.feature_file), load_bag(b.feature_file)
    np.testing.assert_array_equal(bag_a.coords_px0, bag_b.coords_px0)
    scale = np.abs(bag_a.features).mean()  # the tiny random encoder's outputs are small
    assert np.abs(bag_a.features - bag_b.features).mean() > 0.1 * scale  # the stain changed them

    # each stored feature is the encoder's output on the *normalised* tile at its coordinate
    enc = create_encoder(
        plain.encoder, weights=plain.encoder_weights, device="cpu", input_size_px=64
    )
    with open_slide(SLIDE) as s:
        grid = plan_tiles(s, detect_tissue(s, plain.tissue), plain.tiling)
        idx = [0, len(grid) // 2, len(grid) - 1]
        tiles = np.stack([read_tile(s, grid, i) for i in idx])
    np.testing.assert_array_equal(bag_b.coords_px0[idx], grid.coords_px0[idx])
    expected, raw = enc.encode(macenko.normalise_batch(tiles)), enc.encode(tiles)
    np.testing.assert_allclose(bag_b.features[idx], expected, rtol=2e-2, atol=2e-2 * scale)
    np.testing.assert_allclose(bag_a.features[idx], raw, rtol=2e-2, atol=2e-2 * scale)
    assert np.abs(expected - raw).mean() > 0.1 * scale

    again = process_slide(JOB, tmp_path / "macenko", stained)
    assert again.resumed and again.n_tiles == b.n_tiles  # same settings: skipped
    redo = process_slide(JOB, tmp_path / "plain", stained)
    assert not redo.resumed and redo.status == "done"  # the stain changed: recomputed
    assert _attrs(redo.feature_file)["stain_params_sha256"] == macenko.digest()

    # a worker process gets the fitted normaliser as JSON inside the config: same features
    summary = run_cohort([JOB], tmp_path / "pool", stained, workers=1, progress=False)
    assert summary.done == 1
    pooled = load_bag(tmp_path / "pool" / "features" / "CMU-1-Small-Region.h5")
    np.testing.assert_allclose(pooled.features, bag_b.features, rtol=1e-2, atol=1e-2 * scale)
    saved = json.loads((tmp_path / "pool" / "run_summary.json").read_text())
    assert StainNormaliser.from_json(saved["config"]["stain"]).digest() == macenko.digest()


def test_config_refuses_an_unfitted_or_broken_normaliser(plain: ProcessConfig) -> None:
    with pytest.raises(ValidationError, match="not fitted"):
        ProcessConfig.model_validate({"stain": StainNormaliser("macenko")})
    with pytest.raises(ValidationError, match="not a fitted stain normaliser"):
        ProcessConfig(stain="{not json")
    with pytest.raises(ValidationError, match="unknown stain normaliser 'vahadane'"):
        ProcessConfig(stain=json.dumps({"name": "vahadane", "params": {}}))


def test_cli_stain_option(
    tiny_weights: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "run"
    base = ["slides", "process", str(SLIDE), "--out", str(out), "--workers", "0"]
    fast = ["--encoder", "timm:test_efficientnet", "--encoder-weights", str(tiny_weights)]
    fast += ["--tile-size-px", "64", "--target-mpp", "2", "--no-qc", "--no-progress"]
    argv = [*base, *fast, "--stain", "reinhard", "--stain-reference", str(REFERENCE)]
    assert _main(argv, capsys, monkeypatch)[0] == 0
    attrs = _attrs(str(out / "features" / "CMU-1-Small-Region.h5"))
    assert attrs["stain_normaliser"] == "reinhard"
    assert attrs["stain_params_sha256"] == fit_stain_reference("reinhard", REFERENCE).digest()
    assert _main(argv, capsys, monkeypatch)[0] == 0  # the same settings again: skipped
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["resumed"] == 1 and summary["done"] == 1

    bad_image = tmp_path / "tile.png"
    bad_image.write_text("not an image")
    for extra, message in [
        (["--stain", "macenko"], "--stain macenko needs --stain-reference IMAGE"),
        (["--stain-reference", str(REFERENCE)], "needs --stain macenko or --stain reinhard"),
        (["--stain", "macenco", "--stain-reference", str(REFERENCE)], "Did you mean 'macenko'"),
        (["--stain", "macenko", "--stain-reference", str(tmp_path / "x.png")], "not found"),
        (["--stain", "macenko", "--stain-reference", str(bad_image)], "not a readable image"),
        (["--stain", "macenko", "--stain-reference", str(BACKGROUND)], "almost no stained"),
    ]:
        code, err = _main([*base, *extra], capsys, monkeypatch)
        assert code == 2 and err.startswith("error: ") and message in err, err
        assert err.count("\n") == 1, err
