"""``metastat fusion``: evaluate (JSON), fit, predict with a missing modality, generate, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from metastat.cli.main import app
from metastat.errors import InputError
from metastat.fusion.paired import PAIRED_VARIABLES, make_paired_benchmark

runner = CliRunner()


def _files(tmp_path):
    b = make_paired_benchmark(100, n_genes=30, n_programs=3, tile_dim=8, tiles=(5, 10), seed=2)
    d = b.data
    clin = d.clinical.assign(months=d.target["time"], relapse=d.target["event"].astype(int))
    clin.index.name = "patient_id"
    clin.to_csv(tmp_path / "clinical.csv")
    d.expression.rename_axis("patient_id").to_csv(tmp_path / "expression.csv")
    (tmp_path / "vars.json").write_text(json.dumps([v.model_dump() for v in PAIRED_VARIABLES]))
    return [
        "--clinical",
        str(tmp_path / "clinical.csv"),
        "--variables",
        str(tmp_path / "vars.json"),
        "--expression",
        str(tmp_path / "expression.csv"),
        "--event-col",
        "relapse",
        "--time-col",
        "months",
    ]


def test_evaluate_json(tmp_path) -> None:
    args = _files(tmp_path)
    res = runner.invoke(
        app,
        [
            "fusion",
            "evaluate",
            "-o",
            "relapse",
            *args,
            "-m",
            "late",
            "--drop",
            "expression",
            "--cv",
            "3",
            "--n-boot",
            "10",
            "--json",
            "--horizon",
            "36",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert set(out) == {"clinical", "late", "late[-expression]"}
    assert set(out["late"]["c_index"]) == {"estimate", "ci_low", "ci_high"}
    assert "delta_c_index_vs_clinical" in out["late"]
    assert (tmp_path / "run" / "table.csv").exists()


def test_fit_predict_with_missing_modality(tmp_path) -> None:
    args = _files(tmp_path)
    res = runner.invoke(
        app,
        [
            "fusion",
            "fit",
            "-o",
            "relapse",
            *args,
            "--horizon",
            "36",
            "--out",
            str(tmp_path / "model"),
        ],
    )
    assert res.exit_code == 0, res.output
    clin = pd.read_csv(tmp_path / "clinical.csv", index_col=0).drop(columns=["months", "relapse"])
    clin.iloc[:5].to_csv(tmp_path / "new.csv")
    expr = pd.read_csv(tmp_path / "expression.csv", index_col=0)
    expr.iloc[3:8].to_csv(tmp_path / "new_expr.csv")  # patients 0-2 clinical only, 5-7 expr only
    res = runner.invoke(
        app,
        [
            "fusion",
            "predict",
            "-m",
            str(tmp_path / "model"),
            "--clinical",
            str(tmp_path / "new.csv"),
            "--expression",
            str(tmp_path / "new_expr.csv"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    preds = {p["patient_id"]: p for p in json.loads(res.output)["predictions"]}
    assert len(preds) == 8
    used = [preds[i]["modalities"] for i in [*clin.index[:5], *expr.index[5:8]]]
    assert used == ["clinical"] * 3 + ["clinical+expression"] * 2 + ["expression"] * 3
    assert all(np.isfinite(p["risk"]) for p in preds.values())
    res = runner.invoke(
        app,
        [
            "fusion",
            "predict",
            "-m",
            str(tmp_path / "model"),
            "--clinical",
            str(tmp_path / "new.csv"),
            "--expression",
            str(tmp_path / "new_expr.csv"),
            "--drop",
            "expression",
            "--json",
        ],
    )
    preds = json.loads(res.output)["predictions"]
    assert {p["modalities"] for p in preds} == {"clinical", ""}


def test_fit_predict_neural(tmp_path) -> None:
    pytest.importorskip("torch")
    args = _files(tmp_path)
    res = runner.invoke(
        app, ["fusion", "fit", "-o", "relapse", *args, "-m", "gated", "--out", str(tmp_path / "nn")]
    )
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "nn" / "manifest.json").read_text())
    assert manifest["format"] == "metastat.fusion.neural/2"
    res = runner.invoke(
        app,
        [
            "fusion",
            "predict",
            "-m",
            str(tmp_path / "nn"),
            "--expression",
            str(tmp_path / "expression.csv"),
            "--out",
            str(tmp_path / "p.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(tmp_path / "p.csv")
    assert len(pred) == 100 and set(pred["modalities"]) == {"expression"}
    assert np.isfinite(pred["risk"]).all()


def test_errors(tmp_path) -> None:
    res = runner.invoke(app, ["fusion", "evaluate", "-d", "nope", "-o", "x"])
    assert isinstance(res.exception, InputError) and "unknown dataset" in str(res.exception)
    res = runner.invoke(app, ["fusion", "evaluate", "-d", "breast_nki", "-o", "dmfs", "-m", "lat"])
    assert "Did you mean 'late'" in str(res.exception)


def test_fit_with_generator_fills_missing_expression(tmp_path) -> None:
    h5py = pytest.importorskip("h5py")
    args = _files(tmp_path)
    b = make_paired_benchmark(100, n_genes=30, n_programs=3, tile_dim=8, tiles=(5, 10), seed=2)
    (tmp_path / "bags").mkdir()
    for pid, bag in zip(b.data.patient_ids, b.data.histology, strict=True):
        with h5py.File(tmp_path / "bags" / f"{pid}.h5", "w") as h5:
            h5["features"] = bag
            h5["coords"] = np.zeros((len(bag), 2), dtype=np.int64)
            h5.attrs["encoder_name"] = "uni"  # the TRIDENT spelling
    res = runner.invoke(
        app,
        [
            "fusion",
            "fit",
            "-o",
            "relapse",
            *args,
            "--histology",
            str(tmp_path / "bags"),
            "--generator",
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert res.exit_code == 0, res.output
    clin = str(tmp_path / "clinical.csv")
    new = ["fusion", "predict", "-m", str(tmp_path / "m"), "--clinical", clin, "--histology",
           str(tmp_path / "bags"), "--json"]  # fmt: skip
    preds = json.loads(runner.invoke(app, new).output)["predictions"]
    assert all(p["expression_generated"] for p in preds)
    assert {p["modalities"] for p in preds} == {"clinical+expression+histology"}
    preds = json.loads(runner.invoke(app, [*new, "--no-generate"]).output)["predictions"]
    assert {p["modalities"] for p in preds} == {"clinical+histology"}
    assert not any(p["expression_generated"] for p in preds)
    # the encoder of the training bags is recorded and checked at prediction
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["histology_encoder"] == "uni"
    other = tmp_path / "bags" / f"{b.data.patient_ids[0]}.h5"
    with h5py.File(other, "a") as h5:
        h5.attrs["encoder_name"] = "conch"
    res = runner.invoke(app, [*new, "--no-generate"])
    assert isinstance(res.exception, InputError), res.output
    assert "different tile encoders: 'conch'" in str(res.exception)
    with h5py.File(other, "a") as h5:
        del h5.attrs["encoder_name"]
    for f in (tmp_path / "bags").glob("*.h5"):
        with h5py.File(f, "a") as h5:
            h5.attrs["encoder_name"] = "conch"
    res = runner.invoke(app, [*new, "--no-generate"])
    assert isinstance(res.exception, InputError), res.output
    assert "come from encoder 'conch'" in str(res.exception) and "trained on 'uni'" in str(
        res.exception
    )
    via_modality = [*new[:6], "--modality", f"histology={tmp_path / 'bags'}", "--no-generate"]
    res = runner.invoke(app, via_modality)
    assert isinstance(res.exception, InputError) and "trained on 'uni'" in str(res.exception)
