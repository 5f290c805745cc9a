"""``metastat report``: an index page linking the reports of several run folders."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Index page linking the reports of several runs.")


@app.callback()
def _group() -> None:
    """Reports across run folders (each run's own report: `metastat expression report`)."""


@app.command()
def index(
    root: Path = typer.Argument(..., help="Folder whose sub-folders hold report.html files."),
    out: Path | None = typer.Option(None, "--out", help="HTML file (default ROOT/index.html)."),
) -> None:
    """Write ROOT/index.html linking every ROOT/*/report.html with what was done and the result."""
    from metastat.report.html import write_index

    typer.echo(f"wrote {write_index(root, out)}")
