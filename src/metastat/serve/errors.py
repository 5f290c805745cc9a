"""JSON error responses: every failure is ``{"error": message, "status": code}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from metastat.errors import InputError, MetastatError, ModelError, UnknownNameError
from metastat.serve.limits import RequestTooLarge
from metastat.serve.security import PortalAccessError

log = logging.getLogger("metastat.serve")


class UnsupportedMediaError(InputError):
    """A body or file of a type the endpoint does not take (answered 415)."""


def _json(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (RequestTooLarge, 413),
    (UnsupportedMediaError, 415),
    (UnknownNameError, 404),
    (InputError, 422),
    (ModelError, 422),
    (MetastatError, 400),
)


def install_error_handlers(app: FastAPI) -> None:
    """Map metastat, validation, HTTP and unexpected errors to JSON."""

    async def access(_: Request, exc: Exception) -> JSONResponse:
        return _json(401, str(exc), {"WWW-Authenticate": "Bearer"})

    async def metastat(_: Request, exc: Exception) -> JSONResponse:
        status = next(code for cls, code in _STATUS if isinstance(exc, cls))
        return _json(status, str(exc))

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return _json(422, "invalid request: " + "; ".join(parts))

    async def http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return _json(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return _json(500, f"internal server error ({type(exc).__name__}); see the server log")

    app.add_exception_handler(PortalAccessError, access)
    app.add_exception_handler(MetastatError, metastat)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(Exception, unexpected)
