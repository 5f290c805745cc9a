"""The CLI as documented: train (with CV + report), predict, heatmap on a real slide image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from metastat.cli.main import app
from metastat.mil.planted import (
    BagDesign,
    bag_features,
    load_tiles,
    make_bags,
    split_tiles,
    write_cohort,
)
from metastat.slides import open_slide
from metastat.slides.store import write_features

DATA = Path(__file__).parent / "data"
runner = CliRunner()


def _ok(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


def test_train_predict_heatmap_report(tmp_path: Path) -> None:
    tiles = load_tiles()
    design = BagDesign(
        n_patients=12, slides_per_patient=2, n_tiles=(20, 40), witness_rate=(0.1, 0.1), seed=5
    )
    bags = make_bags(tiles, split_tiles(tiles, "spatial")[0], design, "cli")
    manifest = write_cohort(tiles, bags, tmp_path / "cohort")
    cfg = tmp_path / "mil.toml"
    cfg.write_text(
        "hidden_dim = 16\nattention_dim = 8\nepochs = 3\nmin_epochs = 1\nn_boot = 20\nthreads = 1\n"
    )
    out = tmp_path / "run"
    _ok(
        [
            "mil",
            "train",
            "--config",
            str(cfg),
            "--manifest",
            str(manifest),
            "--model",
            "clam_sb",
            "--seeds",
            "0,1",
            "--folds",
            "3",
            "--cv",
            "--out",
            str(out),
        ]
    )
    assert (out / "model" / "weights.safetensors").is_file()
    assert json.loads((out / "model" / "manifest.json").read_text())["format"].startswith(
        "metastat.mil."
    )
    assert (out / "cv" / "report.html").stat().st_size > 10_000
    pred = pd.read_csv(out / "cv" / "predictions.csv")
    assert set(pred["repeat"]) == {0, 1} and pred["patient_id"].nunique() == 12
    run = json.loads((out / "cv" / "run.json").read_text())
    assert run["seeds"] == [0, 1] and run["config"]["model"] == "clam_sb"

    feats = sorted((tmp_path / "cohort" / "features").glob("*.h5"))
    _ok(
        [
            "mil",
            "predict",
            "--model",
            str(out / "model"),
            "--manifest",
            str(manifest),
            "--out",
            str(tmp_path / "pred.csv"),
        ]
    )
    slides = pd.read_csv(tmp_path / "pred.csv")
    patients = pd.read_csv(tmp_path / "pred_patients.csv")
    assert len(slides) == 24 and len(patients) == 12 and slides["prob"].between(0, 1).all()

    # a bag laid on the real CMU-1 slide: heatmap on its thumbnail with tile crops
    slide_path = DATA / "slides" / "CMU-1-Small-Region.svs"
    w, h = open_slide(slide_path).dimensions_px0
    xs, ys = np.meshgrid(np.arange(0, w - 224, 224), np.arange(0, h - 224, 224))
    xy = np.stack([xs.ravel(), ys.ravel()], 1)
    x = bag_features(tiles, bags)[0]
    x = x[np.arange(len(xy)) % len(x)]
    bag = write_features(
        tmp_path / "cmu.h5",
        slide_id="CMU-1",
        features=x,
        coords_px0=xy,
        mpp=0.5,
        tissue_fraction=np.ones(len(xy), np.float32),
        attrs={"encoder": "efficientnet_lite0", "tile_size_px0": 224},
        fingerprint="test",
    )
    res = json.loads(
        _ok(
            [
                "mil",
                "heatmap",
                "--model",
                str(out / "model"),
                "--bag",
                str(bag),
                "--slide",
                str(slide_path),
                "--out",
                str(tmp_path / "hm"),
                "--top-k",
                "3",
            ]
        )
    )
    assert res["crops"] == 6 and Path(res["png"]).is_file()
    _ok(["mil", "report", str(out / "cv"), "--heatmap", res["png"]])
    assert feats


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "mil",
            "predict",
            "--model",
            str(tmp_path),
            "--out",
            str(tmp_path / "p.csv"),
            str(tmp_path / "x.h5"),
        ],
    )
    assert res.exit_code != 0
    assert "not a metastat MIL checkpoint" in str(res.exception)
