"""Module loggers (``logging.getLogger(__name__)``) surface on stderr through the CLI."""

from __future__ import annotations

import logging

import numpy as np


def test_cli_surfaces_module_warnings_on_stderr(capsys, monkeypatch):
    from metastat.cli import main as cli_main

    root = logging.getLogger("metastat")
    monkeypatch.setattr(root, "handlers", [])
    cli_main._surface_warnings()
    from metastat.mil.infer import Head, fit_calibration

    lv = np.c_[np.zeros(4), np.arange(4.0)]
    assert fit_calibration(Head("binary"), lv, np.array([0, 0, 1, 1]), lv, None, None) == {}
    err = capsys.readouterr().err
    assert err.startswith("warning: MIL: Platt scaling needs >= 8 validation bags")
    assert "(4 bags, 2 positive)" in err and "val_fraction" in err
