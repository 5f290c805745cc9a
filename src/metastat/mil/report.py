"""Run folders of MIL evaluations and their HTML report (ROC / KM / calibration, heatmaps)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pandas as pd

from metastat.atomic import atomic_write
from metastat.errors import InputError


def save_run(
    out_dir: str | Path, predictions: pd.DataFrame, summary: dict[str, Any], meta: dict[str, Any]
) -> Path:
    """Write predictions.csv, metrics.json (primary vs baseline), summary.json and run.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "predictions.csv", predictions.to_csv(index=False))
    primary = meta["model"]
    metrics = summary["compare"].get(primary) or {}
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=2))
    atomic_write(out / "summary.json", json.dumps(summary, indent=2, default=str))
    atomic_write(out / "run.json", json.dumps(meta, indent=2, default=str))
    return out


def write_report(
    run_dir: str | Path, out: str | Path | None = None, heatmaps: list[Path] | None = None
) -> Path:
    """HTML report of a run folder: metrics table, ROC / KM / calibration, mean +/- sd over
    seeds, and heatmap PNGs (``heatmaps`` or those in ``run_dir/heatmaps``)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from metastat import __version__
    from metastat.report.html import _png, figures_of, metric_rows

    run = Path(run_dir)
    for f in ("predictions.csv", "metrics.json", "run.json", "summary.json"):
        if not (run / f).exists():
            raise InputError(f"{run}: missing {f}; is this a 'metastat mil evaluate --out' folder?")
    metrics = json.loads((run / "metrics.json").read_text())
    meta = json.loads((run / "run.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    rows = metric_rows(metrics)
    for name, vals in summary.get("mean_sd", {}).items():
        for k in ("auc", "c_index"):
            if k in vals:
                rows.append(
                    {
                        "name": f"{k} over seeds ({name})",
                        "model": f"{vals[k]['mean']:.3f} ± {vals[k]['sd']:.3f}",
                        "baseline": "",
                        "delta": "",
                    }
                )
    figs = [{"alt": t, "data": _png(f)} for t, f in figures_of(run)]
    pngs = heatmaps if heatmaps is not None else sorted((run / "heatmaps").glob("*_heatmap.png"))
    for p in pngs[:6]:
        figs.append(
            {
                "alt": f"heatmap {Path(p).stem}",
                "data": base64.b64encode(Path(p).read_bytes()).decode(),
            }
        )
    env = Environment(
        loader=PackageLoader("metastat.report", "templates"), autoescape=select_autoescape()
    )
    html = env.get_template("report.html").render(
        title=f"MIL {meta['model']} vs {meta['baseline']}: {meta.get('outcome')}",
        summary=(
            f"{meta.get('n_samples')} bags of {meta.get('n_patients')} patients, "
            f"{meta.get('n_splits')}-fold patient-grouped CV, seeds {meta.get('seeds')}."
        ),
        rows=rows,
        model=meta["model"],
        baseline=meta["baseline"],
        n_boot=meta.get("n_boot"),
        version=__version__,
        figures=figs,
        meta=list(meta.items()),
    )
    target = Path(out) if out is not None else run / "report.html"
    atomic_write(target, html)
    return target
