"""HTML (and optional PDF) report of an evaluation run folder, and an index page of reports."""

from __future__ import annotations

import base64
import io
import json
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from metastat.atomic import atomic_write
from metastat.errors import InputError
from metastat.report import plots, words
from metastat.report.words import metric_rows

__all__ = ["figures_of", "metric_rows", "write_index", "write_report"]


def _png(fig: Figure, dpi: int = 110) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode()


def _env() -> Environment:
    return Environment(
        loader=PackageLoader("metastat.report", "templates"), autoescape=select_autoescape()
    )


def _round(v: Any) -> Any:
    """Run metadata for display: floats to 4 significant digits, lists shortened."""
    if isinstance(v, float):
        return float(f"{v:.4g}")
    if isinstance(v, list):
        shown = [_round(x) for x in v[:10]]
        return [*shown, "..."] if len(v) > 10 else shown
    return v


def figures_of(run_dir: Path) -> list[tuple[str, Figure]]:
    """The report's figures (title, figure) for a run folder."""
    pred = pd.read_csv(run_dir / "predictions.csv")
    meta = json.loads((run_dir / "run.json").read_text())
    cut = "training cohort median" if meta.get("kind") == "external" else "training-fold median"
    figs: list[tuple[str, Figure | None]] = [
        ("ROC curves", plots.roc_figure(pred)),
        (
            f"Kaplan-Meier by risk group ({cut} cut), numbers at risk, censoring marks",
            plots.km_figure(pred, meta["model"], meta.get("time_unit")),
        ),
        (
            "Calibration: decile bins, kernel-smoothed curve, predictions",
            plots.calibration_figure(pred),
        ),
        ("Decision curve", plots.decision_curve_figure(pred)),
    ]
    imp = run_dir / "importance.csv"
    if imp.exists():
        figs.append(("Gene importance", plots.importance_figure(pd.read_csv(imp, index_col=0))))
    return [(t, f) for t, f in figs if f is not None]


def _context(run_dir: Path) -> dict[str, Any]:
    """Everything the HTML and PDF show, from the run folder."""
    from metastat import __version__

    metrics = json.loads((run_dir / "metrics.json").read_text())
    meta = json.loads((run_dir / "run.json").read_text())
    pred = pd.read_csv(run_dir / "predictions.csv")
    rows = metric_rows(metrics)
    n = words.counts(pred)
    unit = meta.get("time_unit")
    if meta.get("kind") == "external":
        title = f"{meta['train']} -> {meta['test']}: {meta['outcome']} (external validation)"
    else:
        title = f"{meta.get('cohort')}: {meta['outcome']} ({meta.get('n_splits')}-fold CV)"
    model, baseline = meta["model"], meta["baseline"]
    return {
        "title": title,
        "warnings": [str(w) for w in meta.get("warnings") or []],
        "summary": [
            ("What was done", words.run_words(meta)),
            ("Model", f"{model} — {words.model_words(model)}."),
            ("Comparator", f"{baseline} — {words.model_words(baseline)}; same splits, same run."),
            ("Outcome", words.outcome_words(meta) + "."),
            ("Horizon", words.horizon_words(meta.get("horizon"), unit) + "."),
            ("Patients and events", n.words(unit) + "."),
            ("Main result", words.headline(rows, model, baseline)),
        ],
        "rows": rows,
        "model": model,
        "baseline": baseline,
        "n_boot": meta.get("n_boot"),
        "card": words.model_card(meta, metrics, rows, n),
        "meta": [(k, _round(v)) for k, v in meta.items() if k not in ("genes", "warnings")],
        "genes": meta.get("genes"),
        "version": __version__,
    }


def write_report(run_dir: str | Path, out: str | Path, *, pdf: bool = False) -> Path:
    """Render ``out`` (HTML with embedded figures) from ``run_dir``; optionally ``out``.pdf."""
    run_dir, out = Path(run_dir), Path(out)
    for f in ("predictions.csv", "metrics.json", "run.json"):
        if not (run_dir / f).exists():
            raise InputError(f"{run_dir}: missing {f}; is this an `evaluate --out` folder?")
    ctx = _context(run_dir)
    figs = figures_of(run_dir)
    html = (
        _env()
        .get_template("report.html")
        .render(**ctx, figures=[{"alt": t, "data": _png(f)} for t, f in figs])
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, html)
    if pdf:
        _write_pdf(out.with_suffix(".pdf"), ctx, figs)
    return out


A4 = (8.27, 11.69)


class _Pages:
    """Text flowing down A4 pages of a PDF (a new page when one is full)."""

    def __init__(self, doc: Any) -> None:
        self.doc, self.page, self.y = doc, Figure(figsize=A4), 0.96

    def need(self, height: float) -> None:
        if self.y - height < 0.04:
            self.flush()
            self.page, self.y = Figure(figsize=A4), 0.96

    def text(
        self,
        text: str,
        *,
        size: float = 8.5,
        bold: bool = False,
        color: str = "#222",
        width: int = 110,
    ) -> None:
        step = size * 1.45 / 72 / A4[1]
        for line in textwrap.wrap(text, width) or [""]:
            self.need(step)
            self.page.text(
                0.07,
                self.y,
                line,
                fontsize=size,
                weight="bold" if bold else "normal",
                color=color,
                va="top",
            )
            self.y -= step
        self.y -= 0.004

    def table(self, cols: list[str], cells: list[list[str]]) -> None:
        h = 0.021 * (len(cells) + 1)
        self.need(h)
        ax = self.page.add_axes((0.07, self.y - h, 0.86, h))
        ax.axis("off")
        tab = ax.table(
            cellText=cells,
            colLabels=cols,
            cellLoc="left",
            bbox=Bbox.from_bounds(0, 0, 1, 1),
            colWidths=(0.25, 0.26, 0.26, 0.23),
        )
        tab.auto_set_font_size(False)
        tab.set_fontsize(7)
        self.y -= h + 0.015

    def flush(self) -> None:
        self.doc.savefig(self.page)


def _image(fig: Figure) -> Any:
    import matplotlib.image as mpimg

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    buf.seek(0)
    return mpimg.imread(buf)


def _write_pdf(path: Path, ctx: dict[str, Any], figs: list[tuple[str, Figure]]) -> None:
    """A4 pages: summary and metrics; the first four figures in a grid; the model card with the
    remaining figures (gene importance) under it."""
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path) as doc:
        pages = _Pages(doc)
        pages.text(
            "Research use only. Not for clinical decision-making.", bold=True, color="#8a6d00"
        )
        pages.text(ctx["title"], size=14, bold=True, width=70)
        for w in ctx["warnings"]:
            pages.text(f"WARNING: {w}", bold=True, color="#b2182b")
        for k, v in ctx["summary"]:
            pages.text(f"{k}: {v}", size=9, width=100)
        pages.text(
            f"Metrics (95% patient-bootstrap CI, {ctx['n_boot']} replicates)", size=11, bold=True
        )
        cols = ["metric", ctx["model"], f"{ctx['baseline']} (comparator)", "paired difference"]
        pages.table(cols, [[r["name"], r["model"], r["baseline"], r["delta"]] for r in ctx["rows"]])
        pages.flush()
        grid, rest = figs[:4], figs[4:]
        if grid:
            page = Figure(figsize=A4)
            h = 0.46 if len(grid) > 2 else 0.6
            for i, (title, f) in enumerate(grid):
                box = (0.03 + 0.48 * (i % 2), 0.97 - h * (i // 2 + 1), 0.46, h - 0.025)
                ax = page.add_axes(box)
                ax.imshow(_image(f))
                ax.set_title(textwrap.fill(title, 60), fontsize=6.5)
                ax.axis("off")
            doc.savefig(page)
        pages.page, pages.y = Figure(figsize=A4), 0.96
        pages.text("Model card (TRIPOD+AI items)", size=12, bold=True)
        for k, v in ctx["card"]:
            pages.text(f"{k}: {v}", size=8.5, width=110)
        for title, f in rest:
            pages.need(0.3)
            ax = pages.page.add_axes((0.1, 0.04, 0.8, pages.y - 0.06))
            ax.imshow(_image(f))
            ax.set_title(title, fontsize=8)
            ax.axis("off")
            pages.y = 0.0
        pages.flush()


def write_index(root: str | Path, out: str | Path | None = None) -> Path:
    """``root/index.html`` linking every ``*/report.html`` under ``root`` with its headline."""
    root = Path(root)
    entries = []
    for report in sorted(root.glob("*/report.html")):
        run = report.parent
        try:
            meta = json.loads((run / "run.json").read_text())
            rows = metric_rows(json.loads((run / "metrics.json").read_text()))
        except (OSError, ValueError) as exc:
            raise InputError(f"{run}: unreadable run.json / metrics.json ({exc})") from exc
        entries.append(
            {
                "href": f"{run.name}/report.html",
                "name": run.name,
                "what": words.run_words(meta),
                "result": words.headline(rows, meta.get("model", ""), meta.get("baseline", "")),
                "warnings": [str(w) for w in meta.get("warnings") or []],
            }
        )
    if not entries:
        raise InputError(
            f"{root}: no */report.html found; run `metastat expression report RUN_DIR` for each "
            "run folder first."
        )
    out = Path(out) if out is not None else root / "index.html"
    atomic_write(out, _env().get_template("index.html").render(title=root.name, entries=entries))
    return out
