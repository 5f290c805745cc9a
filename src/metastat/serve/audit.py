"""Append-only audit log of predictions and slide jobs (JSON lines, no PHI).

Each record has a UTC timestamp, the event, the caller's token id (a hash prefix, never the
token), the model name and version, and pseudonymised sample / slide ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class AuditLog:
    """Thread-safe JSON-lines writer; every record is flushed and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> None:
        """Append one record."""
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event}
        line = json.dumps(record | fields, default=str, sort_keys=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def tail(self, n: int = 50) -> list[dict[str, Any]]:
        """The last ``n`` records (for tests and the operator)."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()[-n:]
        return [json.loads(line) for line in lines if line.strip()]


def hashed_ids(ids: list[str], salt: bytes) -> list[str]:
    """Sample ids as keyed hashes, so the log links requests without storing the ids."""
    return [hashlib.blake2b(i.encode(), key=salt[:32], digest_size=6).hexdigest() for i in ids]
