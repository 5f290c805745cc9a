"""Model registry: what a models directory holds (expression models, MIL checkpoints, fusion
models, runs).

Each sub-folder of the models directory is one entry, named by the folder; its model family comes
from the ``format`` its manifest declares (:data:`FAMILIES`):

* ``manifest.json`` of format ``metastat.expression.*`` -> an expression model (``/api/models``,
  modality ``expression``);
* ``manifest.json`` of format ``metastat.mil.*`` (``metastat mil train``; earlier versions:
  ``mil.json`` of format ``metastat-mil/*``) -> a MIL checkpoint (``/api/models``, modality
  ``slide``);
* ``manifest.json`` of format ``metastat.fusion.*`` (``metastat fusion fit``) -> a fusion model,
  only recorded here and loaded on first use by :mod:`metastat.serve.routes_fusion`
  (``/api/fusion/models``);
* ``predictions.csv`` + ``metrics.json`` + ``run.json`` -> an evaluation run (results page).

Expression or MIL folders that fail to load, and manifests of an unknown format, are listed under
``problems`` with the reason instead of stopping the service.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from metastat.core.bundle import file_digests
from metastat.core.provenance import sha256_file
from metastat.errors import MetastatError, ModelError, UnknownNameError, did_you_mean

log = logging.getLogger("metastat.serve")

Modality = Literal["expression", "slide"]
Family = Literal["expression", "slide", "fusion"]
RUN_FILES = ("predictions.csv", "metrics.json", "run.json")
#: format prefix of a model folder's manifest -> its family
FAMILIES: dict[str, Family] = {
    "metastat.expression.": "expression",
    "metastat.mil.": "slide",
    "metastat-mil/": "slide",
    "metastat.fusion.": "fusion",
}


@dataclass
class ModelEntry:
    """A loaded model: name, version, modality, manifest and the object that scores."""

    name: str
    version: str
    modality: Modality
    manifest: dict[str, Any]
    model: Any
    path: Path

    def describe(self) -> dict[str, Any]:
        """Public description (no filesystem paths)."""
        m = self.manifest
        if self.modality == "expression":
            keys = ("model", "task", "outcome", "horizon", "time_unit", "training_cohort")
            info = {k: m.get(k) for k in keys} | {
                "n_genes": len(m.get("genes", [])),
                "n_train": m.get("n_train"),
                "events": m.get("events"),
            }
        else:
            info = {
                "model": m.get("model"),
                "encoder": m.get("encoder"),
                "task": (m.get("head") or {}).get("task"),
                "in_dim": (m.get("spec") or {}).get("in_dim"),
            }
        return {"name": self.name, "version": self.version, "modality": self.modality, **info}


@dataclass
class Registry:
    """All entries of a models directory, loaded once at start."""

    models: dict[str, ModelEntry] = field(default_factory=dict)
    fusion: dict[str, Path] = field(default_factory=dict)
    runs: dict[str, Path] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, modality: Modality | None = None) -> ModelEntry:
        """The entry called ``name`` (of ``modality``), or a 404-able UnknownNameError."""
        pool = {k: v for k, v in self.models.items() if modality is None or v.modality == modality}
        if name not in pool:
            what = f"{modality} model" if modality else "model"
            raise UnknownNameError(
                f"unknown {what} {name!r}; available: {sorted(pool)}."
                f"{did_you_mean(name, list(pool))}"
            )
        return pool[name]

    def first(self, modality: Modality) -> ModelEntry | None:
        """The first entry of ``modality`` by name (the default choice), if any."""
        names = sorted(k for k, v in self.models.items() if v.modality == modality)
        return self.models[names[0]] if names else None

    def run(self, name: str) -> Path:
        """Folder of the evaluation run ``name``."""
        if name not in self.runs:
            raise UnknownNameError(
                f"unknown run {name!r}; available: {sorted(self.runs)}."
                f"{did_you_mean(name, list(self.runs))}"
            )
        return self.runs[name]


def _version(manifest: dict[str, Any], weights: Path) -> str:
    if manifest.get("version"):
        return str(manifest["version"])
    digest = file_digests(manifest).get(weights.name) or sha256_file(weights)
    return digest[:12]


def family(folder: Path) -> Family | None:
    """The model family of ``folder`` from its manifest's format (None: not a model folder);
    a manifest of an unknown format is a :class:`ModelError` naming it."""
    name = "mil.json" if (folder / "mil.json").exists() else "manifest.json"
    if not (folder / name).exists():
        return None
    fmt = str(json.loads((folder / name).read_text(encoding="utf-8")).get("format"))
    for prefix, fam in FAMILIES.items():
        if fmt.startswith(prefix):
            return fam
    known = ", ".join(f"{p}*" for p in FAMILIES)
    raise ModelError(f"{folder.name}/{name}: unknown model format {fmt!r} (served: {known}).")


def _load_entry(folder: Path, fam: Family) -> ModelEntry:
    if fam == "expression":
        from metastat.expression.persist import ARRAYS, load_model

        model, manifest = load_model(folder)
        return ModelEntry(
            folder.name, _version(manifest, folder / ARRAYS), "expression", manifest, model, folder
        )
    from metastat.core.bundle import WEIGHTS
    from metastat.mil.checkpoint import META, load_checkpoint
    from metastat.mil.checkpoint import WEIGHTS as LEGACY_WEIGHTS

    ckpt = load_checkpoint(folder)
    weights = folder / (LEGACY_WEIGHTS if (folder / META).exists() else WEIGHTS)
    return ModelEntry(folder.name, _version(ckpt.meta, weights), "slide", ckpt.meta, ckpt, folder)


def load_registry(models_dir: Path) -> Registry:
    """Scan ``models_dir`` (one level deep); bad folders are recorded, not fatal."""
    reg = Registry()
    for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        if folder.name.startswith("."):
            continue
        if all((folder / f).exists() for f in RUN_FILES):
            reg.runs[folder.name] = folder
            continue
        try:
            fam = family(folder)
            if fam == "fusion":
                reg.fusion[folder.name] = folder
            elif fam is not None:
                entry = _load_entry(folder, fam)
                reg.models[entry.name] = entry
        except (MetastatError, OSError, ValueError, KeyError) as exc:  # JSONDecodeError too
            reg.problems[folder.name] = str(exc)
            log.warning("skipping %s: %s", folder.name, exc)
        except ModuleNotFoundError as exc:  # e.g. a MIL checkpoint without torch installed
            reg.problems[folder.name] = f"needs the package {exc.name!r}"
    return reg
