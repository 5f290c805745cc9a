"""``metastat datasets``: list and describe the built-in real cohorts."""

from __future__ import annotations

import json

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from metastat.data.outcomes import resolve_outcome
from metastat.data.registry import DATASETS, dataset_info, load_dataset

app = typer.Typer(no_args_is_help=True, help="Built-in real cohorts.")


@app.command("list")
def list_datasets(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the built-in cohorts."""
    if as_json:
        typer.echo(
            json.dumps(
                {
                    n: {"title": d.title, "cancer": d.cancer, "outcomes": sorted(d.outcomes)}
                    for n, d in DATASETS.items()
                },
                indent=2,
            )
        )
        return
    table = Table(title="metastat built-in cohorts (real, public)")
    table.add_column("name", no_wrap=True, style="bold")
    for col in ("cancer", "outcomes", "platform", "source"):
        table.add_column(col)
    for n in sorted(DATASETS):
        d = DATASETS[n]
        table.add_row(n, d.cancer, ", ".join(d.outcomes), d.platform, d.accession)
    Console().print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Dataset name (see `metastat datasets list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe one cohort: size, outcomes with event counts, provenance and citation."""
    info = dataset_info(name)
    adata = load_dataset(name)
    outcomes = {}
    for o, spec in info.outcomes.items():
        r = resolve_outcome(adata, o)
        m = r.usable_mask
        outcomes[o] = {
            "kind": spec.kind,
            "event": spec.event,
            "time": spec.time,
            "time_unit": spec.time_unit,
            "horizon": spec.horizon,
            "n": int(m.sum()),
            "events": int(np.nansum(r.event[m])),
            "description": spec.description,
        }
    out = {
        "name": name,
        "title": info.title,
        "cancer": info.cancer,
        "platform": info.platform,
        "samples": adata.n_obs,
        "patients": int(adata.obs["patient_id"].nunique()),
        "features": adata.n_vars,
        "value_scale": info.value_scale,
        "source": info.accession,
        "citation": info.citation,
        "outcomes": outcomes,
        "notes": info.notes,
    }
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    console = Console()
    console.print(f"[bold]{name}[/bold]: {info.title}")
    for k in (
        "cancer",
        "platform",
        "samples",
        "patients",
        "features",
        "value_scale",
        "source",
        "citation",
        "notes",
    ):
        if out[k]:
            console.print(f"  {k}: {out[k]}")
    for o, d in outcomes.items():
        unit = f", time {d['time']} ({d['time_unit']})" if d["time"] else ""
        console.print(
            f"  outcome [bold]{o}[/bold] ({d['kind']}): event {d['event']!r}{unit}; "
            f"{d['events']} events / {d['n']} samples"
        )
