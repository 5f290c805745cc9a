"""Portal fused predictions whose histology comes from a finished slide job, and a models
directory holding every model family (each listed by its own endpoint, none as a problem).

The slide job is real: a synthetic pyramidal TIFF goes through ``POST /api/slides``, the portal's
tiling and the default encoder (at 64 px), and its feature file lands in the portal's feature
store; the fused risk must equal the library's on the same bag.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")
from fastapi.testclient import TestClient

from metastat.core.provenance import sha256_file
from metastat.fusion.intermediate import NeuralFusion
from metastat.fusion.late import LateFusion
from metastat.fusion.modalities import align_modalities
from metastat.fusion.paired import make_paired_benchmark
from metastat.fusion.persist import save_fusion
from metastat.fusion.predict import records_to_set
from metastat.serve import ServeSettings, create_app
from metastat.serve.demo import build_mil_checkpoint
from metastat.serve.jobs import Job
from metastat.serve.registry import load_registry
from metastat.slides.featurestore import HDF5Store
from metastat.slides.pipeline import ProcessConfig
from metastat.slides.synthetic import write_synthetic_slide
from tests.conftest import wait_job

DIM = 1280  # the default encoder's (efficientnet_lite0) feature width
URL = "/api/fusion/fused/predict"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("fusion-slides")
    bench = make_paired_benchmark(100, n_genes=12, n_programs=3, tile_dim=DIM, tiles=(4, 8))
    d = bench.data
    outcome = pd.DataFrame(
        {"event": d.target["event"], "time": d.target["time"], "binary": d.target["binary"]},
        index=d.patient_ids,
    )
    bags = {str(pid): b for pid, b in zip(d.patient_ids, d.histology or [], strict=True)}
    train = align_modalities(
        outcome, kind="survival", horizon=36.0, variables=d.variables,
        clinical=d.clinical, expression=d.expression, histology=bags,
    )  # fmt: skip
    model = LateFusion(("clinical", "histology")).fit(train)
    models = base / "models"
    info = {"outcome": "recurrence", "kind": "survival", "horizon": 36.0}
    save_fusion(model, models / "fused", info=info)
    neural = NeuralFusion("concat", epochs=10, patience=5, hidden=8, seed=0)
    save_fusion(neural.fit(train.without("expression")), models / "neural", info=info)
    small = make_paired_benchmark(60, n_genes=12, n_programs=3, tile_dim=8, tiles=(4, 8), seed=1)
    save_fusion(LateFusion(("histology",)).fit(small.data), models / "fused8", info=info)
    uni = {**info, "histology_encoder": "uni"}  # as `fusion fit` records the training bags'
    save_fusion(model, models / "fused-uni", info=uni)
    # the other families next to it: an expression model and a MIL checkpoint
    expr = LateFusion(("expression",)).fit(train)
    save_fusion(expr, base / "expr-fusion", info=info)
    shutil.copytree(base / "expr-fusion" / "expression", models / "expr")
    build_mil_checkpoint(models / "mil", in_dim=DIM)
    (models / "broken-fusion").mkdir()
    (models / "broken-fusion" / "manifest.json").write_text('{"format": "metastat.fusion.late/1"}')
    (models / "odd").mkdir()
    (models / "odd" / "manifest.json").write_text('{"format": "someone.else/3"}')
    roots = base / "slides"
    write_synthetic_slide(roots / "case.tiff", size_px0=(1024, 1024), levels=1, seed=3)
    write_synthetic_slide(roots / "blank.tiff", size_px0=(512, 512), tissue_fraction=0, levels=1)
    settings = ServeSettings(
        models_dir=models, data_dir=base / "data", slide_roots=(roots,),
        slide_process=ProcessConfig(qc=False, encoder_input_px=64, torch_threads=1),
    )  # fmt: skip
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        jobs = {
            n: client.post("/api/slides", json={"path": f"{n}.tiff"}) for n in ("case", "blank")
        }
        assert all(r.status_code == 202 for r in jobs.values()), [r.text for r in jobs.values()]
        done = {n: wait_job(client, r.json()["job_id"], timeout=240) for n, r in jobs.items()}
        fitted = {"fused": model, "neural": neural}
        yield {"client": client, "models": fitted, "data": d, "jobs": done, "settings": settings}


def _clinical(d: Any, i: int) -> dict[str, Any]:
    row = d.clinical.loc[str(d.patient_ids[i])]
    return {k: (None if pd.isna(v) else v) for k, v in row.items()}


def test_each_family_is_listed_by_its_own_endpoint(portal: dict[str, Any]) -> None:
    client, models = portal["client"], portal["settings"].models_dir
    body = client.get("/api/models").json()
    assert {m["name"]: m["modality"] for m in body["models"]} == {
        "expr": "expression",
        "mil": "slide",
    }
    # a fusion model, even a broken one, is no expression-model problem; an unknown format is
    assert list(body["problems"]) == ["odd"]
    assert "unknown model format 'someone.else/3'" in body["problems"]["odd"]
    assert "metastat.fusion.*" in body["problems"]["odd"]
    fusion = client.get("/api/fusion/models").json()
    listed = {m["name"]: m["modalities"] for m in fusion["models"]}
    both = ["clinical", "histology"]
    assert listed == {"fused": both, "fused-uni": both, "fused8": ["histology"], "neural": both}
    assert list(fusion["problems"]) == ["broken-fusion"]
    assert client.get("/api/models/fused").status_code == 404
    # versions: the manifest's digest, else the weights' (core.provenance)
    reg = load_registry(models)
    assert reg.models["mil"].version == sha256_file(models / "mil" / "weights.safetensors")[:12]
    assert reg.models["expr"].version == sha256_file(models / "expr" / "arrays.safetensors")[:12]
    assert sorted(reg.fusion) == ["broken-fusion", "fused", "fused-uni", "fused8", "neural"]


@pytest.mark.parametrize("name", ["fused", "neural"])
def test_fused_risk_from_a_finished_slide_job(portal: dict[str, Any], name: str) -> None:
    client, model, d = portal["client"], portal["models"][name], portal["data"]
    url = f"/api/fusion/{name}/predict"
    job = portal["jobs"]["case"]
    assert job["status"] == "done", job
    patients = [
        {"patient_id": "NEW1", "slide_job": job["job_id"], "clinical": _clinical(d, 0)},
        {"patient_id": "NEW2", "slide_job": job["job_id"]},
        {"patient_id": "NEW3", "clinical": _clinical(d, 1)},
    ]
    res = client.post(url, json={"patients": patients})
    assert res.status_code == 200, res.text
    preds = res.json()["predictions"]
    assert [p["modalities_used"] for p in preds] == [
        ["clinical", "histology"], ["histology"], ["clinical"],
    ]  # fmt: skip
    assert all(p["generated"] == [] and p["not_used"] == [] for p in preds)
    assert all(0.0 < p["probability"] < 1.0 for p in preds)
    # the library on the same inputs: the job's bag read back from the portal's feature store
    store = HDF5Store(portal["settings"].data_dir / "slides" / "features")
    bag = store.read(job["slide_id"])
    assert bag.features.shape == (job["result"]["n_tiles"], DIM)
    bags = {"histology": {"NEW1": bag.features, "NEW2": bag.features}}
    records = [{k: v for k, v in p.items() if k != "slide_job"} for p in patients]
    manifest = {"kind": "survival", "horizon": 36.0}
    want = model.predict_frame(records_to_set(records, model=model, manifest=manifest, bags=bags))
    tol = 1e-10 if name == "fused" else 1e-6  # the neural network computes in float32
    np.testing.assert_allclose([p["risk"] for p in preds], want["risk"], rtol=tol)
    np.testing.assert_allclose([p["probability"] for p in preds], want["prob"], rtol=tol)
    # the slide moves the risk: histology is really used
    assert preds[0]["risk"] != pytest.approx(
        client.post(url, json={"patients": [patients[0] | {"slide_job": None}]}).json()[
            "predictions"
        ][0]["risk"]
    )


def test_unusable_slide_jobs_are_clear_errors(portal: dict[str, Any]) -> None:
    client = portal["client"]

    def post(job_id: str, url: str = URL) -> Any:
        return client.post(url, json={"patients": [{"patient_id": "P1", "slide_job": job_id}]})

    res = post("nojob")
    assert res.status_code == 404 and "unknown job 'nojob'" in res.text
    failed = portal["jobs"]["blank"]
    assert failed["status"] == "failed", failed
    res = post(failed["job_id"])
    assert res.status_code == 422 and "failed" in res.text and "resume" in res.text, res.text
    assert "blank" not in res.text  # the slide's file name stays on the server
    # a job still waiting: recorded through the job store, never run
    slides = client.app.state.portal.slides  # type: ignore[attr-defined]
    record = slides.slide(portal["jobs"]["case"]["slide_id"])
    waiting = slides.store.add(Job("a" * 32, record.slide_id, None), record.private())
    res = post(waiting.job_id)
    assert res.status_code == 422 and "queued" in res.text and "wait" in res.text, res.text
    # a finished job whose features have gone (deleted from the data folder)
    done = portal["jobs"]["case"]
    gone = slides.store.add(Job("b" * 32, done["slide_id"], None, status="done"), record.private())
    feature = HDF5Store(portal["settings"].data_dir / "slides" / "features").path_for(
        done["slide_id"]
    )
    kept = feature.with_suffix(".keep")
    feature.rename(kept)
    try:
        res = post(gone.job_id)
    finally:
        kept.rename(feature)
    assert res.status_code == 422 and "features are missing" in res.text, res.text
    assert "submit the slide again" in res.text
    # features of another encoder than the model was trained on
    res = post(done["job_id"], "/api/fusion/fused8/predict")
    assert res.status_code == 422 and "1280-d features" in res.text, res.text
    assert "trained on 8-d histology features" in res.text
    # same width, another encoder than the one the model's training bags came from
    res = post(done["job_id"], "/api/fusion/fused-uni/predict")
    assert res.status_code == 422 and "embedded with encoder 'efficientnet_lite0'" in res.text
    assert "trained on 'uni' histology features" in res.text, res.text
