"""Security primitives: bearer-token check, upload size limits, path confinement, pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from metastat.errors import InputError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class PortalAccessError(Exception):
    """Missing or wrong bearer token (answered 401)."""


def check_bearer(header: str | None, token: str | None) -> None:
    """Raise :class:`PortalAccessError` unless ``header`` carries ``token`` (no-op when off)."""
    if token is None:
        return
    if not header or not header.lower().startswith("bearer "):
        raise PortalAccessError(
            "missing bearer token: send the header 'Authorization: Bearer <token>'"
        )
    given = header[7:].strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise PortalAccessError("invalid bearer token")


def token_id(token: str | None) -> str:
    """A short non-reversible id of a token for the audit log."""
    return "none" if token is None else hashlib.sha256(token.encode()).hexdigest()[:8]


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MIN_TOKEN_CHARS, MIN_TOKEN_DISTINCT = 24, 10
NEW_TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def weak_token_reason(token: str) -> str | None:
    """Why ``token`` is too weak for a service others can reach, or None."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"it has {len(token)} characters, at least {MIN_TOKEN_CHARS} are needed"
    if len(set(token)) < MIN_TOKEN_DISTINCT:
        return f"it uses {len(set(token))} distinct characters, at least {MIN_TOKEN_DISTINCT}"
    return None


def host_name(value: str) -> str:
    """The host of a ``Host`` header, lower case, without a (numeric) port; ``[::1]`` -> ``::1``.

    Anything that is not ``name``, ``name:port``, ``[v6]`` or ``[v6]:port`` comes back whole, so
    it matches no allowed name.
    """
    v = value.strip().lower()
    if v.startswith("[") and "]" in v:
        end = v.index("]")
        rest = v[end + 1 :]
        return v[1:end] if not rest or (rest[0] == ":" and rest[1:].isdigit()) else v
    name, sep, port = v.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else v


def _authority(origin: str) -> str:
    """``scheme://host[:port]`` -> ``host[:port]`` (lower case)."""
    return origin.strip().lower().split("://", 1)[-1].rstrip("/")


class HostOriginMiddleware:
    """DNS-rebinding and cross-site request guard.

    The ``Host`` header must name an allowed host (when ``hosts`` is not None); a state-changing
    request (POST / PUT / PATCH / DELETE) from a browser must come from this origin: its ``Origin``
    must name the same host as ``Host``, and ``Sec-Fetch-Site`` must not be ``cross-site``.
    """

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        authority = headers.get("host", "").strip().lower()
        host = host_name(authority)
        if self.hosts is not None and host not in self.hosts:
            await _send_json(
                send, 400, f"host {host or '(none)'!r} is not served here: use one of "
                f"{sorted(self.hosts)} (start the service with --allowed-host NAME to add one)",
            )  # fmt: skip
            return
        if scope["method"] in UNSAFE_METHODS:
            origin = headers.get("origin")
            cross = headers.get("sec-fetch-site") == "cross-site"
            if cross or (origin is not None and _authority(origin) != authority):
                await _send_json(
                    send, 403, f"cross-site request refused (origin {origin or '(none)'!r}): "
                    "state-changing requests must come from the portal's own pages or a "
                    "non-browser client",
                )  # fmt: skip
                return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Reject request bodies over a per-path limit *before* anything parses or spools them.

    A declared ``Content-Length`` over the limit is answered 413 without reading the body; a
    streamed body is counted chunk by chunk and cut off (413) as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_json(send, 400, "invalid Content-Length header")
                return
            if int(declared) > limit:
                await _send_json(send, 413, _too_large(limit))
                return
        state = {"seen": 0, "over": False, "started": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit:
                    state["over"] = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if state["over"]:  # the app turned our exception into its own response: replace it
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await _send_json(send, 413, _too_large(limit))
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not state["started"]:
                await _send_json(send, 413, _too_large(limit))


def _too_large(limit: int) -> str:
    return f"request body too large: the limit for this endpoint is {limit:,} bytes"


async def _send_json(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def confine(path_text: str, roots: tuple[Path, ...]) -> Path:
    """Resolve a server-side path and require it to lie inside one of ``roots``.

    Symlinks and ``..`` are resolved first, so neither can escape a root. The message never
    echoes the resolved location.
    """
    if not roots:
        raise InputError(
            "server-side slide paths are disabled: the service was started without "
            "--slide-root; upload the slide instead"
        )
    if not path_text or "\x00" in path_text:
        raise InputError("empty or invalid slide path")
    raw = Path(path_text)
    candidates = [raw] if raw.is_absolute() else [root / raw for root in roots]
    for cand in candidates:
        resolved = cand.resolve()
        if any(resolved.is_relative_to(root) for root in roots):
            if not resolved.is_file():
                raise InputError(f"slide path {path_text!r} does not exist under the allowed roots")
            return resolved
    raise InputError(f"slide path {path_text!r} is outside the allowed slide roots")


def load_secret(data_dir: Path) -> bytes:
    """The service's pseudonymisation key (created once, kept in ``data_dir``, mode 0600)."""
    path = data_dir / ".pseudonym-key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(secrets.token_bytes(32))
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_bytes()


def pseudonym(key: bytes, prefix: str, value: str) -> str:
    """Stable keyed pseudonym of ``value`` (e.g. a slide path or an upload's digest)."""
    return f"{prefix}-{hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:12]}"
