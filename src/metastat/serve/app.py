"""The FastAPI application: API routers, size limits, security headers, browser UI."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import matplotlib
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from metastat import __version__
from metastat.serve import routes_fusion, routes_models, routes_slides
from metastat.serve.errors import install_error_handlers
from metastat.serve.security import (
    ASGIApp,
    BodyLimitMiddleware,
    HostOriginMiddleware,
    Message,
    Receive,
    Scope,
    Send,
)
from metastat.serve.settings import ServeSettings
from metastat.serve.state import Portal

STATIC = Path(__file__).parent / "static"
SLIDE_UPLOAD_PATH = "/api/slides/upload"
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self' blob:; worker-src 'self' blob:; "
    "font-src 'self' data:; frame-ancestors 'none'"
)


class SecurityHeaders:
    """nosniff, no framing, no referrer, a strict CSP on every page (API docs included: their
    assets are vendored), and ``Cache-Control: no-store`` on API answers that set no policy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy", CSP.encode()),
                ]
                if api and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: ServeSettings) -> FastAPI:
    """Load the models of ``settings.models_dir`` and build the app."""
    matplotlib.use("Agg")
    state = Portal.start(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        state.slides.close()
        state.audit.close()

    app = FastAPI(
        title="metastat risk portal",
        version=__version__,
        description="Metastasis / recurrence risk from expression profiles and slides. "
        "**Research use only: not for clinical decisions.** Authenticate with "
        "`Authorization: Bearer <token>` when the service runs with a token.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.portal = state
    install_error_handlers(app)
    app.include_router(routes_models.public)
    app.include_router(routes_models.router)
    app.include_router(routes_slides.router)
    app.include_router(routes_fusion.router)

    def limit_for(path: str) -> int:
        return settings.max_slide_bytes if path == SLIDE_UPLOAD_PATH else settings.max_profile_bytes

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    app.add_middleware(HostOriginMiddleware, hosts=settings.host_allowlist)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def page(name: str) -> Any:
        def serve_page() -> FileResponse:
            return FileResponse(STATIC / name, media_type="text/html")

        return serve_page

    app.get("/", include_in_schema=False)(page("index.html"))
    app.get("/docs", include_in_schema=False)(page("docs.html"))
    app.get("/redoc", include_in_schema=False)(page("redoc.html"))

    return app
