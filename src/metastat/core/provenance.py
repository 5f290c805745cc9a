"""File checksums and run provenance: one implementation for bundles, feature files and runs."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from contextlib import suppress
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

CHUNK = 1 << 20


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file with any :mod:`hashlib` algorithm (``md5``, ``sha256`` ...), read in
    1 MiB chunks (large slides and weights files never sit in memory)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def copy_with_digest(
    src: IO[bytes], dest: str | os.PathLike[str], algorithm: str = "sha256"
) -> str:
    """Stream ``src`` into the file ``dest`` in 1 MiB chunks; returns the hex digest of what was
    written (an upload is hashed while it is stored, never held in memory)."""
    return copy_with_digests(src, dest, (algorithm,))[algorithm]


def copy_with_digests(
    src: IO[bytes], dest: str | os.PathLike[str], algorithms: tuple[str, ...]
) -> dict[str, str]:
    """:func:`copy_with_digest` with several digests in the one pass (e.g. sha256 and md5)."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(dest, "wb") as fh:
        while block := src.read(CHUNK):
            for h in hashes.values():
                h.update(block)
            fh.write(block)
    return {a: h.hexdigest() for a, h in hashes.items()}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    return file_digest(path, "sha256")


def verify_sha256(path: str | os.PathLike[str], digest: str | None) -> bool:
    """Whether ``path`` exists and has SHA-256 ``digest``."""
    p = Path(path)
    return digest is not None and p.is_file() and sha256_file(p) == digest


@lru_cache(maxsize=64)
def _cached_digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def weights_digest(path: str | os.PathLike[str] | None) -> str | None:
    """SHA-256 of a weights file, cached per (path, size, mtime): the identity of the weights,
    not their file name (two files named ``model.bin`` are not the same encoder)."""
    if path is None:
        return None
    p = Path(path).resolve()
    st = p.stat()
    return _cached_digest(str(p), st.st_size, st.st_mtime_ns)


def versions() -> dict[str, str]:
    """Versions of metastat, Python and the numerical libraries in use (torch when loaded)."""
    import numpy as np
    import pandas as pd
    import sklearn

    from metastat import __version__

    out = {
        "metastat": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
    }
    for dist in ("scikit-survival", "anndata"):  # core dependencies, by distribution name
        with suppress(PackageNotFoundError):
            out[dist] = version(dist)
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = str(torch.__version__)
    return out


def settings_digest(settings: Any, length: int = 16) -> str:
    """First ``length`` hex digits of the SHA-256 of ``settings`` as sorted-key JSON: the
    fingerprint that says whether a stored result was made with the same settings."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def run_provenance(**extra: Any) -> dict[str, Any]:
    """What a run or saved model records about how it was made: versions plus ``extra``
    (config, seeds, cohort, input digests)."""
    return {**versions(), "platform": platform.platform(terse=True), **extra}
