"""Service settings: where models and outputs live, limits, token, allowed slide roots."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from metastat.errors import InputError
from metastat.serve.limits import Limits
from metastat.serve.security import (
    LOOPBACK_NAMES,
    NEW_TOKEN_HINT,
    host_name,
    weak_token_reason,
)
from metastat.slides.pipeline import ProcessConfig

MiB = 2**20
TOKEN_ENV = "METASTAT_TOKEN"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServeSettings(BaseModel):
    """Everything the portal needs to start; validated before anything binds a socket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models_dir: Path
    data_dir: Path = Field(Path("metastat-serve"), description="jobs, uploads, audit log")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: SecretStr | None = None
    allowed_hosts: tuple[str, ...] = Field(
        (), description="extra Host names to answer to (loopback names are always allowed)"
    )
    scheduler: str | None = Field(None, description="Dask scheduler for slide jobs (tcp://...)")
    slide_workers: int = Field(1, ge=1, le=256, description="slide jobs run at once")
    slide_roots: tuple[Path, ...] = Field((), description="server-side slide paths must lie here")
    max_profile_bytes: int = Field(
        24 * MiB, ge=1024, description="scoring uploads / JSON bodies (fits max_samples profiles)"
    )
    max_slide_bytes: int = Field(4096 * MiB, ge=1024, description="slide uploads")
    max_samples: int = Field(2000, ge=1, le=100_000, description="profiles per scoring request")
    max_columns: int = Field(60_000, ge=10, description="columns (genes) per scoring request")
    max_cells: int = Field(2_500_000, ge=100, description="values per scoring request")
    max_json_depth: int = Field(8, ge=4, le=64, description="JSON nesting depth")
    top_genes: int = Field(10, ge=1, le=100)
    top_tiles: int = Field(8, ge=1, le=64)
    slide_process: ProcessConfig = ProcessConfig(qc=False)

    @field_validator("models_dir")
    @classmethod
    def _models_exist(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"models directory '{v}' does not exist or is not a folder")
        return v.resolve()

    @field_validator("token", mode="before")
    @classmethod
    def _blank_token(cls, v: object) -> object:
        text = v.get_secret_value() if isinstance(v, SecretStr) else v
        return None if isinstance(text, str) and not text.strip() else v

    @field_validator("slide_roots")
    @classmethod
    def _roots_exist(cls, v: tuple[Path, ...]) -> tuple[Path, ...]:
        for root in v:
            if not root.is_dir():
                raise ValueError(f"slide root '{root}' does not exist or is not a folder")
        return tuple(r.resolve() for r in v)

    @property
    def limits(self) -> Limits:
        """The per-request scoring limits."""
        return Limits(self.max_samples, self.max_columns, self.max_cells, self.max_json_depth)

    @property
    def token_value(self) -> str | None:
        """The bearer token, or None when auth is off (loopback only)."""
        return self.token.get_secret_value() if self.token is not None else None

    def check_exposure(self) -> None:
        """Refuse to serve beyond localhost without a token, or with a weak one."""
        if is_loopback(self.host):
            return
        if self.token is None:
            raise InputError(
                f"refusing to bind to {self.host!r} without a token: anyone on the network could "
                f"use the service. Pass --token or set {TOKEN_ENV}, or bind to 127.0.0.1."
            )
        weak = weak_token_reason(self.token.get_secret_value())
        if weak:
            raise InputError(
                f"refusing to bind to {self.host!r} with a weak token ({weak}): make one with "
                f"{NEW_TOKEN_HINT}"
            )

    @property
    def host_allowlist(self) -> frozenset[str] | None:
        """Host names the service answers to; None = any (a token guards an exposed bind and
        no --allowed-host was given)."""
        if self.token is not None and not is_loopback(self.host) and not self.allowed_hosts:
            return None
        extra = {host_name(h) for h in self.allowed_hosts}
        if self.host not in ("0.0.0.0", "::"):
            extra.add(host_name(self.host))
        return LOOPBACK_NAMES | extra


def token_from_env(explicit: str | None) -> SecretStr | None:
    """``--token`` wins over ``METASTAT_TOKEN``."""
    token = explicit if explicit else os.environ.get(TOKEN_ENV) or None
    return None if token is None else SecretStr(token)
