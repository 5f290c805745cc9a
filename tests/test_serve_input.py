"""Scoring input rules: missing values per profile, other platforms, request width / cells /
depth limits before parsing, sample-id column, the fast path agreeing with the cohort path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from metastat.serve import ServeSettings, create_app
from metastat.serve.demo import EXPRESSION_NAME, build_demo, shared_demo_dir

SCORE = f"/api/models/{EXPRESSION_NAME}/score"
BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> ServeSettings:
    models = build_demo(shared_demo_dir(tmp_path_factory.getbasetemp()), run=False, mil=False)
    return ServeSettings(models_dir=models, data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def client(settings: ServeSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    from metastat.data.cohort import expression_frame
    from metastat.data.genes import collapse_genes
    from metastat.data.registry import load_dataset

    return expression_frame(collapse_genes(load_dataset("gastric_acrg"), "symbol"))


@pytest.fixture(scope="module")
def genes(client: TestClient) -> list[str]:
    return client.get(f"/api/models/{EXPRESSION_NAME}").json()["manifest"]["genes_in"]


def _csv(client: TestClient, frame: pd.DataFrame, **kw: object):
    data = frame.to_csv(**kw).encode()  # type: ignore[arg-type]
    return client.post(SCORE, files={"file": ("p.csv", data, "text/csv")})


def _error(r, status: int, *fragments: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status
    for f in fragments:
        assert f.lower() in body["error"].lower(), body
    return body["error"]


# -- 1. missing values are counted per profile ---------------------------------------------------
def test_all_blank_profile_is_refused_naming_the_sample(client: TestClient, genes) -> None:
    blank = "sample_id," + ",".join(genes) + "\nP-BLANK" + "," * len(genes) + "\n"
    r = client.post(SCORE, content=blank.encode(), headers={"Content-Type": "text/csv"})
    _error(r, 422, "'P-BLANK'", f"{len(genes)} of {len(genes)}", "more than 10%")
    body = {"profiles": [{"sample_id": "J1", "expression": {g: None for g in genes}}]}
    _error(client.post(SCORE, json=body), 422, "'J1'", "absent or empty")


def test_nan_values_count_like_missing_columns(client: TestClient, cohort, genes) -> None:
    two = cohort[genes].iloc[:2].copy()
    two.iloc[1, : len(genes) // 5] = np.nan  # 20 % empty cells in the second profile only
    _error(_csv(client, two), 422, repr(str(two.index[1])), "1 profile(s)")
    two.iloc[1, : len(genes) // 5] = two.iloc[0, : len(genes) // 5]
    two.iloc[1, :7] = np.nan  # a few: imputed and reported on that profile
    r = _csv(client, two)
    assert r.status_code == 200, r.text
    first, second = r.json()["predictions"]
    assert first["genes_imputed"] == 0 and not first["warnings"]
    assert second["genes_imputed"] == 7 and "7 of the model's" in second["warnings"][0]


# -- 2. another platform is refused (the model is not platform-independent) -------------------
def test_raw_counts_profile_is_refused(client: TestClient, cohort, genes) -> None:
    raw = (2.0 ** cohort[genes].iloc[:1]).round() * 50  # linear counts, not log2 intensities
    err = _error(_csv(client, raw), 422, "another platform", "not platform-independent")
    assert repr(str(raw.index[0])) in err
    mixed = pd.concat([cohort[genes].iloc[1:2], raw])
    r = _csv(client, mixed)
    assert r.status_code == 200, r.text
    ok, bad = r.json()["predictions"]
    assert ok["status"] == "scored" and ok["probability"] is not None and not ok["warnings"]
    assert bad["status"] == "refused" and bad["probability"] is None and bad["risk"] is None
    assert "another platform" in bad["warnings"][0]
    assert r.json()["platform_independent"] is False
    assert any("another platform" in w for w in r.json()["warnings"])


def test_platform_independent_model_scores_with_the_warning(client, cohort, genes, monkeypatch):
    entry = client.app.state.portal.registry.get(EXPRESSION_NAME)  # type: ignore[attr-defined]
    monkeypatch.setattr(type(entry.model), "platform_independent", True, raising=False)
    raw = (2.0 ** cohort[genes].iloc[:1]).round() * 50
    r = _csv(client, raw)
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    assert p["status"] == "scored" and "another platform" in p["warnings"][0]


# -- 5. limits before parsing ---------------------------------------------------------------------
def test_too_many_columns_is_413_before_parsing(client: TestClient) -> None:
    header = "sample," + ",".join(f"G{j}" for j in range(500_000))
    data = (header + "\nS1" + ",1" * 500_000 + "\n").encode()
    assert len(data) < 24 * 2**20
    _error(client.post(SCORE, content=data, headers={"Content-Type": "text/csv"}), 413,
           "columns: 500,001", "limit of 60,000")  # fmt: skip


def test_too_many_cells_is_413(client: TestClient, genes) -> None:
    row = "," + ",".join(["1"] * len(genes))
    n = 2_500_000 // len(genes) + 10
    data = "sample," + ",".join(genes) + "\n" + "".join(f"S{i}{row}\n" for i in range(n))
    _error(client.post(SCORE, content=data.encode(), headers={"Content-Type": "text/csv"}), 413,
           "cells", "2,500,000")  # fmt: skip


def test_deep_json_is_413_not_a_reset(client: TestClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    _error(client.post(SCORE, content=deep, headers={"Content-Type": "application/json"}), 413,
           "nesting depth 100,000", "limit of 8")  # fmt: skip
    tricky = json.dumps({"VIM": 1.0, "note": "[[[[[[[[[[[[[[[[[[[["}).encode()  # brackets in text
    r = client.post(SCORE, content=tricky, headers={"Content-Type": "application/json"})
    _error(r, 422, "more than 10%")  # parsed (depth 1), then refused for missing genes


def test_documented_profile_limit_fits_the_body_limit(
    client: TestClient, settings: ServeSettings, cohort, genes
) -> None:
    many = cohort[genes].sample(settings.max_samples, replace=True, random_state=0)
    many.index = [f"P{i}" for i in range(len(many))]
    data = many.to_csv(float_format="%.6g").encode()
    assert len(data) < settings.max_profile_bytes
    r = client.post(SCORE, content=data, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["predictions"]) == settings.max_samples


def test_unused_columns_are_not_parsed(client: TestClient, cohort, genes) -> None:
    one = cohort[genes].iloc[:1].copy()
    junk = pd.DataFrame({f"X{j}": ["not-a-number"] for j in range(5000)}, index=one.index)
    r = _csv(client, pd.concat([one, junk], axis=1))
    assert r.status_code == 200, r.text
    assert r.json()["columns_ignored"] == 5000
    plain = _csv(client, one).json()["predictions"][0]["risk"]
    assert r.json()["predictions"][0]["risk"] == pytest.approx(plain)


# -- 6. sample ids --------------------------------------------------------------------------------
def test_missing_sample_id_column_is_an_error(client: TestClient, cohort, genes) -> None:
    r = _csv(client, cohort[genes].iloc[:2], index=False)
    _error(r, 422, "no sample-id column", repr(genes[0]))


def test_sample_id_nan_is_named_as_such(client: TestClient, cohort, genes) -> None:
    two = cohort[genes].iloc[:2].copy()
    two.index = ["nan", "S2"]
    _error(_csv(client, two), 422, "sample id 'nan'", "missing value")
    two.index = ["", "S2"]
    _error(_csv(client, two), 422, "empty sample id")


# -- 10. the fast path gives what the cohort path gives ------------------------------------------
def test_fast_path_matches_the_cohort_path(client: TestClient, cohort, genes) -> None:
    from metastat.data.cohort import expression_frame, make_cohort
    from metastat.data.genes import collapse_genes

    x = cohort[genes].iloc[:5].copy()
    dup = x[[genes[3]]] - 1.0  # a duplicated gene column with a lower mean: MaxMean drops it
    wide = pd.concat([x.iloc[:, :10], dup, x.iloc[:, 10:]], axis=1)
    entry = client.app.state.portal.registry.get(EXPRESSION_NAME)  # type: ignore[attr-defined]
    ref = entry.model.predict_frame(
        expression_frame(collapse_genes(make_cohort(wide, name="ref"), "symbol"))
    )
    r = _csv(client, wide)
    assert r.status_code == 200, r.text
    got = [p["risk"] for p in r.json()["predictions"]]
    np.testing.assert_allclose(got, ref["risk"].to_numpy(), rtol=1e-10)


def test_result_names_its_outcome_and_has_no_cache(client: TestClient, cohort, genes) -> None:
    r = _csv(client, cohort[genes].iloc[:1])
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["outcome_name"] == "recurrence" and body["probability_of"] == "recurrence"
    (p,) = body["predictions"]
    if body["interval_method"] is None:  # the model gives no per-patient interval (yet)
        assert p["probability_interval"] is None
    else:
        iv = p["probability_interval"]
        assert iv["low"] <= p["probability"] <= iv["high"]


def test_outcome_names_and_horizons_in_words() -> None:
    from metastat.serve.meaning import horizon_text, metric_rows, outcome_name

    assert outcome_name("dmfs").startswith("distant-metastasis-free survival")
    assert horizon_text(1826.25, "days") == "5 years"
    assert horizon_text(18, "months") == "18 months"
    assert horizon_text(60, "months") == "5 years"
    assert horizon_text(None, "days") is None
    rows = metric_rows({
        "auc": {"estimate": 0.7, "ci_low": 0.6, "ci_high": 0.8},
        "baseline_auc": {"estimate": 0.65, "ci_low": 0.55, "ci_high": 0.75},
        "delta_auc": {"estimate": 0.05, "ci_low": 0.01, "ci_high": 0.09},
        "logrank_p": {"estimate": 0.03, "ci_low": 0.001, "ci_high": 0.4},
        "calibration_slope": {"estimate": 2.3, "ci_low": 1.5, "ci_high": 3.1},
    })  # fmt: skip
    auc, p, slope = rows
    assert auc["comparator"]["estimate"] == 0.65 and auc["difference"]["ci_low"] == 0.01
    assert p["p_value"] and "ci_low" not in p["model"]
    assert "2.30 is outside 0.8-1.25" in slope["flag"]


def test_data_dir_keeps_nothing_of_the_upload(settings: ServeSettings) -> None:
    names = [p.name for p in Path(settings.data_dir).rglob("*") if p.is_file()]
    assert not [n for n in names if n.endswith((".csv", ".json", ".tsv"))], names
