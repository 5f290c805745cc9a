"""End-to-end slide runs: feature files, re-runs, bad slides, corrupt tiles, PHI, Dask."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from metastat.slides import list_bags, load_bag, open_slide
from metastat.slides.encoders import create_encoder
from metastat.slides.extract import read_tile
from metastat.slides.pipeline import ProcessConfig, SlideJob, process_slide
from metastat.slides.runner import discover_slides, pseudonym, run_cohort
from metastat.slides.synthetic import corrupt_tile, write_synthetic_slide
from metastat.slides.tiling import TilingConfig, plan_tiles
from metastat.slides.tissue import detect_tissue

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def config(tiny_weights: Path) -> ProcessConfig:
    return ProcessConfig(
        tiling=TilingConfig(tile_size_px=64, target_mpp=1.0, min_tissue_fraction=0.5),
        encoder="timm:test_efficientnet",
        encoder_weights=str(tiny_weights),
        encoder_input_px=64,
        device="cpu",
        batch_size=16,
    )


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("slides")
    for i in range(2):
        write_synthetic_slide(d / f"s{i}.tiff", size_px0=(1536, 1024), mpp=0.5, seed=i, levels=2)
    return d


def test_feature_file_matches_tiles_at_their_coordinates(
    slides: Path, config: ProcessConfig, tmp_path: Path
) -> None:
    job = SlideJob(slides / "s0.tiff", "s0")
    r = process_slide(job, tmp_path, config)
    assert r.status == "done" and r.n_tiles > 10, r
    bag = load_bag(r.feature_file)
    assert bag.tile_size_px0 == 128 and bag.mpp == 0.5  # 64 px at 1 µm/px on a 0.5 µm/px slide
    assert bag.encoder == "timm:test_efficientnet"
    with h5py.File(r.feature_file) as h5:
        attrs = dict(h5.attrs)
        assert h5["features"].dtype == np.float16
        np.testing.assert_allclose(h5["coords_um"][()], bag.coords_px0 * 0.5)
    for key in ("tile_size_um", "encoder_version", "reader", "metastat_version", "target_mpp"):
        assert key in attrs
    assert attrs["tile_size_um"] == 64.0
    # the stored feature of a tile is the encoder's output on the tile at that coordinate
    enc = create_encoder(
        config.encoder, weights=config.encoder_weights, device="cpu", input_size_px=64
    )
    with open_slide(job.path) as s:
        grid = plan_tiles(s, detect_tissue(s, config.tissue), config.tiling)
        assert grid.read_level == 1  # read from the 1 µm/px level, not resized from level 0
        idx = [0, len(grid) // 2, len(grid) - 1]
        tiles = np.stack([read_tile(s, grid, i) for i in idx])
    np.testing.assert_array_equal(bag.coords_px0[idx], grid.coords_px0[idx])
    np.testing.assert_allclose(bag.features[idx], enc.encode(tiles), rtol=2e-2, atol=2e-2)


def test_rerun_skips_finished_and_redoes_changed_settings(
    slides: Path, config: ProcessConfig, tmp_path: Path
) -> None:
    job = SlideJob(slides / "s1.tiff", "s1")
    first = process_slide(job, tmp_path, config)
    again = process_slide(job, tmp_path, config)
    assert (first.status, again.status) == ("done", "done")
    assert (first.resumed, again.resumed) == (False, True)
    assert again.n_tiles == first.n_tiles
    changed = config.model_copy(update={"tiling": TilingConfig(tile_size_px=64, target_mpp=2.0)})
    assert process_slide(job, tmp_path, changed).status == "done"


def test_cohort_records_bad_slides_and_goes_on(
    slides: Path, config: ProcessConfig, tmp_path: Path
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    for p in slides.glob("*.tiff"):
        (d / p.name).symlink_to(p)
    (d / "truncated.svs").write_bytes((slides / "s0.tiff").read_bytes()[:5000])
    write_synthetic_slide(d / "blank.tiff", size_px0=(1024, 1024), tissue_fraction=0, levels=1)
    write_synthetic_slide(d / "nompp.tiff", size_px0=(1024, 1024), mpp=None, levels=1)
    out = tmp_path / "out"
    summary = run_cohort(discover_slides(d), out, config, workers=0, progress=False)
    by_id = {s["slide_id"]: s for s in summary.slides}
    assert (summary.done, summary.failed) == (2, 3)
    assert by_id["truncated"]["error_type"] == "SlideOpenError"
    assert by_id["blank"]["error_type"] == "NoTissueError"
    assert by_id["nompp"]["error_type"] == "MissingMppError"
    assert "--mpp" in by_id["nompp"]["error"]
    saved = json.loads((out / "run_summary.json").read_text())
    assert saved["failed"] == 3 and saved["tiles"] == summary.tiles > 0
    assert sorted(p.stem for p in list_bags(out / "features")) == ["s0", "s1"]
    assert list_bags(out) == list_bags(out / "features")  # the run folder works too
    assert (out / "qc" / "s0.png").is_file() and (out / "qc" / "blank.png").is_file()
    # the µm/px fallback rescues the slide without metadata
    again = run_cohort(discover_slides(d, mpp_fallback=0.5), out, config, workers=0, progress=False)
    assert (again.done, again.resumed, again.failed) == (3, 2, 2)  # failed ones are retried
    assert sum(s["resumed"] for s in again.slides) == 2


def test_corrupt_tile_is_skipped_or_fails_the_slide(config: ProcessConfig, tmp_path: Path) -> None:
    # 3 levels: the mask comes from level 2, tiles are read from level 1 (1 µm/px)
    p = write_synthetic_slide(
        tmp_path / "c.tiff", size_px0=(2048, 2048), mpp=0.5, levels=3, seed=5, tissue_fraction=0.6
    )
    with open_slide(p) as s:
        grid = plan_tiles(s, detect_tissue(s, config.tissue), config.tiling)
    assert grid.read_level == 1
    x, y = (int(v) for v in grid.coords_px0[len(grid) // 2])
    corrupt_tile(p, level=1, tile_index=(y // 2 // 256) * 4 + (x // 2 // 256))
    tolerant = config.model_copy(update={"max_unreadable_fraction": 0.5})
    r = process_slide(SlideJob(p, "c"), tmp_path / "a", tolerant)
    # finished, but never plain "done": the damage is counted and named
    assert r.status == "degraded" and 1 <= r.n_unreadable <= 16, r
    assert r.counts["unreadable_tiles"] == r.n_unreadable and "damaged" in r.message
    bag = load_bag(r.feature_file)
    assert [x, y] not in bag.coords_px0.tolist()
    assert bag.n_tiles == len(grid) - r.n_unreadable
    strict = config.model_copy(update={"max_unreadable_fraction": 0.0})
    r2 = process_slide(SlideJob(p, "c"), tmp_path / "b", strict)
    assert r2.status == "failed" and r2.error_type == "SlideReadError"
    assert "could not be read" in r2.error and r2.message == r2.error
    # a re-run resumes the degraded slide as degraded, not as done
    again = process_slide(SlideJob(p, "c"), tmp_path / "a", tolerant)
    assert (again.status, again.resumed, again.counts) == ("degraded", True, r.counts)
    assert list((tmp_path / "b").rglob("*.h5*")) == []


def test_no_phi_in_outputs(config: ProcessConfig, tmp_path: Path) -> None:
    secret = "DOE^JOHN-19700101"
    d = tmp_path / "in"
    p = write_synthetic_slide(
        d / "MRN123456_smith.svs",
        size_px0=(1024, 1024),
        levels=1,
        flavour="aperio",
        label_text=secret,
    )
    with open_slide(p) as s:
        assert s._handle.obj.associated_images  # a label-bearing image is there to be leaked
    out = tmp_path / "out"
    summary = run_cohort(
        discover_slides(d, pseudonym_key="k3y"), out, config, workers=0, progress=False
    )
    assert summary.done == 1
    sid = pseudonym("MRN123456_smith", "k3y")
    assert summary.slides[0]["slide_id"] == sid
    for f in out.rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            assert b"DOE^JOHN" not in blob and b"MRN123456" not in blob, f
            assert b"Aperio Image Library" not in blob, f  # raw vendor description
    assert load_bag(out / "features" / f"{sid}.h5").slide_id == sid


def test_failed_write_never_leaves_a_complete_looking_file(
    slides: Path, config: ProcessConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import metastat.slides.store as store

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "atomic_write", boom)  # fail after the data, before the marker
    r = process_slide(SlideJob(slides / "s0.tiff", "s0"), tmp_path, config)
    assert r.status == "failed" and "disk full" in r.error
    assert list_bags(tmp_path / "features") == []
    monkeypatch.undo()
    assert process_slide(SlideJob(slides / "s0.tiff", "s0"), tmp_path, config).status == "done"


def test_manifest_with_mpp_and_ids(slides: Path, tmp_path: Path) -> None:
    m = tmp_path / "manifest.csv"
    m.write_text(f"path,slide_id,mpp\n{slides / 's0.tiff'},A,0.25\n{slides / 's1.tiff'},B,\n")
    jobs = discover_slides(m)
    assert [(j.slide_id, j.mpp_override) for j in jobs] == [("A", 0.25), ("B", None)]


def test_dask_local_cluster_gives_identical_features(
    slides: Path, config: ProcessConfig, tmp_path: Path
) -> None:
    from distributed import Client, LocalCluster

    jobs = discover_slides(slides)
    config = config.model_copy(update={"torch_threads": 1})  # same float reduction order
    local = run_cohort(jobs, tmp_path / "local", config, workers=0, progress=False)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        dask = run_cohort(jobs, tmp_path / "dask", config, scheduler=client, progress=False)
    assert local.done == dask.done == 2 and dask.scheduler == "dask"
    for j in jobs:
        a = load_bag(tmp_path / "local" / "features" / f"{j.slide_id}.h5")
        b = load_bag(tmp_path / "dask" / "features" / f"{j.slide_id}.h5")
        np.testing.assert_array_equal(a.coords_px0, b.coords_px0)
        np.testing.assert_array_equal(a.features, b.features)
