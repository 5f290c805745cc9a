"""Security of the portal API: token, exposure, size limits, formats, paths, PHI, audit, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from metastat.errors import InputError
from metastat.serve import ServeSettings, create_app
from metastat.serve.demo import EXPRESSION_NAME, build_expression_model, free_port

TOKEN = "s3cret-token-for-tests"
STRONG = "Zq3-vK8pLw2xR7mN0bT5yH4cJ9dF"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parents[1]
SLIDES = ROOT / "tests" / "data" / "slides"
BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models")
    build_expression_model(d / EXPRESSION_NAME)
    return d


@pytest.fixture(scope="module")
def profile_csv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from metastat.data.cohort import expression_frame
    from metastat.data.genes import collapse_genes
    from metastat.data.registry import load_dataset

    x = expression_frame(collapse_genes(load_dataset("gastric_acrg"), "symbol")).iloc[:2]
    return x.to_csv().encode()


@pytest.fixture(scope="module")
def settings(models: Path, tmp_path_factory: pytest.TempPathFactory) -> ServeSettings:
    roots = tmp_path_factory.mktemp("roots")
    (roots / "inside").mkdir()
    (roots / "inside" / "escape.svs").symlink_to(SLIDES / "CMU-1-Small-Region.svs")
    return ServeSettings(
        models_dir=models,
        data_dir=tmp_path_factory.mktemp("data"),
        token=TOKEN,
        slide_roots=(roots / "inside",),
        max_profile_bytes=64 * 1024,
        max_slide_bytes=256 * 1024,
        max_samples=5,
    )


@pytest.fixture(scope="module")
def client(settings: ServeSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


def _score(client: TestClient, data: bytes, name: str = "p.csv", ctype: str = "text/csv"):
    url = f"/api/models/{EXPRESSION_NAME}/score"
    return client.post(url, files={"file": (name, data, ctype)}, headers=AUTH)


def _error(r, status: int, fragment: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status
    assert fragment.lower() in body["error"].lower(), body


# -- token ----------------------------------------------------------------------------------------
def test_health_needs_no_token(client: TestClient) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["auth"] is True


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [({}, "missing bearer token"), ({"Authorization": "Bearer nope"}, "invalid bearer token"),
     ({"Authorization": f"Basic {TOKEN}"}, "missing bearer token")],
)  # fmt: skip
def test_missing_or_wrong_token_is_401(client: TestClient, headers: dict, fragment: str) -> None:
    for path in ("/api/models", f"/api/models/{EXPRESSION_NAME}/km", "/api/jobs", "/api/runs"):
        r = client.get(path, headers=headers)
        _error(r, 401, fragment)
        assert r.headers["www-authenticate"] == "Bearer"
    r = client.post(f"/api/models/{EXPRESSION_NAME}/score", json={"A": 1}, headers=headers)
    _error(r, 401, fragment)


def test_right_token_is_accepted(client: TestClient) -> None:
    r = client.get("/api/models", headers=AUTH)
    assert r.status_code == 200
    (entry,) = r.json()["models"]
    assert entry["name"] == EXPRESSION_NAME and entry["modality"] == "expression"
    assert entry["version"] and entry["training_cohort"] == "gastric_acrg"


def test_non_loopback_bind_without_token_is_refused(models: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="refusing to bind"):
        ServeSettings(models_dir=models, host="0.0.0.0").check_exposure()
    ServeSettings(models_dir=models, host="0.0.0.0", token=STRONG).check_exposure()
    ServeSettings(models_dir=models, host="::1").check_exposure()
    for weak, why in (("t", "1 characters"), ("a" * 30, "1 distinct")):
        with pytest.raises(InputError, match=f"weak token.*{why}.*secrets.token_urlsafe"):
            ServeSettings(models_dir=models, host="0.0.0.0", token=weak).check_exposure()
    ServeSettings(models_dir=models, host="127.0.0.1", token="t").check_exposure()  # loopback
    from typer.testing import CliRunner

    from metastat.cli.main import app

    args = ["serve", "--models", str(models), "--host", "0.0.0.0", "--port", str(free_port())]
    r = CliRunner().invoke(app, args, env={"METASTAT_TOKEN": ""})
    assert isinstance(r.exception, InputError)
    assert "refusing to bind" in str(r.exception) and "--token" in str(r.exception)


def test_cli_serves_exactly_as_documented(models: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "METASTAT_TOKEN": ""}
    script = Path(sys.executable).with_name("metastat")  # the installed console script
    prog = [str(script)] if script.exists() else [sys.executable, "-m", "metastat.cli.main"]
    cmd = [*prog, "serve", "--models", str(models), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        import httpx

        deadline = time.monotonic() + 90
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        assert r.json()["auth"] is False
        assert httpx.get(f"http://127.0.0.1:{port}/api/models").status_code == 200
        assert "metastat risk portal" in httpx.get(f"http://127.0.0.1:{port}/").text
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# -- size limits, formats, malformed input --------------------------------------------------------
def test_oversized_upload_rejected_before_parsing(client: TestClient, settings: ServeSettings):
    before = len((settings.data_dir / "audit.jsonl").read_text().splitlines()) if (
        settings.data_dir / "audit.jsonl").exists() else 0  # fmt: skip
    big = b"sample,GENE\n" + b"S1,1.0\n" * 20_000
    _error(_score(client, big), 413, "too large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(100):
            yield b"x" * 4096

    r = client.post(f"/api/models/{EXPRESSION_NAME}/score", content=chunks(),
                    headers={**AUTH, "Content-Type": "text/csv"})  # fmt: skip
    _error(r, 413, "limit for this endpoint is 65,536 bytes")
    big_slide = {"file": ("s.svs", b"\0" * 300_000, "application/octet-stream")}
    _error(client.post("/api/slides/upload", files=big_slide, headers=AUTH), 413, "too large")
    audit = settings.data_dir / "audit.jsonl"
    after = len(audit.read_text().splitlines()) if audit.exists() else 0
    assert after == before


@pytest.mark.parametrize(
    ("name", "ctype", "fragment"),
    [("p.png", "image/png", "file type '.png'"), ("p.csv", "image/png", "content type 'image/png'"),
     ("p", "text/csv", "file type '(none)'"), ("p.exe", "application/octet-stream", ".exe")],
)  # fmt: skip
def test_wrong_file_types_are_415(client: TestClient, name: str, ctype: str, fragment: str) -> None:
    _error(_score(client, b"sample,A\nS1,1\n", name, ctype), 415, fragment)


def test_wrong_body_content_type_is_415(client: TestClient) -> None:
    r = client.post(f"/api/models/{EXPRESSION_NAME}/score", content=b"<html>",
                    headers={**AUTH, "Content-Type": "text/html"})  # fmt: skip
    _error(r, 415, "text/html")


@pytest.mark.parametrize(
    ("data", "name", "fragment"),
    [(b"", "p.csv", "empty"), (b"sample,VIM\nS1,abc\n", "p.csv", "non-numeric"),
     (b"sample,VIM\nS1,1\nS1,2\n", "p.csv", "duplicate"),
     (b"{not json", "p.json", "malformed JSON"),
     (b'{"profiles": [{"sample_id": "a", "expression": {"VIM": "high"}}]}', "p.json",
      "non-numeric value 'high' for gene 'VIM'"),
     (b'{"VIM": "inf"}', "p.json", "infinite value"),
     (b'{"profiles": []}', "p.json", "non-empty"), (b"[1, 2]", "p.json", "JSON must be"),
     (b"sample,NOTAGENE\nS1,1\n", "p.csv", "none of the model's genes")],
)  # fmt: skip
def test_malformed_profiles_are_422(client: TestClient, data: bytes, name: str, fragment: str):
    _error(_score(client, data, name), 422, fragment)


def test_too_many_profiles_is_422(client: TestClient) -> None:
    body = {"profiles": [{"sample_id": f"S{i}", "expression": {"VIM": 1.0}} for i in range(6)]}
    r = client.post(f"/api/models/{EXPRESSION_NAME}/score", json=body, headers=AUTH)
    _error(r, 422, "6 profiles in one request; the limit is 5")


def test_unknown_model_is_404_with_hint(client: TestClient, profile_csv: bytes) -> None:
    r = client.post("/api/models/acrg_recurence/score", files={"file": ("p.csv", profile_csv)},
                    headers=AUTH)  # fmt: skip
    _error(r, 404, "unknown expression model 'acrg_recurence'")
    assert "Did you mean 'acrg_recurrence'" in r.json()["error"]
    _error(client.get("/api/runs/nope", headers=AUTH), 404, "unknown run")
    _error(client.post("/api/slides", json={"path": "x.svs", "model": "nope"}, headers=AUTH), 404,
           "unknown slide model")  # fmt: skip


# -- paths and slides -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["../../../etc/passwd.svs", "/etc/hosts", "escape.svs", "../inside/../../x.svs"]
)
def test_slide_paths_outside_roots_are_rejected(client: TestClient, path: str) -> None:
    r = client.post("/api/slides", json={"path": path}, headers=AUTH)
    _error(r, 422, "outside the allowed slide roots")
    assert "/tmp" not in r.json()["error"] and str(SLIDES) not in r.json()["error"]


def test_slide_request_is_validated(client: TestClient) -> None:
    _error(client.post("/api/slides", json={"path": "a.svs", "extra": 1}, headers=AUTH), 422,
           "extra")  # fmt: skip
    _error(client.post("/api/slides", content=b"{", headers={**AUTH, "Content-Type":
           "application/json"}), 422, "invalid request")  # fmt: skip
    _error(client.get("/api/jobs/../../etc", headers=AUTH), 404, "not found")
    _error(client.get("/api/jobs/xyz", headers=AUTH), 422, "pattern")
    _error(client.get("/api/jobs/" + "0" * 32, headers=AUTH), 404, "unknown job")


def test_corrupt_or_unsupported_slide_upload(client: TestClient, settings: ServeSettings) -> None:
    junk = {"file": ("patient_DOE_JOHN.svs", b"II*\0" + b"\x13" * 5000, "application/octet-stream")}
    r = client.post("/api/slides/upload", files=junk, headers=AUTH)
    _error(r, 422, "cannot open slide")
    assert "DOE_JOHN" not in r.text
    assert list((settings.data_dir / "slides" / "uploads").iterdir()) == []
    png = {"file": ("slide.png", b"\x89PNG....", "image/png")}
    _error(client.post("/api/slides/upload", files=png, headers=AUTH), 415, "unsupported slide")


def test_static_files_cannot_escape(client: TestClient) -> None:
    for path in ("/static/../settings.py", "/static/%2e%2e/settings.py", "/static/../../errors.py"):
        assert client.get(path).status_code == 404


def test_security_headers(client: TestClient) -> None:
    r = client.get("/")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "Research use only" in r.text


# -- the service keeps serving; audit -------------------------------------------------------------
def test_audit_log_and_still_serving(client: TestClient, settings: ServeSettings, profile_csv):
    r = _score(client, profile_csv)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 2 and {p["risk_group"] for p in preds} <= {"high", "low"}
    (rec,) = client.app.state.portal.audit.tail(1)  # type: ignore[attr-defined]
    text = (settings.data_dir / "audit.jsonl").read_text()
    assert rec["event"] == "score" and rec["model"] == EXPRESSION_NAME and rec["n"] == 2
    assert rec["version"] and len(rec["samples"]) == 2
    assert TOKEN not in text
    assert all(p["sample_id"] not in text for p in preds)  # ids are hashed


# -- host allowlist, origin check, caching, JSON for every error ---------------------------------
@pytest.fixture(scope="module")
def open_client(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """No token, loopback: the configuration DNS rebinding and CSRF aim at."""
    s = ServeSettings(models_dir=models, data_dir=tmp_path_factory.mktemp("open"),
                      slide_roots=(SLIDES,))  # fmt: skip
    with TestClient(create_app(s), base_url=BASE) as c:
        yield c


@pytest.mark.parametrize(
    ("host", "shown"),
    [("attacker.example", "attacker.example"), ("attacker.example:8000", "attacker.example"),
     ("10.0.0.5", "10.0.0.5"),
     ("127.0.0.1:8000.attacker.example", "127.0.0.1:8000.attacker.example"),
     ("[::1]x", "[::1]x")],
)  # fmt: skip
def test_foreign_host_is_refused_without_token(open_client: TestClient, host: str, shown: str):
    r = open_client.get("/api/models", headers={"Host": host})
    _error(r, 400, f"host {shown!r} is not served here")
    assert "--allowed-host" in r.json()["error"]
    for ok in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
        assert open_client.get("/api/health", headers={"Host": ok}).status_code == 200


def test_allowed_host_option(models: Path, tmp_path: Path) -> None:
    s = ServeSettings(models_dir=models, data_dir=tmp_path, allowed_hosts=("portal.lab",))
    assert s.host_allowlist == {"localhost", "127.0.0.1", "::1", "portal.lab"}
    exposed = ServeSettings(models_dir=models, data_dir=tmp_path, host="0.0.0.0", token=STRONG)
    assert exposed.host_allowlist is None  # the token guards it; any name reaches it


def test_cross_site_state_change_is_refused(open_client: TestClient) -> None:
    before = len(open_client.get("/api/jobs").json())
    with open(SLIDES / "CMU-1-Small-Region.svs", "rb") as fh:
        r = open_client.post("/api/slides/upload", files={"file": ("x.svs", fh)},
                             headers={"Origin": "http://attacker.example"})  # fmt: skip
    _error(r, 403, "cross-site request refused")
    r = open_client.post("/api/slides", json={"path": "CMU-1-Small-Region.svs"},
                         headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
    _error(r, 403, "cross-site")
    r = open_client.post(f"/api/models/{EXPRESSION_NAME}/score", json={"VIM": 1},
                         headers={"Origin": "http://127.0.0.1:8000.attacker.example"})  # fmt: skip
    _error(r, 403, "cross-site")
    assert len(open_client.get("/api/jobs").json()) == before
    assert not list((open_client.app.state.portal.settings.data_dir / "slides" / "uploads")  # type: ignore[attr-defined]
                    .iterdir())  # fmt: skip
    same = open_client.post(f"/api/models/{EXPRESSION_NAME}/score", json={"VIM": 1},
                            headers={"Origin": "http://127.0.0.1:8000"})  # fmt: skip
    _error(same, 422, "more than 10%")  # got through the guard to the scorer


def test_patient_results_are_not_cached(client: TestClient, profile_csv: bytes) -> None:
    r = _score(client, profile_csv)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert client.get("/api/jobs", headers=AUTH).headers["cache-control"] == "no-store"
    assert client.get("/api/models", headers=AUTH).headers["cache-control"] == "no-store"


def test_every_4xx_is_json(client: TestClient) -> None:
    _error(client.get("/api/nowhere", headers=AUTH), 404, "not found")
    _error(client.put("/api/models", headers=AUTH), 405, "method not allowed")
    _error(client.get("/static/nothing.js"), 404, "not found")


def test_server_own_400_is_json(models: Path, tmp_path: Path) -> None:
    import socket

    from metastat.serve.demo import running_server

    s = ServeSettings(models_dir=models, data_dir=tmp_path)
    with running_server(create_app(s)) as url:
        host, port = url.removeprefix("http://").split(":")
        for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n"):
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(raw)
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, reply
            msg = json.loads(body)
            assert msg["status"] == 400 and "malformed HTTP request" in msg["error"]


def test_offline_api_docs_use_vendored_assets(client: TestClient) -> None:
    import re

    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        r = client.get(path)
        assert r.status_code == 200 and asset in r.text
        srcs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert srcs and all(u.startswith("/static/") for u in srcs), srcs
        assert "default-src 'self'" in r.headers["content-security-policy"]
        for u in srcs:
            assert client.get(u).status_code == 200, u
    vendor = ROOT / "src" / "metastat" / "serve" / "static" / "vendor"
    assert (vendor / "swagger-ui" / "LICENSE").exists() and (vendor / "redoc" / "LICENSE").exists()
    for page in (vendor.parent).glob("*.html"):
        assert "http://" not in page.read_text() and "https://" not in page.read_text(), page


def test_audit_is_group_committed_and_complete_on_close(tmp_path: Path) -> None:
    from metastat.serve.audit import AuditLog

    log = AuditLog(tmp_path / "audit.jsonl", flush_s=0.05)
    for i in range(500):
        log.write("score", n=i)
    deadline = time.monotonic() + 5
    while len((tmp_path / "audit.jsonl").read_text().splitlines() if (tmp_path / "audit.jsonl")
              .exists() else []) < 500:  # fmt: skip
        assert time.monotonic() < deadline, "records not on disk within the flush interval"
        time.sleep(0.02)
    log.write("last", n=500)
    log.close()  # a clean shutdown writes what is queued
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert [json.loads(x)["n"] for x in lines] == list(range(501))
