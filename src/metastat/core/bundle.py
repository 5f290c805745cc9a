"""One model bundle for every model family: a folder with ``manifest.json`` + safetensors files.

``manifest.json`` holds the format name (``metastat.<family>.<kind>/<version>``), the run
provenance (versions, platform), the model's JSON state and the SHA-256 of every array file; the
arrays are safetensors (numpy arrays in ``arrays.safetensors``, network weights in
``weights.safetensors``). Array files are written first and the manifest last, each atomically,
so a folder with a manifest is complete. Nothing is pickled, nothing is executed on load.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metastat.atomic import atomic_path, atomic_write, save_arrays
from metastat.core.provenance import run_provenance, sha256_file, verify_sha256
from metastat.errors import ModelError

MANIFEST = "manifest.json"
ARRAYS = "arrays.safetensors"
WEIGHTS = "weights.safetensors"


@dataclass(frozen=True)
class Bundle:
    """A read, checksum-verified bundle: its folder, manifest and numpy arrays."""

    path: Path
    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def format(self) -> str:
        return str(self.manifest["format"])

    @property
    def digest(self) -> str:
        """SHA-256 of the main array file: the identity (version) of the fitted model."""
        return file_digests(self.manifest).get(ARRAYS, "")

    def weights(self) -> dict[str, Any]:
        """The network weights (``weights.safetensors``) as torch tensors."""
        from safetensors.torch import load_file

        return load_file(str(self.path / WEIGHTS))


def write_bundle(
    path: str | Path,
    fmt: str,
    state: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    *,
    weights: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
    float64: bool = True,
) -> Path:
    """Write a bundle to folder ``path``: arrays (and torch ``weights``), then the manifest
    ``{"format", provenance..., **state, "sha256": {file: digest}, **info}``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    save_arrays(out / ARRAYS, dict(arrays), float64=float64)
    files = [ARRAYS]
    if weights is not None:
        from safetensors.torch import save_file

        with atomic_path(out / WEIGHTS) as tmp:
            save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp))
        files.append(WEIGHTS)
    manifest = {
        "format": fmt,
        **run_provenance(),
        **state,
        "sha256": {name: sha256_file(out / name) for name in files},
        **(info or {}),
    }
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=2, default=str))
    return out


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of bundle folder ``path`` (a clear error when absent or corrupt)."""
    mf = Path(path) / MANIFEST
    if not mf.is_file():
        raise ModelError(f"{path}: not a metastat model folder (no {MANIFEST}).")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{mf}: corrupt manifest ({exc}).") from exc
    if not isinstance(manifest, dict) or "format" not in manifest:
        raise ModelError(f"{mf}: not a metastat manifest (no 'format').")
    return manifest


def file_digests(manifest: Mapping[str, Any]) -> dict[str, str]:
    """File -> SHA-256 recorded in a manifest (older bundles store the array file's as a string)."""
    digest = manifest.get("sha256")
    if isinstance(digest, str):
        return {ARRAYS: digest}
    return dict(digest or {})


def read_bundle(path: str | Path, formats: Iterable[str]) -> Bundle:
    """Read and verify bundle folder ``path``, whose format must be one of ``formats``."""
    from safetensors.numpy import load_file

    folder = Path(path)
    manifest = read_manifest(folder)
    allowed = tuple(formats)
    if manifest["format"] not in allowed:
        raise ModelError(
            f"{folder / MANIFEST}: unsupported model format {manifest['format']!r} "
            f"(this loader reads {', '.join(allowed)})."
        )
    digests = file_digests(manifest)
    if ARRAYS not in digests:
        raise ModelError(f"{folder / MANIFEST}: no checksum recorded for {ARRAYS}.")
    for name, digest in digests.items():
        if not verify_sha256(folder / name, digest):
            raise ModelError(
                f"{folder / name}: missing or checksum mismatch; the model is corrupt or was "
                "changed (save it again)."
            )
    return Bundle(folder, manifest, load_file(str(folder / ARRAYS)))
