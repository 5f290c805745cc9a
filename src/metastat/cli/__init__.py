"""metastat command-line interface (typer)."""
