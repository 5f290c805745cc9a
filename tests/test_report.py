"""Reports a clinician can read, on real cohorts: words, counts, KM at-risk table, calibration
counts, model card, warnings, index page; PDF pages rendered to PNG and checked for content."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from metastat.cli.main import app
from metastat.data.registry import load_dataset
from metastat.expression.validate import cross_validate, external_validate
from metastat.report import plots
from metastat.report.html import write_index, write_report
from metastat.report.words import horizon_words, metric_rows, model_words

TRIPOD = (
    "Data source",
    "Eligibility",
    "Outcome",
    "Predictors",
    "Sample size",
    "Missing data",
    "Validation",
    "Performance",
    "Limitations",
    "Intended use",
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cross-validated and an external-validation run of real breast cohorts (5-year DMFS)."""
    root = tmp_path_factory.mktemp("runs")
    transbig = load_dataset("breast_transbig")
    cv = cross_validate(transbig, "dmfs", n_splits=3, n_boot=50, seed=0, progress=False)
    cv.save(root / "cv")
    ext = external_validate(load_dataset("breast_vdx"), transbig, "dmfs", n_boot=50, progress=False)
    ext.save(root / "external")
    return root


def _html(run: Path, **kw: bool) -> str:
    return write_report(run, run / "report.html", **kw).read_text()


@pytest.mark.parametrize("kind", ["cv", "external"])
def test_report_says_what_a_clinician_needs(runs: Path, kind: str) -> None:
    run = runs / kind
    html = _html(run)
    meta = json.loads((run / "run.json").read_text())
    pred = pd.read_csv(run / "predictions.csv")
    first = pred[(pred["model"] == meta["model"]) & (pred["repeat"] == 0)]
    assert model_words(meta["model"]) in html and "tuned comparator" in html
    assert "event column" in html and "Horizon" in html
    assert horizon_words(meta["horizon"], meta["time_unit"]) in html
    assert f"{first['patient_id'].nunique()} patients" in html
    assert f"{int(first['event'].sum())} events" in html
    assert "numbers at risk" in html and "Model card (TRIPOD+AI)" in html
    for item in TRIPOD:
        assert f"<td>{item}</td>" in html
    assert "External validation" in html if kind == "external" else "cross-validation" in html
    assert not re.search(r"\d\.\d{5,}", html.split("<h2>Run</h2>")[0])  # rounded values
    assert ">None<" not in html


def test_p_values_have_no_ci_and_hazard_ratios_no_difference(runs: Path) -> None:
    metrics = json.loads((runs / "cv" / "metrics.json").read_text())
    rows = {r["key"]: r for r in metric_rows(metrics)}
    assert " to " not in rows["logrank_p"]["model"] and rows["logrank_p"]["delta"] == ""
    assert " to " in rows["hazard_ratio"]["model"] and rows["hazard_ratio"]["delta"] == ""
    assert rows["auc"]["delta"].startswith(("+", "-"))


def test_warnings_in_run_json_are_shown_prominently(runs: Path, tmp_path: Path) -> None:
    run = tmp_path / "warned"
    shutil.copytree(runs / "cv", run)
    meta = json.loads((run / "run.json").read_text())
    meta["warnings"] = ["only 12 events: estimates are unstable", "3 samples dropped: no time"]
    (run / "run.json").write_text(json.dumps(meta))
    html = _html(run)
    assert html.index('class="warn"') < html.index("<h2>Metrics")
    assert "only 12 events: estimates are unstable" in html and "3 samples dropped" in html


def test_km_has_censoring_marks_and_numbers_at_risk(runs: Path) -> None:
    pred = pd.read_csv(runs / "cv" / "predictions.csv")
    model = json.loads((runs / "cv" / "run.json").read_text())["model"]
    fig = plots.km_figure(pred, model, "days")
    main, table = fig.axes
    assert any(line.get_marker() == "|" and len(line.get_xdata()) for line in main.get_lines())
    d = pred[(pred["model"] == model) & (pred["repeat"] == 0)]
    counts = [int(t.get_text()) for t in table.texts]
    assert max(counts) == max((d["high_risk"]).sum(), (~d["high_risk"]).sum())
    assert table.get_title(loc="left") == "number at risk"


def test_calibration_shows_bin_counts_and_smoothed_curve(runs: Path) -> None:
    pred = pd.read_csv(runs / "cv" / "predictions.csv")
    fig = plots.calibration_figure(pred)
    ax, hist = fig.axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("bins of" in s for s in labels) and any("smoothed" in s for s in labels)
    scored = pred["binary"].notna() & pred["prob"].notna()  # censored before horizon: out
    assert sum(p.get_height() for p in hist.patches) == pytest.approx(scored.sum(), abs=0.5)


def test_index_links_both_runs_and_cli_reports_external_run(runs: Path) -> None:
    r = CliRunner().invoke(app, ["expression", "report", str(runs / "external")])
    assert r.exit_code == 0, r.output
    _html(runs / "cv")
    r = CliRunner().invoke(app, ["report", "index", str(runs)])
    assert r.exit_code == 0, r.output
    index = (runs / "index.html").read_text()
    assert 'href="cv/report.html"' in index and 'href="external/report.html"' in index
    assert "External validation" in index and "AUC" in index
    assert write_index(runs) == runs / "index.html"


@pytest.mark.parametrize("kind", ["cv", "external"])
def test_pdf_pages_render_with_content(runs: Path, kind: str, tmp_path: Path) -> None:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm not installed (apt-get install poppler-utils): PDF pages not checked")
    from PIL import Image

    run = runs / kind
    write_report(run, tmp_path / "report.html", pdf=True)
    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", str(tmp_path / "report.pdf"), str(tmp_path / "page")],
        check=True,
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 3  # summary + metrics; figures; model card + gene importance
    for page in pages:
        ink = np.asarray(Image.open(page).convert("L")) < 200
        top, bottom = ink[: len(ink) // 2], ink[len(ink) // 2 :]
        assert top.mean() > 0.02, f"{page.name}: upper half blank"
        assert bottom.mean() > 0.005, f"{page.name}: lower half blank"
