"""Portal API: registry, scoring (CSV / JSON / text), training KM, runs, slide jobs, deep zoom."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from PIL import Image

from metastat.serve import ServeSettings, create_app
from metastat.serve.demo import EXPRESSION_NAME, MIL_NAME, RUN_NAME, build_demo, shared_demo_dir
from metastat.slides.pipeline import ProcessConfig
from metastat.slides.synthetic import write_synthetic_slide
from tests.conftest import wait_job

ROOT = Path(__file__).resolve().parents[1]
SLIDE = ROOT / "tests" / "data" / "slides" / "CMU-1-Small-Region.svs"
SCORE = f"/api/models/{EXPRESSION_NAME}/score"
BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> ServeSettings:
    base = tmp_path_factory.mktemp("portal")
    roots = base / "slides"
    write_synthetic_slide(roots / "blank.tiff", size_px0=(1024, 1024), tissue_fraction=0, levels=1)
    return ServeSettings(
        models_dir=build_demo(shared_demo_dir(tmp_path_factory.getbasetemp())),
        data_dir=base / "data",
        slide_roots=(roots,),
        slide_process=ProcessConfig(qc=False, encoder_input_px=64, torch_threads=1),
    )


@pytest.fixture(scope="module")
def client(settings: ServeSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def profiles() -> object:
    from metastat.data.cohort import expression_frame
    from metastat.data.genes import collapse_genes
    from metastat.data.registry import load_dataset

    return expression_frame(collapse_genes(load_dataset("gastric_acrg"), "symbol")).iloc[:4]


def test_registry_lists_models_and_runs(client: TestClient) -> None:
    body = client.get("/api/models").json()
    kinds = {m["name"]: m["modality"] for m in body["models"]}
    assert kinds == {EXPRESSION_NAME: "expression", MIL_NAME: "slide"}
    assert body["runs"] == [RUN_NAME] and body["problems"] == {}
    one = client.get(f"/api/models/{EXPRESSION_NAME}").json()
    assert one["manifest"]["outcome"] == "recurrence" and len(one["manifest"]["genes"]) > 100
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/api/models/{name}/score"]["post"]["requestBody"]["content"]["text/csv"]


def test_score_csv_json_and_text_agree(client: TestClient, profiles) -> None:
    csv = profiles.to_csv().encode()
    a = client.post(SCORE, files={"file": ("p.csv", csv, "text/csv")}).json()
    tsv = profiles.to_csv(sep="\t").encode()
    b = client.post(SCORE, files={"file": ("p.tsv", tsv, "text/tab-separated-values")}).json()
    body = {"profiles": [{"sample_id": s, "expression": row.to_dict()} for s, row in
                         profiles.iterrows()]}  # fmt: skip
    c = client.post(SCORE, json=body).json()
    d = client.post(SCORE, content=csv, headers={"Content-Type": "text/csv"}).json()
    risks = [[p["risk"] for p in r["predictions"]] for r in (a, b, c, d)]
    for r in risks[1:]:
        np.testing.assert_allclose(r, risks[0], rtol=1e-9)
    p = a["predictions"][0]
    assert a["model"] == EXPRESSION_NAME and a["version"] and a["outcome"] == "recurrence"
    assert 0 <= p["probability"] <= 1 and p["risk_group"] in ("high", "low")
    assert 0 <= p["risk_percentile"] <= 100 and len(p["top_genes"]) == 10
    assert a["genes_imputed"] == 0


def test_missing_genes_are_reported(client: TestClient, profiles) -> None:
    few = profiles.iloc[:1, :-20]
    r = client.post(
        SCORE, json={"profiles": [{"sample_id": "x", "expression": few.iloc[0].to_dict()}]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["genes_imputed"] == 20 and len(r.json()["missing_genes"]) == 20


def test_training_km_by_risk_group(client: TestClient) -> None:
    km = client.get(f"/api/models/{EXPRESSION_NAME}/km").json()
    assert km["available"] and km["cohort"] == "gastric_acrg" and km["time_unit"] == "months"
    assert km["source"] == f"run {RUN_NAME}" and "cross-validated" in km["note"]
    lo, hi = km["groups"]["low"], km["groups"]["high"]
    assert lo["n"] + hi["n"] == 300
    assert all(np.diff(hi["survival"]) <= 0) and all(np.diff(lo["survival"]) <= 0)


def test_in_sample_km_without_a_run_says_so(client: TestClient) -> None:
    from metastat.serve.cohort_km import training_km

    entry = client.app.state.portal.registry.get(EXPRESSION_NAME)  # type: ignore[attr-defined]
    km = training_km(entry.model, entry.manifest, {})
    assert km["available"] and km["source"] == "in-sample" and "overstates" in km["note"]
    lo, hi = km["groups"]["low"], km["groups"]["high"]
    assert lo["n"] + hi["n"] == 300 and lo["survival"][-1] > hi["survival"][-1]


def test_runs_figures_and_report(client: TestClient) -> None:
    run = client.get(f"/api/runs/{RUN_NAME}").json()
    assert "auc" in json.dumps(run["metrics"]).lower()
    titles = [f["title"] for f in run["figures"]]
    assert any("ROC" in t for t in titles) and any("Kaplan" in t for t in titles)
    png = client.get(run["figures"][0]["url"])
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size[0] > 200
    assert client.get(f"/api/runs/{RUN_NAME}/figures/99.png").status_code == 404
    html = client.get(run["report_url"])
    assert html.status_code == 200 and "<img" in html.text


@pytest.fixture(scope="module")
def slide_job(client: TestClient) -> tuple[dict, dict]:
    """One uploaded slide (a name with an MRN in it, and the md5 its sender computed) and its
    finished job."""
    md5 = hashlib.md5(SLIDE.read_bytes()).hexdigest()
    with open(SLIDE, "rb") as fh:
        files = {"file": ("MRN0001_case.svs", fh)}
        r = client.post("/api/slides/upload", files=files, data={"md5": md5.upper()})
    assert r.status_code == 202, r.text
    assert "MRN0001" not in r.text
    sub = r.json()
    return sub, wait_job(client, sub["job_id"])


def test_slide_upload_job_heatmap_and_deep_zoom(
    client: TestClient, slide_job: tuple[dict, dict]
) -> None:
    sub, job = slide_job
    assert sub["slide_id"].startswith("sl-")
    assert sub["slide"]["integrity"] == "verified"
    assert sub["slide"]["dimensions_px0"] == [2220, 2967]
    assert job["status"] == "done", job
    res = job["result"]
    assert res["n_tiles"] > 10 and 0 <= res["probability"] <= 1
    assert len(res["top_tiles"]) == 8 and res["top_tiles"][0]["rank"] == 1
    overlay = Image.open(io.BytesIO(client.get(res["heatmap"]["overlay_url"]).content))
    assert overlay.mode == "RGBA"
    w, h = overlay.size
    assert abs(w / h - 2220 / 2967) < 0.01  # spans the slide: aligned at x=0, width=1
    alpha = np.asarray(overlay)[..., 3]
    assert 0 < (alpha > 0).mean() < 1  # tiles coloured, background transparent
    tile = Image.open(io.BytesIO(client.get(res["top_tiles"][0]["url"]).content))
    assert tile.size == (224, 224)
    gj = client.get(res["heatmap"]["geojson_url"]).json()
    assert len(gj["features"]) == res["n_tiles"]
    dzi = client.get(f"/api/slides/{sub['slide_id']}/dzi").json()["Image"]
    assert dzi["Size"] == {"Width": "2220", "Height": "2967"}
    t = client.get(f"/api/slides/{sub['slide_id']}/dz/12/0_0.jpeg")
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
    assert client.get(f"/api/slides/{sub['slide_id']}/dz/99/0_0.jpeg").status_code == 404
    listed = json.dumps(client.get("/api/slides").json() + client.get("/api/jobs").json())
    assert "MRN0001" not in listed and "/" not in json.dumps(client.get("/api/slides").json())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sha256", "0" * 64, "does not match the sha256"),  # damaged or cut short in transit
        ("md5", "0" * 32, "does not match the md5"),  # e.g. GDC's md5 of the original
        ("md5", "ab" * 15, "32-character hex"),
    ],
)
def test_slide_upload_with_a_wrong_digest_is_refused_and_not_kept(
    client: TestClient, settings: ServeSettings, field: str, value: str, message: str
) -> None:
    uploads = settings.data_dir / "slides" / "uploads"
    before = sorted(uploads.iterdir())
    jobs = len(client.get("/api/jobs").json())
    with open(SLIDE, "rb") as fh:
        files = {"file": ("case.svs", fh)}
        r = client.post("/api/slides/upload", files=files, data={field: value})
    assert r.status_code == 422 and message in r.text, r.text
    assert sorted(uploads.iterdir()) == before  # no partial or refused file left
    assert len(client.get("/api/jobs").json()) == jobs


def test_finished_jobs_survive_a_restart(
    client: TestClient, settings: ServeSettings, slide_job: tuple[dict, dict]
) -> None:
    done = [j for j in client.get("/api/jobs").json() if j["status"] == "done"]
    assert slide_job[1]["job_id"] in [j["job_id"] for j in done]
    with TestClient(create_app(settings), base_url=BASE) as again:
        job = again.get(f"/api/jobs/{done[0]['job_id']}").json()
        assert job == done[0]
        assert again.get(job["result"]["heatmap"]["overlay_url"]).status_code == 200
        assert again.get(f"/api/slides/{job['slide_id']}/dzi").status_code == 200


def test_failed_slide_job_is_clear_and_service_goes_on(client: TestClient, profiles) -> None:
    r = client.post("/api/slides", json={"path": "blank.tiff"})
    assert r.status_code == 202, r.text
    assert r.json()["slide"]["integrity"] == "unverified"  # no digest was given
    job = wait_job(client, r.json()["job_id"])
    assert job["status"] == "failed" and "tissue" in job["error"].lower()
    assert "blank" not in job["error"]
    r = client.post(SCORE, files={"file": ("p.csv", profiles.to_csv().encode(), "text/csv")})
    assert r.status_code == 200
    assert client.get("/api/health").json()["status"] == "ok"
