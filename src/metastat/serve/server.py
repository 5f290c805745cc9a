"""Running the app under uvicorn, with JSON bodies for the server's own 400 answers.

uvicorn answers a request it cannot parse (bad request line, bad header) itself, in plain text,
before the app sees it; :class:`JsonH11Protocol` makes that answer the portal's JSON error.
"""

from __future__ import annotations

import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

BAD_REQUEST = "malformed HTTP request: check the request line and headers"


class JsonH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with ``{"error", "status"}`` JSON for its own 400 responses."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": f"{BAD_REQUEST} ({msg.rstrip('.')})", "status": 400})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body.encode()),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def uvicorn_config(app: Any, host: str, port: int, log_level: str = "info") -> Any:
    """The uvicorn configuration every portal server uses (CLI, tests, benchmarks)."""
    import uvicorn

    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, http=JsonH11Protocol,
        server_header=False, timeout_graceful_shutdown=10,
    )  # fmt: skip
