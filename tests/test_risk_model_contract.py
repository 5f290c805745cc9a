"""Every model family honours one contract (:mod:`metastat.core.contract`), checked here once.

Cases (one per family: expression, clinical, radiology, MIL, late and neural fusion) are
registered in ``tests/contract_cases/``. Checked for each: fit returns the model; one finite risk
per sample; a sample's risk and probability do not depend on the other samples scored with it;
probabilities in [0, 1] and an increasing function of the risk (or, for a discrete-time
survival head, read off its own curve and concordant with the risk); survival curves in [0, 1],
non-increasing in time (or a clear refusal for binary models); explanations ranked by absolute
contribution; a saved bundle without pickle that reloads to identical predictions and refuses a
changed array file; refits with the same seed are identical.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

from metastat.core.bundle import ARRAYS, MANIFEST
from metastat.core.contract import RiskPredictor
from metastat.errors import InputError, ModelError
from tests.contract_cases import CASES, Case, ContractData

NAMES = sorted(CASES)


@cache
def fitted(name: str) -> tuple[Any, ContractData]:
    c: Case = CASES[name]
    data = c.data()
    model = c.model()
    assert model.fit(data.x_fit, data.target) is model
    return model, data


def test_every_family_has_a_case() -> None:
    families = {n.split(":")[0] for n in NAMES}
    assert {"expression", "clinical", "radiology", "mil", "fusion"} <= families, families


@pytest.mark.parametrize("name", NAMES)
def test_protocol_and_risk(name: str) -> None:
    model, data = fitted(name)
    assert isinstance(model, RiskPredictor)
    assert model.kind in ("binary", "survival")
    assert model.kind == data.target.kind
    risk = model.predict_risk(data.x_new)
    assert risk.shape == (len(data.ids_new),)
    assert np.isfinite(risk).all()
    assert np.unique(risk).size > 1, "a constant risk ranks nobody"


@pytest.mark.parametrize("name", NAMES)
def test_single_sample_equals_batch(name: str) -> None:
    model, data = fitted(name)
    risk = model.predict_risk(data.x_new)
    prob = model.predict_probability(data.x_new)
    for i in (0, len(data.ids_new) - 1):
        one = data.take(data.x_new, np.array([i]))
        np.testing.assert_allclose(model.predict_risk(one), risk[[i]], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(model.predict_probability(one), prob[[i]], rtol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_probability_is_calibrated_map_of_risk(name: str) -> None:
    model, data = fitted(name)
    risk, prob = model.predict_risk(data.x_new), model.predict_probability(data.x_new)
    assert prob.shape == risk.shape
    assert np.isfinite(prob).all() and ((prob >= 0) & (prob <= 1)).all()
    if np.unique(prob).size > 1:
        rho = spearmanr(risk, prob).statistic
        assert rho > 0.999 if CASES[name].monotone else rho > 0.5, rho


@pytest.mark.parametrize("name", NAMES)
def test_survival_curve(name: str) -> None:
    model, data = fitted(name)
    times = np.linspace(0.0, float(np.nanmax(data.target.time)) if data.target.time is not None
                        else 1.0, 5)  # fmt: skip
    if model.kind == "binary":
        with pytest.raises((ModelError, InputError), match="follow-up times"):
            model.predict_survival(data.x_new, times)
        return
    s = model.predict_survival(data.x_new, times)
    assert s.shape == (len(data.ids_new), len(times))
    assert ((s >= 0) & (s <= 1)).all()
    assert (np.diff(s, axis=1) <= 1e-12).all()
    if model.horizon is not None:  # prob is the event probability by the horizon
        at = 1 - model.predict_survival(data.x_new, np.array([model.horizon]))[:, 0]
        np.testing.assert_allclose(model.predict_probability(data.x_new), at, rtol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_explanation(name: str) -> None:
    model, data = fitted(name)
    if not CASES[name].explains:
        with pytest.raises((InputError, ModelError)):
            model.explain(data.x_new, top=3)
        return
    ex = model.explain(data.x_new, top=3)
    assert [e["sample_id"] for e in ex] == [str(i) for i in data.ids_new]
    for e in ex:
        c = np.abs([f["contribution"] for f in e["features"]])
        assert 1 <= len(c) <= 3 and (np.diff(c) <= 1e-12).all()
        assert all(isinstance(f["feature"], str) and f["feature"] for f in e["features"])


@pytest.mark.parametrize("name", NAMES)
def test_bundle_round_trip_without_pickle(name: str, tmp_path: Path) -> None:
    model, data = fitted(name)
    out = model.save(tmp_path / "m", info={"note": "contract test"})
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["format"].startswith("metastat.") and manifest["note"] == "contract test"
    assert "metastat" in manifest and "python" in manifest  # provenance
    for f in out.rglob("*"):
        if f.is_file():
            assert f.suffix in (".json", ".safetensors"), f
            assert b"\x80\x04\x95" not in f.read_bytes()[:4096], f"pickle in {f}"
    loaded = type(model).load(out)
    np.testing.assert_allclose(
        loaded.predict_risk(data.x_new), model.predict_risk(data.x_new), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        loaded.predict_probability(data.x_new), model.predict_probability(data.x_new), rtol=1e-9
    )
    arrays = out / ARRAYS
    blob = bytearray(arrays.read_bytes())
    blob[-1] ^= 0xFF
    arrays.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="checksum"):
        type(model).load(out)


@pytest.mark.parametrize("name", NAMES)
def test_refit_with_same_seed_is_identical(name: str) -> None:
    model, data = fitted(name)
    again = CASES[name].model().fit(data.x_fit, data.target)
    np.testing.assert_allclose(
        again.predict_risk(data.x_new), model.predict_risk(data.x_new), rtol=1e-7, atol=1e-10
    )
