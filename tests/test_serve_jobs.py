"""Slide jobs across a killed service, and several at once on a Dask LocalCluster.

The restart test runs ``metastat serve`` exactly as a user does, kills it with SIGKILL while a job
runs and another waits, and starts it again on the same data directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
import httpx

from metastat.serve.demo import (
    build_demo,
    free_port,
    shared_demo_dir,
    start_server_process,
    stop_server_process,
)

ROOT = Path(__file__).resolve().parents[1]
SLIDE = ROOT / "tests" / "data" / "slides" / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(shared_demo_dir(tmp_path_factory.getbasetemp()))


def _wait(url: str, job_id: str, until: tuple[str, ...], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()
        if job["status"] in until:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


@pytest.fixture
def servers(models: Path, tmp_path: Path) -> Iterator[dict]:
    procs: list[Any] = []
    port = free_port()
    ctx: dict[str, Any] = {"url": f"http://127.0.0.1:{port}", "data": tmp_path / "data"}
    args = ("--slide-root", str(SLIDE.parent), "--encoder-input-px", "64", "--log-level", "warning")

    def start() -> Any:
        procs.append(start_server_process(models, ctx["data"], port, *args))
        return procs[-1]

    ctx["start"] = start
    yield ctx
    for p in procs:
        stop_server_process(p, kill=True)


def test_jobs_survive_a_killed_service(servers: dict) -> None:
    url, data = servers["url"], servers["data"]
    first = servers["start"]()
    with open(SLIDE, "rb") as fh:
        up = httpx.post(f"{url}/api/slides/upload", files={"file": ("case.svs", fh)}, timeout=60)
    assert up.status_code == 202, up.text
    running = up.json()["job_id"]
    queued = httpx.post(f"{url}/api/slides", json={"path": SLIDE.name}, timeout=30).json()["job_id"]
    _wait(url, running, ("running",))
    stop_server_process(first, kill=True)  # SIGKILL: nothing gets to clean up
    jobs = data / "slides" / "jobs"
    on_disk = {j: json.loads((jobs / j / "job.json").read_text())["job"] for j in (running, queued)}
    assert on_disk[running]["status"] == "running" and on_disk[queued]["status"] == "queued"
    uploads = data / "slides" / "uploads"
    kept = next(uploads.glob("sl-*.svs"))
    (uploads / ".dead.part").write_bytes(b"half an upload")
    (uploads / "sl-000000000000.svs").write_bytes(b"an upload no job refers to")
    (jobs / ("f" * 32)).mkdir()
    (jobs / ("f" * 32) / "overlay.png").write_bytes(b"half")

    servers["start"]()
    job = httpx.get(f"{url}/api/jobs/{running}").json()
    assert job["status"] == "interrupted" and "resume" in job["error"], job
    assert job["created"] and job["started"] and job["finished"]
    done = _wait(url, queued, ("done", "failed"))
    assert done["status"] == "done" and 0 <= done["result"]["probability"] <= 1, done
    assert done["finished"] >= done["started"] >= done["created"] and done["seconds"] > 0
    assert sorted(p.name for p in uploads.iterdir()) == [kept.name]
    assert not (jobs / ("f" * 32)).exists()

    r = httpx.post(f"{url}/api/jobs/{running}/resume")
    assert r.status_code == 202, r.text
    resumed = _wait(url, running, ("done", "failed"))
    assert resumed["status"] == "done", resumed
    assert httpx.post(f"{url}/api/jobs/{running}/resume").status_code == 422  # done: nothing to do
    listed = {j["job_id"]: j for j in httpx.get(f"{url}/api/jobs").json()}
    assert all(listed[j]["finished"] and listed[j]["result"]["probability"] is not None
               for j in (running, queued))  # fmt: skip
    audit = [json.loads(x) for x in (data / "audit.jsonl").read_text().splitlines()]
    events = [(a["event"], a.get("job_id")) for a in audit]
    assert ("slide_interrupted", running) in events and ("slide_requeued", queued) in events
    assert ("slide_result", queued) in events and ("slide_resume", running) in events


def test_slide_jobs_run_at_once_on_dask(models: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster, get_task_stream
    from fastapi.testclient import TestClient

    from metastat.serve import ServeSettings, create_app
    from metastat.slides.pipeline import ProcessConfig
    from metastat.slides.synthetic import write_synthetic_slide

    root = tmp_path / "slides"
    for i in range(3):
        write_synthetic_slide(root / f"s{i}.tiff", size_px0=(1536, 1536), levels=2, seed=i)
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:  # fmt: skip
        settings = ServeSettings(
            models_dir=models, data_dir=tmp_path / "data", slide_roots=(root,),
            scheduler=cluster.scheduler_address, slide_workers=3,
            slide_process=ProcessConfig(qc=False, encoder_input_px=64, torch_threads=1),
        )  # fmt: skip
        with (
            Client(cluster) as watcher,
            get_task_stream(client=watcher) as stream,
            TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client,
        ):
            ids = [client.post("/api/slides", json={"path": f"s{i}.tiff"}).json()["job_id"]
                   for i in range(3)]  # fmt: skip
            deadline = time.monotonic() + 300
            while True:
                jobs = [client.get(f"/api/jobs/{j}").json() for j in ids]
                if all(j["status"] in ("done", "failed") for j in jobs):
                    break
                assert time.monotonic() < deadline, jobs
                time.sleep(0.3)
    assert all(j["status"] == "done" for j in jobs), [j["error"] for j in jobs]
    assert {j["runner"] for j in jobs} == {f"dask {cluster.scheduler_address}"}
    spans = [
        (ss["start"], ss["stop"])
        for t in stream.data if str(t["key"]).startswith("metastat-slide-")
        for ss in t["startstops"] if ss["action"] == "compute"
    ]  # fmt: skip
    assert len(spans) == 3
    assert max(a for a, _ in spans) < min(b for _, b in spans)  # all three computed at once
    feats = list((tmp_path / "data" / "slides" / "features").glob("*.h5"))
    assert len(feats) == 3
