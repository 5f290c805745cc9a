"""CLI start-up: CPU seconds of `metastat --help` and a usage error (lazy command groups) vs the
eager baseline that imports every group module first (what the CLI did before), side by side.

Run: python benchmarks/bench_cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys

CASES = {
    "metastat --help": "from metastat.cli.main import app; app(['--help'])",
    "metastat nosuch (usage error)": "from metastat.cli.main import app; app(['nosuch'])",
    "metastat slides encoders (registry without torch)": (
        "from metastat.cli.main import app; app(['slides', 'encoders'])"
    ),
    "eager baseline: import every group, then --help": (
        "import importlib\n"
        "from metastat.cli.main import GROUPS, app\n"
        "for g in GROUPS: importlib.import_module(g[1])\n"
        "app(['--help'])"
    ),
}


def cpu_seconds(code: str) -> float:
    """User + system CPU of one fresh interpreter running ``code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cpu_seconds("pass")  # warm the file cache
    medians = {}
    for name, code in CASES.items():
        runs = [cpu_seconds(code) for _ in range(args.repeats)]
        medians[name] = statistics.median(runs)
        print(f"{name:50s} median {medians[name]:.3f} s CPU  (min {min(runs):.3f})")
    base = medians["eager baseline: import every group, then --help"]
    print(f"speed-up of --help vs eager baseline: {base / medians['metastat --help']:.1f}x")


if __name__ == "__main__":
    main()
