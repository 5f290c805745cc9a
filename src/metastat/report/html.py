"""HTML (and optional PDF) report of an evaluation run folder."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.figure import Figure

from metastat import __version__
from metastat.atomic import atomic_write
from metastat.errors import InputError
from metastat.report import plots


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt(v: dict | None) -> str:
    if not v or v.get("estimate") is None:
        return ""
    lo, hi = v.get("ci_low"), v.get("ci_high")
    ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
    return f"{v['estimate']:.3f}{ci}"


def metric_rows(metrics: dict) -> list[dict[str, str]]:
    """Table rows (metric, model, baseline, paired difference) of a ``metrics.json``."""
    return [
        {
            "name": k,
            "model": _fmt(v),
            "baseline": _fmt(metrics.get(f"baseline_{k}")),
            "delta": _fmt(metrics.get(f"delta_{k}")),
        }
        for k, v in metrics.items()
        if not k.startswith(("baseline_", "delta_"))
    ]


def figures_of(run_dir: Path) -> list[tuple[str, Figure]]:
    """The report's figures (title, figure) for a run folder."""
    pred = pd.read_csv(run_dir / "predictions.csv")
    meta = json.loads((run_dir / "run.json").read_text())
    figs: list[tuple[str, Figure | None]] = [
        ("ROC curves", plots.roc_figure(pred)),
        (
            "Kaplan-Meier by risk group (training-fold median cut)",
            plots.km_figure(pred, meta["model"], meta.get("time_unit")),
        ),
        ("Calibration", plots.calibration_figure(pred)),
        ("Decision curve", plots.decision_curve_figure(pred)),
    ]
    imp = run_dir / "importance.csv"
    if imp.exists():
        figs.append(("Gene importance", plots.importance_figure(pd.read_csv(imp, index_col=0))))
    return [(t, f) for t, f in figs if f is not None]


def write_report(run_dir: str | Path, out: str | Path, *, pdf: bool = False) -> Path:
    """Render ``out`` (HTML with embedded figures) from ``run_dir``; optionally ``out``.pdf."""
    run_dir, out = Path(run_dir), Path(out)
    for name in ("predictions.csv", "metrics.json", "run.json"):
        if not (run_dir / name).exists():
            raise InputError(f"{run_dir}: missing {name}; is this an `evaluate --out` folder?")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    meta = json.loads((run_dir / "run.json").read_text())
    figs = figures_of(run_dir)
    rows = metric_rows(metrics)
    if meta.get("kind") == "external":
        title = f"{meta['train']} -> {meta['test']}: {meta['outcome']}"
        summary = (
            f"Trained on {meta['train']} (n={meta['n_train']}), tested on {meta['test']} "
            f"(n={meta['n_test']}), {meta.get('n_genes')} shared genes."
        )
    else:
        title = f"{meta.get('cohort')}: {meta['outcome']} ({meta.get('n_splits')}-fold CV)"
        summary = (
            f"{meta.get('n_samples')} samples of {meta.get('n_patients')} patients, "
            f"{meta.get('n_splits')}-fold patient-grouped CV x {meta.get('n_repeats')}."
        )
    env = Environment(
        loader=PackageLoader("metastat.report", "templates"), autoescape=select_autoescape()
    )
    html = env.get_template("report.html").render(
        title=title,
        summary=summary,
        rows=rows,
        model=meta["model"],
        baseline=meta["baseline"],
        n_boot=meta.get("n_boot"),
        version=__version__,
        figures=[{"alt": t, "data": _png(f)} for t, f in figs],
        meta=[(k, v) for k, v in meta.items() if k not in ("genes",)],
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, html)
    if pdf:
        from matplotlib.backends.backend_pdf import PdfPages

        with PdfPages(out.with_suffix(".pdf")) as doc:
            for _, f in figs:
                doc.savefig(f)
    for _, f in figs:
        import matplotlib.pyplot as plt

        plt.close(f)
    return out
