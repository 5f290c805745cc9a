"""Docs that run on what ships: every ``metastat`` command in README.md and docs/*.md is extracted.

* every command parses against the real CLI (group, command, option names, types, required
  options) — a renamed option or a typo in the docs fails here;
* a documented subset runs as written, on a fresh checkout's files only (no ``../shared``), in a
  scratch folder where ``tests/`` points at the repository's shipped test data;
* every other command carries the reason it is not run here (``EXCLUDED``), and a new command in
  the docs fails until it is run or given a reason.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from metastat.cli.main import app

REPO = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]

#: run as written, in this order (fit before predict)
RUN = [
    ("README.md", "metastat datasets list"),
    ("README.md", "metastat datasets show gastric_acrg"),
    ("README.md", "metastat expression signatures"),
    ("docs/slides.md", "metastat slides info tests/data/slides/CMU-1-Small-Region.svs"),
    ("docs/slides.md", "metastat slides encoders"),
    ("docs/slides.md", "metastat slides tile tests/data/slides --out runs/tiles --mpp 0.5"),
    ("docs/fusion.md", "metastat fusion fit -d breast_nki -o dmfs --out models/nki_fusion"),
    ("docs/fusion.md", "metastat fusion predict -m models/nki_fusion -d breast_nki --json"),
    ("docs/mil.md", "metastat mil planted --out runs/planted"),
]

#: the user's own files / hosts named in the docs
PLACEHOLDERS = {
    "expr.csv", "clinical.csv", "new_profiles.csv", "manifest.csv", "feats/", "new_slides.csv",
    "new_clinical.csv", "new_expr.csv", "features/", "new.csv", "new_features/", "SLIDES/", "DIR",
    "tcp://HOST:8786", "runs/mine", "models/dmfs", "runs/ln_cv", "runs/ln/model",
    "ext_expr.csv", "ext_clinical.csv", "ct_series/", "lesion.seg.dcm", "ct.nii.gz",
    "lesion.nii.gz", "cohort.csv", "radiology=radiomics.csv", "radiology=new_rad.csv",
    "gdc_manifest.txt",
}  # fmt: skip

#: (command prefix(es), why it is not run by this test); first match wins
EXCLUDED: list[tuple[str | tuple[str, ...], str]] = [
    ("metastat serve", "starts a long-running web server; tests/test_serve_api.py serves the demo"),
    (
        "metastat slides process tests/data/slides",
        "run as written by tests/test_slides_cli.py::test_shipped_slides_exactly_as_documented",
    ),
    ("metastat slides synth", "writes a 4096 x 3072 pyramid (minutes); slides tests cover synth"),
    (
        "metastat expression evaluate",
        "minutes of CPU (nested CV, 1000 bootstrap replicates); `make demo` runs the ACRG ones, "
        "tests/test_validate_cli.py the same code on breast_transbig with fewer replicates",
    ),
    (
        "metastat fusion evaluate",
        "minutes of CPU (5-fold CV x every model x 1000 bootstrap replicates); "
        "tests/test_fusion_cli.py runs the same paths with fewer replicates",
    ),
    ("metastat fusion generate", "fits a cVAE per fold (minutes); tests/test_fusion_cli.py"),
    (
        "metastat mil planted --out demo",
        "the same command as the quick start's `--out runs/planted`, which this test runs",
    ),
    (
        tuple(f"metastat mil {c}" for c in ("evaluate", "train", "predict", "heatmap", "report")),
        "trains MIL models for minutes on CPU; tests/test_mil_cli.py runs train/predict/heatmap/"
        "report on a smaller planted cohort",
    ),
]


def doc_commands(path: Path) -> list[str]:
    """``metastat ...`` lines of the ``bash`` blocks (continuations joined, comments dropped)."""
    out = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", path.read_text(), re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.strip().startswith("metastat "):
                out.append(" ".join(shlex.split(line, comments=True)))
    return out


ALL = [(doc, cmd) for doc in DOCS for cmd in doc_commands(REPO / doc)]


def _has_planted() -> bool:
    from metastat.cli.mil import app as mil_app

    names = {c.name or c.callback.__name__ for c in mil_app.registered_commands if c.callback}
    return "planted" in names


def _needs_planted(cmd: str) -> bool:
    return "runs/planted" in cmd and not _has_planted()


def why_not_run(cmd: str) -> str | None:
    """The reason a documented command is not run here (None: it is run)."""
    if any(tok in PLACEHOLDERS for tok in shlex.split(cmd)):
        return "needs the user's own files (placeholders in the docs)"
    return next((why for prefix, why in EXCLUDED if cmd.startswith(prefix)), None)


def parse(cmd: str) -> None:
    """Parse ``cmd`` with the CLI down to its command (no run): raises on any usage error."""
    args = shlex.split(cmd)[1:]
    command = typer.main.get_command(app)
    name, parent = "metastat", None
    while True:
        ctx = command.make_context(name, list(args), parent=parent)
        if not hasattr(command, "resolve_command"):
            return
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, command, args = command.resolve_command(ctx, rest)
        parent = ctx


def test_docs_have_commands_and_every_one_is_run_or_excluded_with_a_reason() -> None:
    assert len(ALL) > 30
    for doc, cmd in ALL:
        assert (doc, cmd) in RUN or why_not_run(cmd), f"{doc}: `{cmd}` is neither run nor excluded"
    for entry in RUN:
        assert entry in ALL, f"RUN lists `{entry[1]}`, no longer in {entry[0]}"
        assert why_not_run(entry[1]) is None


@pytest.mark.parametrize(("doc", "cmd"), ALL, ids=[f"{d}:{c[9:60]}" for d, c in ALL])
def test_every_documented_command_parses(doc: str, cmd: str) -> None:
    if _needs_planted(cmd):
        pytest.skip("`metastat mil planted` comes with the planted-benchmark branch (not here)")
    parse(cmd)


def test_documented_subset_runs_on_what_ships(tmp_path: Path) -> None:
    """RUN, as written, from a scratch folder holding only the shipped test data."""
    pytest.importorskip("torch")  # slides encoders, mil planted: the test install has every extra
    (tmp_path / "tests").symlink_to(REPO / "tests")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "METASTAT_QUIET": "1"}
    for doc, cmd in RUN:
        if _needs_planted(cmd):
            continue
        args = [sys.executable, "-m", "metastat.cli.main", *shlex.split(cmd)[1:]]
        r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{doc}: `{cmd}` failed:\n{r.stderr[-2000:]}"
        assert r.stdout.strip(), f"{doc}: `{cmd}` printed nothing"
    assert (tmp_path / "models" / "nki_fusion").is_dir()
