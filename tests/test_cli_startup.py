"""The CLI starts instantly: help, usage errors and group modules import no scientific stack.

Each check runs in a fresh interpreter (this test process has imported everything already) and
lists which heavy modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sklearn", "torch", "anndata", "pandas", "scipy", "matplotlib", "sksurv")

PROBE = """
import json, sys
{body}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _heavy_after(body: str) -> list[str]:
    code = PROBE.format(body=body, heavy=HEAVY)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_importing_the_cli_imports_no_scientific_stack() -> None:
    assert _heavy_after("import metastat.cli.main") == []


@pytest.mark.parametrize(
    "args",
    [["--help"], ["nosuch"], ["expresion"], ["--quiet", "--help"], ["datasets", "--help"]],
)
def test_help_and_usage_errors_import_no_scientific_stack(args: list[str]) -> None:
    body = (
        "import contextlib, io\n"
        "from metastat.cli.main import app\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "    try:\n"
        f"        app({args!r}, standalone_mode=False)\n"
        "    except BaseException:\n"
        "        pass"
    )
    assert _heavy_after(body) == []


@pytest.mark.parametrize(
    "module", ["datasets", "expression", "slides", "mil", "fusion", "serve", "report"]
)
def test_group_modules_import_lazily(module: str) -> None:
    """``metastat GROUP --help`` and a group's usage errors stay instant too."""
    assert _heavy_after(f"import metastat.cli.{module}") == []


def test_help_lists_every_group_and_quiet() -> None:
    from typer.testing import CliRunner

    from metastat.cli.main import GROUPS, app

    r = CliRunner().invoke(app, ["--help"])
    assert r.exit_code == 0
    for name, _, help_text, _ in GROUPS:
        assert name in r.output and help_text in r.output
    assert "--quiet" in r.output
    r = CliRunner().invoke(app, ["expresion"])
    assert r.exit_code == 2 and "Did you mean 'expression'" in r.output


def test_progress_goes_to_stderr_and_quiet_silences_it(capsys: pytest.CaptureFixture) -> None:
    import pandas as pd
    from typer.testing import CliRunner

    from metastat import progress as prog
    from metastat.cli.main import app
    from metastat.evaluate.bootstrap import bootstrap_metrics

    frame = pd.DataFrame({"patient_id": list("abcdefghij"), "x": range(10)})
    mean = lambda f: {"mean": float(f["x"].mean())}  # noqa: E731
    try:
        prog.set_quiet(False)
        bootstrap_metrics(frame, mean, n_boot=20, progress=True)
        out, err = capsys.readouterr()
        assert out == "" and "bootstrap CIs" in err
        r = CliRunner().invoke(app, ["--quiet", "datasets", "list", "--json"])
        assert r.exit_code == 0 and prog.is_quiet()
        bootstrap_metrics(frame, mean, n_boot=20, progress=True)
        assert capsys.readouterr().err == ""
    finally:
        prog.set_quiet(False)
