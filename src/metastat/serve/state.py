"""The running service's state: settings, registry, audit log, slides, cached pages."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from metastat.serve.audit import AuditLog
from metastat.serve.registry import Registry, load_registry
from metastat.serve.security import check_bearer, load_secret, token_id
from metastat.serve.settings import ServeSettings
from metastat.serve.slides import SlideService


@dataclass
class Portal:
    """Shared by all requests (``app.state.portal``)."""

    settings: ServeSettings
    registry: Registry
    audit: AuditLog
    slides: SlideService
    salt: bytes
    cache: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, settings: ServeSettings) -> Portal:
        """Load models and prepare the data folder."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        registry = load_registry(settings.models_dir)
        audit = AuditLog(settings.data_dir / "audit.jsonl")
        slides = SlideService(settings, registry, audit)
        return cls(settings, registry, audit, slides, load_secret(settings.data_dir))

    def cached(self, key: str, make: Any) -> Any:
        """``make()`` once per key (thread-safe; concurrent first calls compute once)."""
        with self.lock:
            if key in self.cache:
                return self.cache[key]
            value = make()
            self.cache[key] = value
            return value


def portal(request: Request) -> Portal:
    """FastAPI dependency: the portal state."""
    return request.app.state.portal


def caller(request: Request) -> str:
    """FastAPI dependency enforcing the bearer token; returns the caller's token id."""
    token = request.app.state.portal.settings.token_value
    check_bearer(request.headers.get("authorization"), token)
    return token_id(token)


PortalDep = Annotated[Portal, Depends(portal)]
Caller = Annotated[str, Depends(caller)]
