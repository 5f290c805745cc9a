"""Running the app under uvicorn, with JSON bodies for the server's own 400 answers.

uvicorn answers a request it cannot parse (bad request line, bad header) itself, in plain text,
before the app sees it; the protocols here make that answer the portal's JSON error. The
``httptools`` parser (and ``uvloop``) are used when installed (``metastat[serve]`` has them),
h11 otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

BAD_REQUEST = "malformed HTTP request: check the request line and headers"


def _bad_request_body(msg: str) -> bytes:
    return json.dumps({"error": f"{BAD_REQUEST} ({msg.rstrip('.')})", "status": 400}).encode()


class JsonH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with ``{"error", "status"}`` JSON for its own 400 responses."""

    def send_400_response(self, msg: str) -> None:
        body = _bad_request_body(msg)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def _protocol() -> type:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return JsonH11Protocol

    class JsonHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with JSON for its own 400 responses."""

        def send_400_response(self, msg: str) -> None:
            body = _bad_request_body(msg)
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                b"content-length: "
                + str(len(body)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + body
            )
            self.transport.close()

    return JsonHttpToolsProtocol


def uvicorn_config(app: Any, host: str, port: int, log_level: str = "info") -> Any:
    """The uvicorn configuration every portal server uses (CLI, tests, benchmarks)."""
    import uvicorn

    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, http=_protocol(),
        server_header=False, timeout_graceful_shutdown=10,
    )  # fmt: skip
