"""Loaders: clear metastat errors naming file / row / column; hypothesis fuzzing of tables."""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metastat.data.cohort import make_cohort
from metastat.data.geo import read_series_matrix
from metastat.data.io import load_cohort
from metastat.data.tables import read_table
from metastat.errors import InputError, MetastatError
from tests.conftest import planted_cohort


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_non_numeric_cell_names_row_and_column(tmp_path: Path) -> None:
    p = _write(tmp_path, "e.csv", "sample_id,TP53,MYC\nA,1.0,2.0\nB,1.5,oops\n")
    with pytest.raises(InputError, match=r"'oops' in column 'MYC', row 'B'"):
        load_cohort(p)


def test_duplicated_sample_ids(tmp_path: Path) -> None:
    p = _write(tmp_path, "e.csv", "sample_id,TP53\nA,1\nA,2\n")
    with pytest.raises(InputError, match=r"duplicated sample id\(s\) \['A'\]"):
        load_cohort(p)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown table format '\.xlsx'"):
        read_table(_write(tmp_path, "e.xlsx", "x"))
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "absent.csv")


def test_a_directory_is_named_as_one(tmp_path: Path) -> None:
    (tmp_path / "expression.csv").write_text("sample,G1\nS1,1\n")
    with pytest.raises(InputError, match=r"is a directory, not a table.*expression\.csv"):
        read_table(tmp_path)
    with pytest.raises(InputError, match="is a directory"):
        load_cohort(tmp_path)


def test_ragged_rows_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        read_table(_write(tmp_path, "r.csv", "id,a,b\nx,1,2,3\n"))
    with pytest.raises(InputError, match="empty"):
        read_table(_write(tmp_path, "empty.csv", ""))


def test_missing_clinical_rows_are_an_error_not_a_misalignment() -> None:
    expr, clin = planted_cohort(n=10)
    with pytest.raises(InputError, match="have no clinical row"):
        make_cohort(expr, clin.iloc[2:], name="x")


def test_clinical_rows_align_by_id_not_position() -> None:
    expr, clin = planted_cohort(n=20)
    a = make_cohort(expr, clin, name="x")
    b = make_cohort(expr, clin.sample(frac=1.0, random_state=1), name="x")
    pd.testing.assert_frame_equal(a.obs, b.obs)


def test_user_outcome_column_typo_is_caught_at_load(planted_files: tuple[Path, Path]) -> None:
    e, c = planted_files
    with pytest.raises(InputError, match=r"no column 'month'.*Did you mean 'months'"):
        load_cohort(
            e, clinical=c, outcome="dfs", event_col="relapse", time_col="month", time_unit="months"
        )


def test_keeps_duplicated_gene_columns(tmp_path: Path) -> None:
    p = _write(tmp_path, "e.csv", "sample_id,XBP1,XBP1,MYC\nA,1,2,3\nB,4,5,6\n")
    frame = read_table(p)
    assert list(frame.columns) == ["XBP1", "XBP1", "MYC"]


SERIES = """!Series_title\t"toy"
!Sample_title\t"t1"\t"t2"\t"t3"
!Sample_geo_accession\t"GSM1"\t"GSM2"\t"GSM3"
!Sample_characteristics_ch1\t"dmfs_event: 1"\t"dmfs_event: 0"\t"dmfs_event: 1"
!Sample_characteristics_ch1\t"dmfs_days: 100"\t"dmfs_days: 2000"\t"dmfs_days: 300"
!series_matrix_table_begin
"ID_REF"\t"GSM1"\t"GSM2"\t"GSM3"
"1007_s_at"\t5.1\t6.2\t7.3
"1053_at"\t8.0\t8.5\t9.1
!series_matrix_table_end
"""


def test_series_matrix_gz(tmp_path: Path) -> None:
    p = tmp_path / "GSE1_series_matrix.txt.gz"
    with gzip.open(p, "wt") as fh:
        fh.write(SERIES)
    expr, clin = read_series_matrix(p)
    assert expr.shape == (3, 2) and list(expr.index) == ["GSM1", "GSM2", "GSM3"]
    assert list(clin["dmfs_event"]) == ["1", "0", "1"]
    adata = load_cohort(
        p, outcome="dmfs", event_col="dmfs_event", time_col="dmfs_days", time_unit="days"
    )
    assert adata.n_obs == 3 and adata.X[2, 1] == pytest.approx(9.1)


def test_truncated_series_matrix(tmp_path: Path) -> None:
    p = _write(tmp_path, "GSE2_series_matrix.txt", SERIES.split("!series_matrix_table_end")[0])
    with pytest.raises(InputError, match="truncated"):
        read_series_matrix(p)


cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 10**6),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6),
    st.just(""),
    st.just("NA"),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.lists(cell, min_size=0, max_size=5), min_size=0, max_size=6),
    header=st.lists(st.text(max_size=5), min_size=0, max_size=5),
    sep=st.sampled_from([",", "\t", ";"]),
)
def test_random_tables_fail_only_with_metastat_errors(
    tmp_path: Path, rows: list, header: list, sep: str
) -> None:
    text = sep.join(["sample_id", *header]) + "\n"
    text += "\n".join(sep.join(str(c) for c in r) for r in rows)
    p = tmp_path / "fuzz.csv"
    p.write_text(text, encoding="utf-8")
    try:
        adata = load_cohort(p)
    except MetastatError:
        return
    assert np.isfinite(np.nan_to_num(np.asarray(adata.X), nan=0.0)).all()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(min_size=0, max_size=300))
def test_random_bytes_fail_only_with_metastat_errors(tmp_path: Path, data: bytes) -> None:
    for name in ("junk.csv", "junk.csv.gz", "GSE9_series_matrix.txt"):
        p = tmp_path / name
        p.write_bytes(data)
        with contextlib.suppress(MetastatError):
            load_cohort(p)
