"""Slide jobs that survive restarts: state on disk at every transition.

Each job is ``DATA_DIR/slides/jobs/<job_id>/job.json`` (written with :mod:`metastat.atomic`),
holding its status, times, result, private output paths and the slide's record. Transitions::

    queued -> running -> done | failed
    running --(the service stopped)--> interrupted --(resume)--> queued

On start, :meth:`JobStore.restore` reloads every record: queued jobs are queued again, running
ones are marked ``interrupted`` (resumable: finished features are reused), job folders without a
record (half-written) and uploads no live job refers to are removed, and the audit log gets the
outcome of every job it saw submitted.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from metastat.atomic import atomic_write
from metastat.errors import InputError, UnknownNameError
from metastat.serve.audit import AuditLog

JobStatus = Literal["queued", "running", "done", "failed", "interrupted"]
LIVE = ("queued", "running", "done", "interrupted")
INTERRUPTED = (
    "the service stopped while this job ran; resume it (the Resume button, or POST "
    "/api/jobs/{id}/resume): finished slide features are reused"
)


@dataclass
class Job:
    """One slide-scoring job (public fields + private output paths)."""

    job_id: str
    slide_id: str
    model: str | None
    status: JobStatus = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    runner: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """Status, times and results (no paths)."""
        out = {k: v for k, v in asdict(self).items() if k != "files"}
        return out | {"seconds": None if not (self.started and self.finished) else
                      round(self.finished - self.started, 2)}  # fmt: skip


class JobStore:
    """Jobs of one data directory: create, transition, persist, restore, clean up."""

    def __init__(self, folder: Path, uploads: Path, audit: AuditLog) -> None:
        self.folder, self.uploads, self.audit = folder, uploads, audit
        folder.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, Job] = {}
        self._slides: dict[str, dict[str, Any]] = {}  # job_id -> private slide record
        self._lock = threading.Lock()

    def _save(self, job: Job) -> None:
        state = {"job": asdict(job), "slide": self._slides[job.job_id]}
        atomic_write(self.folder / job.job_id / "job.json", json.dumps(state, default=str))

    def add(self, job: Job, slide: dict[str, Any]) -> Job:
        """Record a new queued job (on disk before anything runs)."""
        with self._lock:
            self._jobs[job.job_id] = job
            self._slides[job.job_id] = slide
            self._save(job)
        return job

    def update(self, job: Job, **changes: Any) -> None:
        """Apply a transition and persist it."""
        with self._lock:
            for k, v in changes.items():
                setattr(job, k, v)
            self._save(job)

    def get(self, job_id: str) -> Job:
        """A job by id."""
        with self._lock:
            if job_id not in self._jobs:
                raise UnknownNameError(f"unknown job {job_id!r}")
            return self._jobs[job_id]

    def slide_of(self, job_id: str) -> dict[str, Any]:
        """The private slide record of a job."""
        with self._lock:
            return self._slides[job_id]

    def all(self) -> list[Job]:
        """All jobs, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: -j.created)

    def resume(self, job_id: str) -> Job:
        """An interrupted (or failed) job back to ``queued``."""
        job = self.get(job_id)
        if job.status not in ("interrupted", "failed"):
            raise InputError(
                f"job {job_id} is {job.status}; only interrupted or failed jobs resume"
            )
        if not Path(self.slide_of(job_id)["path"]).exists():
            raise InputError(f"job {job_id}: its slide is no longer on the server; submit it again")
        self.update(job, status="queued", error=None, started=None, finished=None)
        self.audit.write("slide_resume", job_id=job_id, slide_id=job.slide_id)
        return job

    def restore(self, requeue: Callable[[Job, dict[str, Any]], None]) -> None:
        """Reload every record; re-queue queued jobs, mark running ones interrupted, clean up."""
        for sub in sorted(p for p in self.folder.iterdir() if p.is_dir()):
            path = sub / "job.json"
            if not path.exists():  # a job folder whose record was never written
                shutil.rmtree(sub, ignore_errors=True)
                continue
            try:
                state = json.loads(path.read_text())
                job, slide = Job(**state["job"]), dict(state["slide"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged record is skipped; its outputs stay on disk
            with self._lock:
                self._jobs[job.job_id], self._slides[job.job_id] = job, slide
            if job.status == "running":
                error = INTERRUPTED.replace("{id}", job.job_id)
                self.update(job, status="interrupted", error=error, finished=time.time())
                self.audit.write("slide_interrupted", job_id=job.job_id, slide_id=job.slide_id)
            elif job.status == "queued":
                self.audit.write("slide_requeued", job_id=job.job_id, slide_id=job.slide_id)
                requeue(job, slide)
        self.clean_uploads()

    def clean_uploads(self) -> list[Path]:
        """Remove partial uploads and uploads no live job refers to; returns what went."""
        with self._lock:
            keep = {
                Path(self._slides[j.job_id]["path"]).name
                for j in self._jobs.values()
                if j.status in LIVE
            }
        gone = []
        for f in self.uploads.iterdir():
            if f.is_file() and (f.name.startswith(".") or f.name not in keep):
                f.unlink(missing_ok=True)
                gone.append(f)
        return gone
