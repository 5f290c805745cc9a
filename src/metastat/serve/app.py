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
from metastat.serve.security import ASGIApp, BodyLimitMiddleware, Message, Receive, Scope, Send
from metastat.serve.settings import ServeSettings
from metastat.serve.state import Portal

STATIC = Path(__file__).parent / "static"
SLIDE_UPLOAD_PATH = "/api/slides/upload"
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self' blob:; frame-ancestors 'none'"
)


class SecurityHeaders:
    """nosniff, no framing, no referrer; a strict CSP on everything but the API docs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"].startswith(("/docs", "/redoc"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                if not docs:
                    headers.append((b"content-security-policy", CSP.encode()))
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

    app = FastAPI(
        title="metastat risk portal",
        version=__version__,
        description="Metastasis / recurrence risk from expression profiles and slides. "
        "**Research use only: not for clinical decisions.** Authenticate with "
        "`Authorization: Bearer <token>` when the service runs with a token.",
        lifespan=lifespan,
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
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app
