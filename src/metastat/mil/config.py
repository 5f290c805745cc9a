"""Validated MIL run configuration (JSON, TOML or YAML file); unknown keys are rejected."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticError

from metastat.errors import InputError
from metastat.mil.models import MODELS, get_model_entry, resolve_params

# flat keys of configs written before the model registry -> the models' hyper-parameter names
LEGACY_PARAMS = {
    "hidden_dim": "hidden_dim",
    "attention_dim": "attention_dim",
    "dropout": "dropout",
    "n_heads": "n_heads",
    "n_layers": "n_layers",
    "clam_k": "k",
    "clam_subtyping": "subtyping",
    "clam_weight": "instance_weight",
}
Task = Literal["binary", "multiclass", "survival"]


class DataConfig(BaseModel):
    """Where bags and outcomes are: a manifest CSV with one row per slide."""

    model_config = ConfigDict(extra="forbid")

    manifest: Path | None = Field(None, description="CSV: slide_id, patient_id, [path], outcome")
    features_dir: Path | None = Field(None, description="folder of <slide_id>.h5 feature files")
    label: str = Field("label", description="binary / class label column")
    time: str | None = Field(None, description="follow-up time column (survival)")
    event: str | None = Field(None, description="event indicator column (survival)")


class MILConfig(BaseModel):
    """Everything that defines a MIL training run (recorded with each checkpoint)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("abmil", description="a registered MIL model (metastat.mil.models)")
    baseline: str = "mean"
    task: Task = "binary"
    survival_loss: Literal["nll", "cox"] = "nll"
    cox_ties: Literal["breslow", "efron"] = Field(
        "breslow", description="tied event times in the Cox partial likelihood"
    )
    n_time_bins: int = Field(4, ge=2, le=32)
    horizon: float | None = Field(None, gt=0, description="time for prob/binary in survival")
    unit: Literal["patient", "slide"] = Field(
        "patient", description="one bag per patient (slides pooled) or per slide"
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="model hyper-parameters: shared keys (each model takes those it has) and "
        "a table per model name (e.g. params.clam_sb.k = 8), validated by the model's schema",
    )
    epochs: int = Field(40, ge=1)
    min_epochs: int = Field(5, ge=0)
    patience: int = Field(8, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(4, ge=1)
    max_tiles: int | None = Field(4096, ge=1, description="tiles sampled per bag in training")
    class_weighting: bool = True
    n_splits: int = Field(5, ge=2)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    val_fraction: float = Field(0.2, gt=0, lt=0.9)
    calibrate: bool = True
    n_boot: int = Field(1000, ge=0)
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: default)")
    data: DataConfig = Field(default_factory=DataConfig)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, raw: Any) -> Any:
        """Flat hyper-parameter keys (``hidden_dim = 64``) become shared ``params`` entries."""
        if isinstance(raw, dict) and set(raw) & set(LEGACY_PARAMS):
            raw = dict(raw)
            params = dict(raw.get("params") or {})
            for old, new in LEGACY_PARAMS.items():
                if old in raw:
                    params.setdefault(new, raw.pop(old))
            raw["params"] = params
        return raw

    @field_validator("model", "baseline")
    @classmethod
    def _registered(cls, name: str) -> str:
        get_model_entry(name)  # raises naming the known models
        return name

    @model_validator(mode="after")
    def _check(self) -> MILConfig:
        self.min_epochs = min(self.min_epochs, self.epochs)  # a short run stops when it ends
        tables = {k for k, v in self.params.items() if isinstance(v, dict)}
        unknown = tables - set(MODELS)
        if unknown:
            raise ValueError(f"params for unknown MIL models {sorted(unknown)}")
        known = {f for e in MODELS.values() for f in e.params.model_fields}
        stray = set(self.params) - tables - known
        if stray:
            raise ValueError(
                f"params {sorted(stray)} are hyper-parameters of no MIL model "
                f"(known: {', '.join(sorted(known))})"
            )
        for name in {self.model, self.baseline}:
            self.params_for(name)
        return self

    def params_for(self, name: str) -> dict[str, Any]:
        """Validated hyper-parameters of model ``name`` (shared keys + its own table)."""
        shared = {k: v for k, v in self.params.items() if not isinstance(v, dict)}
        return resolve_params(name, shared, self.params.get(name))


def load_config(path: str | Path | None = None, **overrides: Any) -> MILConfig:
    """Read a config file (.json / .toml / .yaml), apply non-None ``overrides``, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read MIL config '{p}': {exc}") from exc
        try:
            if p.suffix == ".toml":
                raw = tomllib.loads(text)
            elif p.suffix in {".yaml", ".yml"}:
                import yaml

                raw = yaml.safe_load(text) or {}
            else:
                raw = json.loads(text)
        except Exception as exc:
            raise InputError(f"MIL config '{p}' is not valid {p.suffix or 'JSON'}: {exc}") from exc
    data = dict(raw.get("data", {}))
    for key in ("manifest", "features_dir", "label", "time", "event"):
        if overrides.get(key) is not None:
            data[key] = overrides.pop(key)
        overrides.pop(key, None)
    raw = {**raw, **{k: v for k, v in overrides.items() if v is not None}, "data": data}
    try:
        return MILConfig.model_validate(raw)
    except PydanticError as exc:
        where = f"'{path}'" if path is not None else "the options"
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise InputError(f"invalid MIL config in {where}: " + "; ".join(lines)) from exc
