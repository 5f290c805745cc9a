"""Portal fused predictions: a patient with any subset of modalities gets the fused risk, naming
the modalities used, whether any was generated and what was sent but not used."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")
from fastapi.testclient import TestClient

from metastat.fusion.late import LateFusion
from metastat.fusion.paired import make_paired_benchmark
from metastat.fusion.persist import save_fusion
from metastat.fusion.predict import records_to_set
from metastat.serve import ServeSettings, create_app


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, object, object]]:
    bench = make_paired_benchmark(120, n_genes=40, n_programs=4, tile_dim=8, tiles=(8, 12), seed=2)
    d = bench.data
    rng = np.random.default_rng(0)
    rad = pd.DataFrame(
        bench.hazard[:, None] + rng.normal(0, 1, (len(d), 6)),
        index=d.patient_ids, columns=[f"rad_{j}" for j in range(6)],
    )  # fmt: skip
    from metastat.fusion.modalities import align_modalities

    outcome = pd.DataFrame(
        {"event": d.target["event"], "time": d.target["time"], "binary": d.target["binary"]},
        index=d.patient_ids,
    )
    train = align_modalities(
        outcome, kind="survival", horizon=36.0, variables=d.variables,
        clinical=d.clinical, expression=d.expression, radiology=rad,
    )  # fmt: skip
    models = tmp_path_factory.mktemp("models")
    model = LateFusion().fit(train)
    info = {
        "outcome": "recurrence",
        "kind": "survival",
        "horizon": 36.0,
        "training_cohort": "paired",
    }
    save_fusion(model, models / "fused", info=info)
    (models / "broken").mkdir()
    (models / "broken" / "manifest.json").write_text('{"format": "metastat.fusion.late/1"}')
    settings = ServeSettings(models_dir=models, data_dir=tmp_path_factory.mktemp("data"))
    # a loopback Host: the portal answers token-less requests only for loopback names
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        yield client, model, (d, rad)


def _patient(d, rad, i: int, *mods: str) -> dict:
    pid = str(d.patient_ids[i])
    out: dict = {"patient_id": pid}
    if "clinical" in mods:
        out["clinical"] = {k: (None if pd.isna(v) else v) for k, v in d.clinical.loc[pid].items()}
    if "expression" in mods:
        out["expression"] = d.expression.loc[pid].to_dict()
    if "radiology" in mods:
        out["radiology"] = rad.loc[pid].to_dict()
    return out


def test_fusion_models_listed_with_problems(setup) -> None:
    client, _, _ = setup
    body = client.get("/api/fusion/models").json()
    (entry,) = body["models"]
    assert entry["name"] == "fused" and entry["modalities"] == [
        "clinical",
        "expression",
        "radiology",
    ]
    assert entry["outcome"] == "recurrence" and entry["generator"] is False
    assert "broken" in body["problems"]


def test_any_subset_of_modalities_gets_a_fused_risk(setup) -> None:
    client, model, (d, rad) = setup
    patients = [
        _patient(d, rad, 0, "clinical", "expression", "radiology"),
        _patient(d, rad, 1, "clinical"),
        _patient(d, rad, 2, "radiology"),
        _patient(d, rad, 3, "expression", "radiology"),
    ]
    res = client.post("/api/fusion/fused/predict", json={"patients": patients})
    assert res.status_code == 200, res.text
    preds = res.json()["predictions"]
    assert [p["modalities_used"] for p in preds] == [
        ["clinical", "expression", "radiology"], ["clinical"], ["radiology"],
        ["expression", "radiology"],
    ]  # fmt: skip
    assert all(p["generated"] == [] and p["not_used"] == [] for p in preds)
    assert all(0.0 < p["probability"] < 1.0 for p in preds)
    assert "Research use only" in res.json()["note"]
    # the same numbers as the library on the same inputs
    manifest = {"kind": "survival", "horizon": 36.0}
    data = records_to_set(patients, model=model, manifest=manifest)
    np.testing.assert_allclose([p["risk"] for p in preds], model.predict_frame(data)["risk"])


def test_bad_requests_are_clear(setup) -> None:
    client, _, (d, rad) = setup
    url = "/api/fusion/fused/predict"
    res = client.post("/api/fusion/nope/predict", json={"patients": [{"patient_id": "P1"}]})
    assert res.status_code == 404 and "unknown fusion model" in res.text
    res = client.post(url, json={"patients": [{"patient_id": "P1", "mri": {"a": 1}}]})
    assert res.status_code == 404 and "unknown modality 'mri'" in res.text
    bad = _patient(d, rad, 0, "radiology")
    bad["radiology"]["rad_0"] = "high"
    res = client.post(url, json={"patients": [bad]})
    assert res.status_code == 422 and "not a number" in res.text
    res = client.post(url, json={"patients": [{"patient_id": "P1", "slide_job": "nojob"}]})
    assert res.status_code == 404 and "unknown job" in res.text
    res = client.post(url, json={"patients": []})
    assert res.status_code == 422
