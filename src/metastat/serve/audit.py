"""Append-only audit log of predictions and slide jobs (JSON lines, no PHI).

Each record has a UTC timestamp, the event, the caller's token id (a hash prefix, never the
token), the model name and version, and pseudonymised sample / slide ids.

Records are group-committed: ``write`` queues the line and a flusher thread appends and fsyncs
everything queued at most every :data:`FLUSH_S` seconds, so a record is durable within that
time, and ``close`` (the app's shutdown) writes what is left. One fsync per batch, not per line.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FLUSH_S = 0.2


class AuditLog:
    """Thread-safe JSON-lines writer with group commit (durable within ``flush_s``)."""

    def __init__(self, path: Path, flush_s: float = FLUSH_S) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.flush_s = flush_s
        self._queue: list[str] = []
        self._lock = threading.Lock()
        self._io = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="metastat-audit", daemon=True)
        self._thread.start()

    def write(self, event: str, **fields: Any) -> None:
        """Queue one record (on disk within ``flush_s``)."""
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event}
        line = json.dumps(record | fields, default=str, sort_keys=False) + "\n"
        with self._lock:
            self._queue.append(line)

    def flush(self) -> None:
        """Append and fsync every queued record now."""
        with self._io:
            with self._lock:
                lines, self._queue = self._queue, []
            if not lines:
                return
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("".join(lines))
                fh.flush()
                os.fsync(fh.fileno())

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_s)
            self.flush()

    def close(self) -> None:
        """Stop the flusher and write what is left (clean shutdown loses nothing)."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()

    def tail(self, n: int = 50) -> list[dict[str, Any]]:
        """The last ``n`` records (for tests and the operator)."""
        self.flush()
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()[-n:]
        return [json.loads(line) for line in lines if line.strip()]


def hashed_ids(ids: list[str], salt: bytes) -> list[str]:
    """Sample ids as keyed hashes, so the log links requests without storing the ids."""
    return [hashlib.blake2b(i.encode(), key=salt[:32], digest_size=6).hexdigest() for i in ids]
