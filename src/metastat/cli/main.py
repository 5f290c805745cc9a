"""Entry point: ``metastat [--quiet] <group> <command>``.

Each command group lives in its own module exposing ``app`` (a ``typer.Typer``). Groups load
lazily: ``metastat --help`` lists them from the static table below and a group's module (with its
scientific imports) is imported only when that group runs, so help and usage errors are instant.
Groups whose optional dependencies are not installed answer with the ``pip install`` hint.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from metastat.errors import MetastatError

if TYPE_CHECKING:
    from typer._click import Command  # typer vendors click; the type its commands have

#: (group name, module, help, extra needed)
GROUPS: tuple[tuple[str, str, str, str], ...] = (
    ("datasets", "metastat.cli.datasets", "Built-in real cohorts.", ""),
    ("expression", "metastat.cli.expression", "Gene expression -> recurrence / metastasis.", ""),
    ("slides", "metastat.cli.slides", "Whole-slide images -> tile features.", "slides"),
    ("mil", "metastat.cli.mil", "Attention MIL over tile-feature bags.", "mil"),
    (
        "fusion",
        "metastat.cli.fusion",
        "Fusion of expression, histology, radiology and clinical data.",
        "fusion",
    ),
    ("radiology", "metastat.cli.radiology", "CT / MRI lesions -> IBSI radiomics.", "radiology"),
    ("serve", "metastat.cli.serve", "Risk portal (web service and UI).", "serve"),
    ("report", "metastat.cli.report", "Index page linking the reports of several runs.", ""),
)


def _load_group(name: str, module: str, help_text: str, extra: str) -> Command:
    """The click command of one group, importing its module now."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        hint = f"pip install 'metastat[{extra}]'" if extra else "reinstall metastat"
        missing = exc.name

        def _missing(missing: str | None = missing, hint: str = hint) -> None:
            typer.echo(f"error: this command needs the package {missing!r}: {hint}", err=True)
            raise typer.Exit(2)

        sub = typer.Typer(add_completion=False)
        sub.command(name=name, help=f"{help_text} (unavailable: {hint})")(_missing)
        return typer.main.get_command(sub)
    sub = mod.app
    if not isinstance(sub, typer.Typer):  # a single command
        single = typer.Typer(add_completion=False)
        single.command(name=name, help=help_text)(sub)
        sub = single
    else:
        sub.info.help = help_text
    sub._add_completion = False  # completion options belong to the root only
    cmd = typer.main.get_command(sub)
    cmd.name = name
    return cmd


class LazyGroup(TyperGroup):
    """Root group listing GROUPS from static help and importing a group only when it runs."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False
        for name, _, help_text, _ in GROUPS:  # stubs: names for help and typo suggestions
            self.commands[name] = typer.core.TyperCommand(name=name, help=help_text)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = self.commands.get(cmd_name)
        spec = next((g for g in GROUPS if g[0] == cmd_name), None)
        if self._listing or spec is None or getattr(cmd, "_loaded", False):
            return cmd
        cmd = _load_group(*spec)
        cmd._loaded = True  # type: ignore[attr-defined]
        self.commands[cmd_name] = cmd
        return cmd

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="metastat",
    cls=LazyGroup,
    help="Predict cancer spread from gene expression, whole-slide images and clinical data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bars or status lines on stderr."
    ),
) -> None:
    """Predict cancer spread from gene expression, whole-slide images and clinical data."""
    from metastat.progress import set_quiet

    if quiet:
        set_quiet(True)


#: packages of the optional extras (a missing one is an install hint, not a traceback)
OPTIONAL = {
    "torch",
    "torchvision",
    "timm",
    "openslide",
    "tiffslide",
    "h5py",
    "zarr",
    "skimage",
    "dask",
    "distributed",
    "fastapi",
    "uvicorn",
    "httpx",
    "multipart",
}


def _install_hint(argv: list[str]) -> str:
    group = next((a for a in argv if not a.startswith("-")), "")
    extra = next((g[3] for g in GROUPS if g[0] == group and g[3]), "all")
    return f"pip install 'metastat[{extra}]'"


def _surface_warnings() -> None:
    """Warnings logged by any ``metastat.*`` module go to stderr as ``warning: ...`` lines."""
    root = logging.getLogger("metastat")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)


def main() -> None:
    """Run the CLI, turning metastat errors into one clear line and exit code 2."""
    _surface_warnings()
    try:
        app()
    except MetastatError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in OPTIONAL:
            raise
        hint = _install_hint(sys.argv[1:])
        typer.echo(f"error: this command needs the package {exc.name!r}: {hint}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
