"""Clinical parsing, typed encoding, real clinical tables and the clinical-only baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metastat.clinical.datasets import clinical_variables, load_clinical_table
from metastat.clinical.encoder import ClinicalEncoder, Variable, parse_variables
from metastat.clinical.parse import (
    grade,
    m_stage,
    n_stage,
    parse_column,
    sex,
    stage,
    status,
    t_stage,
)
from metastat.errors import InputError, UnknownNameError


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        ("Stage IIIA", 3),
        ("IIb", 2),
        ("stage iv", 4),
        ("3", 3),
        ("Stage 0", 0),
        ("IS", 0),
        ("I", 1),
        ("AJCC Stage IIC", 2),
        ("[Not Available]", None),
        ("Stage X", None),
        ("", None),
    ],
)
def test_stage(raw: str, level: int | None) -> None:
    got = stage(raw)
    assert np.isnan(got) if level is None else got == level


def test_tnm_grade_status_sex() -> None:
    assert (t_stage("pT3N1M0"), n_stage("pT3N1M0"), m_stage("pT3N1M0")) == (3, 1, 0)
    assert t_stage("Tis") == 0 and np.isnan(t_stage("TX")) and n_stage("N2b") == 2
    assert m_stage("1.0") == 1 and m_stage("M1a") == 1
    assert [grade(g) for g in ("G1", "2", "grade 3", "poorly differentiated", "High Grade")] == [
        1,
        2,
        3,
        3,
        3,
    ]
    assert np.isnan(grade("GX"))
    assert [status(s) for s in ("positive", "NEG", "+", "-", "MSI-H", "MSS", "1")] == [
        1,
        0,
        1,
        0,
        1,
        0,
        1,
    ]
    assert (sex("MALE"), sex("f")) == (1, 0)


def test_unparseable_values_raise_with_rows() -> None:
    values = pd.Series(["Stage II", "Stage Q", "IIIB", "five"], index=["a", "b", "c", "d"])
    with pytest.raises(InputError, match=r"2 value\(s\).*'Stage Q' \(row 'b'\).*'five'"):
        parse_column(values, "stage", column="AJCC")
    lenient = parse_column(values, "stage", errors="missing")
    assert lenient.isna().tolist() == [False, True, False, True]


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [50, 60, None, 70, 55, 65, 45, 58],
            "stage": ["I", "II", "III", "IV", "II", "III", None, "I"],
            "site": ["colon", "rectum", "colon", "colon", "rectum", "colon", "rectum", "colon"],
        },
        index=[f"p{i}" for i in range(8)],
    )


VARS = [
    Variable(name="age", column="age", kind="numeric"),
    Variable(name="stage", column="stage", kind="stage"),
    Variable(name="site", column="site", kind="categorical"),
]


def test_encoder_missing_indicators_and_unseen_categories(caplog) -> None:
    enc = ClinicalEncoder(VARS, min_level_count=1).fit(_frame())
    assert enc.feature_names_ == [
        "age",
        "age_missing",
        "stage",
        "stage_missing",
        "site=colon",
        "site=rectum",
    ]
    new = pd.DataFrame({"age": [None], "stage": ["IV"], "site": ["anus"]}, index=["q"])
    with caplog.at_level("WARNING", logger="metastat.clinical.encoder"):
        z = enc.transform(new)
    assert "not seen in training" in caplog.text
    assert z.loc["q", "age_missing"] == 1 and z.loc["q", "age"] == pytest.approx(
        (enc.median_["age"] - enc.mean_["age"]) / enc.sd_["age"]
    )
    assert z.loc["q", ["site=colon", "site=rectum"]].sum() == 0
    assert enc.unseen_ == {"site": ["anus"]}
    again = ClinicalEncoder.from_dict(enc.to_dict()).transform(_frame())
    pd.testing.assert_frame_equal(again, enc.transform(_frame()))


def test_encoder_errors() -> None:
    with pytest.raises(InputError, match="no column"):
        ClinicalEncoder([Variable(name="x", column="nope", kind="numeric")]).fit(_frame())
    empty = _frame().assign(age=np.nan)
    with pytest.raises(InputError, match="has no value in the training data"):
        ClinicalEncoder(VARS).fit(empty)
    with pytest.raises(UnknownNameError, match="known"):
        clinical_variables("nope")


def test_recode_numeric_codes() -> None:
    v = Variable(name="sex", column="sex", kind="sex", recode={"1": "male", "0": "female"})
    out = parse_variables(pd.DataFrame({"sex": [1.0, 0.0, None]}), [v])
    assert out["sex"].tolist()[:2] == [1.0, 0.0] and np.isnan(out["sex"].iloc[2])


@pytest.mark.parametrize("name", ["colon_adjuvant", "breast_gbsg2", "tcga_cdr"])
def test_real_clinical_tables_parse(name: str) -> None:
    adata = load_clinical_table(name)
    z = ClinicalEncoder(clinical_variables(name)).fit_transform(adata.obs)
    assert len(z) == adata.n_obs and np.isfinite(z.to_numpy()).all()


def test_clinical_only_baseline_on_colon_trial() -> None:
    from metastat.fusion.modalities import from_cohort
    from metastat.fusion.unimodal import UnimodalModel

    data = from_cohort(load_clinical_table("colon_adjuvant"), "recurrence", expression=False)
    assert len(data) == 929 and data.modalities == ["clinical"]
    rng = np.random.default_rng(0)
    test = rng.random(len(data)) < 0.3
    model = UnimodalModel("clinical").fit(data.subset(np.flatnonzero(~test)))
    pred = model.predict_frame(data.subset(np.flatnonzero(test)))
    from sksurv.metrics import concordance_index_censored

    y = data.target[test]
    c = concordance_index_censored(y["event"], y["time"], pred["risk"].to_numpy())[0]
    assert c > 0.6  # nodes, extent, obstruction: known prognostic factors
    coef = model.model_.gene_coefficients
    assert coef is not None and coef["nodes"] > 0
