"""``metastat datasets``: list and describe the built-in real cohorts and clinical-only tables."""

from __future__ import annotations

import json
from typing import Any

import typer

app = typer.Typer(no_args_is_help=True, help="Built-in real cohorts.")


def _rows() -> list[dict]:
    """One row per built-in table: expression cohorts, then clinical-only tables."""
    from metastat.clinical.datasets import CLINICAL_TABLES
    from metastat.data.registry import DATASETS

    rows = [
        {
            "name": n,
            "data": "expression + clinical",
            "cancer": d.cancer,
            "outcomes": list(d.outcomes),
            "source": d.accession,
            "title": d.title,
        }
        for n, d in sorted(DATASETS.items())
    ]
    rows += [
        {
            "name": n,
            "data": "clinical only (fusion)",
            "cancer": "pan-cancer" if n.startswith("tcga") else n.split("_")[0],
            "outcomes": list(outcomes),
            "source": desc,
            "title": desc,
        }
        for n, (_, _, outcomes, desc) in sorted(CLINICAL_TABLES.items())
    ]
    return rows


@app.command("list")
def list_datasets(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the built-in tables: expression cohorts and clinical-only tables (for fusion)."""
    rows = _rows()
    if as_json:
        typer.echo(json.dumps({r.pop("name"): r for r in rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="metastat built-in tables (real, public)")
    table.add_column("name", no_wrap=True, style="bold")
    for col in ("data", "cancer", "outcomes", "source"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["data"], r["cancer"], ", ".join(r["outcomes"]), r["source"])
    Console(width=max(Console().width, 120)).print(table)
    typer.echo(
        "expression: `metastat expression evaluate -d NAME -o OUTCOME`; "
        "any table: `metastat fusion evaluate -d NAME -o OUTCOME`."
    )


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Dataset name (see `metastat datasets list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe one cohort: size, outcomes with event counts, provenance and citation."""
    import numpy as np
    from rich.console import Console

    from metastat.clinical.datasets import CLINICAL_TABLES, load_clinical_table
    from metastat.data.outcomes import resolve_outcome
    from metastat.data.registry import dataset_info, load_dataset

    if name in CLINICAL_TABLES:
        adata = load_clinical_table(name)
        specs = CLINICAL_TABLES[name][2]
        out: dict[str, Any] = {
            "name": name,
            "title": CLINICAL_TABLES[name][3],
            "kind": "clinical only",
        }
    else:
        info = dataset_info(name)
        adata = load_dataset(name)
        specs = info.outcomes
        out = {
            "name": name,
            "title": info.title,
            "kind": "expression + clinical",
            "cancer": info.cancer,
            "platform": info.platform,
            "features": adata.n_vars,
            "value_scale": info.value_scale,
            "source": info.accession,
            "citation": info.citation,
            "notes": info.notes,
        }
    outcomes = {}
    for o, spec in specs.items():
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
    out |= {
        "samples": adata.n_obs,
        "patients": int(adata.obs["patient_id"].nunique()),
        "outcomes": outcomes,
    }
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    console = Console()
    console.print(f"[bold]{name}[/bold]: {out['title']}", markup=True)
    for k, v in out.items():
        if k not in ("name", "title", "outcomes") and v:
            console.print(f"  {k}: {v}", markup=False)
    for o, d in outcomes.items():
        unit = f", time {d['time']} ({d['time_unit']})" if d["time"] else ""
        console.print(
            f"  outcome {o} ({d['kind']}): event {d['event']!r}{unit}; "
            f"{d['events']} events / {d['n']} samples",
            markup=False,
        )
