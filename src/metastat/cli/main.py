"""Entry point: ``metastat <group> <command>``.

Each command group lives in its own module exposing ``app`` (a ``typer.Typer``); groups whose
optional dependencies are not installed are skipped with a hint instead of breaking the CLI.
"""

from __future__ import annotations

import importlib
import sys

import typer

from metastat.errors import MetastatError

app = typer.Typer(
    name="metastat",
    help="Predict cancer spread from gene expression, whole-slide images and clinical data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

#: (group name, module, help, extra needed)
GROUPS: tuple[tuple[str, str, str, str], ...] = (
    ("datasets", "metastat.cli.datasets", "Built-in real cohorts.", ""),
    ("expression", "metastat.cli.expression", "Gene expression -> recurrence / metastasis.", ""),
    ("slides", "metastat.cli.slides", "Whole-slide images -> tile features.", "slides"),
    ("mil", "metastat.cli.mil", "Attention MIL over tile-feature bags.", "mil"),
    ("fusion", "metastat.cli.fusion", "Fusion of expression, histology and clinical data.", ""),
    ("radiology", "metastat.cli.radiology", "CT / MRI lesions -> IBSI radiomics.", "radiology"),
    ("serve", "metastat.cli.serve", "Risk portal (web service and UI).", "serve"),
)


def _register() -> None:
    for name, module, help_text, extra in GROUPS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # group not part of this build
                continue
            hint = f"pip install 'metastat[{extra}]'" if extra else "reinstall metastat"
            missing = exc.name

            def _missing(missing: str = missing, hint: str = hint) -> None:
                typer.echo(f"error: this command needs the package {missing!r}: {hint}", err=True)
                raise typer.Exit(2)

            app.command(name=name, help=f"{help_text} (unavailable: {hint})")(_missing)
            continue
        sub = mod.app
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=name, help=help_text)
        else:  # a single command
            app.command(name=name, help=help_text)(sub)


_register()


def main() -> None:
    """Run the CLI, turning metastat errors into one clear line and exit code 2."""
    try:
        app()
    except MetastatError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
