"""Validation runs (disjoint patients, same splits for model and baseline); CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from metastat.cli.main import app
from metastat.data.io import load_cohort
from metastat.data.registry import load_dataset
from metastat.expression.validate import cross_validate, external_validate

runner = CliRunner()


def _run(*args: str) -> object:
    return runner.invoke(app, list(args), catch_exceptions=True)


def test_cv_on_real_cohort_same_splits_disjoint_patients() -> None:
    res = cross_validate(
        load_dataset("breast_transbig"), "dmfs", n_splits=3, n_boot=50, progress=False
    )
    pred = res.predictions
    assert set(pred["model"]) == {res.model, res.baseline} and res.model != res.baseline
    by_model = {m: d.sort_values("sample_id") for m, d in pred.groupby("model")}
    a, b = by_model[res.model], by_model[res.baseline]
    assert (a["fold"].to_numpy() == b["fold"].to_numpy()).all()  # same splits
    assert a["sample_id"].is_unique and len(a) == 198  # each sample scored once
    for _, d in a.groupby("fold"):
        others = set(a[a["fold"] != d["fold"].iloc[0]]["patient_id"])
        assert not set(d["patient_id"]) & others
    assert res.metrics["c_index"].estimate > 0.55  # real signal in the 76-gene cohort
    assert res.metrics["c_index"].ci_low < res.metrics["c_index"].estimate
    assert {
        "uno_c",
        "td_auc",
        "integrated_brier",
        "hazard_ratio",
        "logrank_p",
        "delta_c_index",
        "auc",
    } <= set(res.metrics)
    assert res.importance is not None and res.importance["selected_fraction"].max() == 1.0


def test_external_validation_refuses_shared_patients() -> None:
    from metastat.errors import ValidationError

    acrg = load_dataset("gastric_acrg")
    with pytest.raises(ValidationError, match="duplicates a training sample"):
        external_validate(acrg, acrg.copy(), "recurrence", n_boot=0, progress=False)


def test_cli_datasets_list_and_show() -> None:
    r = _run("datasets", "list")
    assert r.exit_code == 0 and "gastric_acrg" in r.output and "breast_transbig" in r.output
    r = _run("datasets", "show", "gastric_acrg", "--json")
    info = json.loads(r.output)
    assert info["outcomes"]["recurrence"]["events"] == 125


def test_cli_evaluate_json_contract() -> None:
    r = _run(
        "expression",
        "evaluate",
        "--dataset",
        "breast_transbig",
        "--outcome",
        "dmfs",
        "--cv",
        "3",
        "--n-boot",
        "30",
        "--json",
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out["c_index"]) == {"estimate", "ci_low", "ci_high"}
    assert out["c_index"]["ci_low"] <= out["c_index"]["estimate"] <= out["c_index"]["ci_high"]
    assert "baseline_c_index" in out and "delta_c_index" in out


def test_cli_user_files_fit_predict_evaluate_report(
    planted_files: tuple[Path, Path], tmp_path: Path
) -> None:
    e, c = planted_files
    common = [
        "--expression",
        str(e),
        "--clinical",
        str(c),
        "--outcome",
        "relapse_24",
        "--event-col",
        "relapse",
        "--time-col",
        "months",
        "--time-unit",
        "months",
        "--patient-col",
        "patient",
    ]
    run_dir = tmp_path / "run"
    r = _run(
        "expression",
        "evaluate",
        *common,
        "--cv",
        "3",
        "--n-boot",
        "30",
        "--horizon",
        "24m",
        "--out",
        str(run_dir),
    )
    assert r.exit_code == 0, r.output
    assert {p.name for p in run_dir.iterdir()} >= {
        "predictions.csv",
        "metrics.json",
        "run.json",
        "importance.csv",
    }
    run = json.loads((run_dir / "run.json").read_text())
    assert run["seed"] == 0 and run["horizon"] == 24.0
    r = _run("expression", "report", str(run_dir), "--pdf")
    assert r.exit_code == 0, r.output
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 4 and "Research use only" in html
    assert (run_dir / "report.pdf").stat().st_size > 1000

    model_dir = tmp_path / "model"
    r = _run("expression", "fit", *common, "--horizon", "24m", "--out", str(model_dir))
    assert r.exit_code == 0, r.output
    profile = pd.read_csv(e, index_col=0).iloc[:3].drop(columns=["G39"])
    profile.to_csv(tmp_path / "profile.csv")
    r = _run(
        "expression",
        "predict",
        "--model",
        str(model_dir),
        "--expression",
        str(tmp_path / "profile.csv"),
        "--json",
    )
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["genes_imputed"] == 1 and len(payload["predictions"]) == 3
    p0 = payload["predictions"][0]
    assert 0 <= p0["probability"] <= 1 and p0["risk_group"] in ("high", "low")
    assert len(p0["top_genes"]) == 10


def test_cli_errors_are_one_clear_line(planted_files: tuple[Path, Path]) -> None:
    import subprocess
    import sys

    e, c = planted_files
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "metastat.cli.main",
            "expression",
            "evaluate",
            "--expression",
            str(e),
            "--clinical",
            str(c),
            "--outcome",
            "x",
            "--event-col",
            "relapse",
            "--time-col",
            "monthz",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "no column 'monthz'" in proc.stderr and "Did you mean 'months'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_user_cohort_matches_builtin_handling(planted_files: tuple[Path, Path]) -> None:
    e, c = planted_files
    adata = load_cohort(
        e,
        clinical=c,
        patient_col="patient",
        outcome="dfs",
        event_col="relapse",
        time_col="months",
        time_unit="months",
    )
    assert adata.obs["patient_id"].nunique() == 60
    assert np.isfinite(np.asarray(adata.X)).all()
