"""Slide checksums: a file that does not match its known md5/sha256 fails before any decode,
wherever the digest comes from (cohort manifest, GDC manifest, md5sum output, sidecar); slides
without one are recorded as ``integrity: unverified``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metastat.cli.main import app
from metastat.core.provenance import file_digest
from metastat.errors import InputError
from metastat.slides.checksums import read_checksum_manifest
from metastat.slides.coords import TileConfig
from metastat.slides.runner import discover_slides, run_cohort

SLIDE = Path(__file__).parent / "data" / "slides" / "CMU-1-Small-Region.svs"
CONFIG = TileConfig(verify=False, qc=False)
runner = CliRunner()


@pytest.fixture
def slides(tmp_path: Path) -> Path:
    d = tmp_path / "slides"
    d.mkdir()
    for name in ("a.svs", "b.svs"):
        shutil.copy(SLIDE, d / name)
    return d


def _by_id(out: Path) -> dict[str, dict]:
    summary = json.loads((out / "run_summary.json").read_text())
    return {s["slide_id"]: s for s in summary["slides"]}


def test_file_digest_streams_any_algorithm(tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(b"metastat" * 300_000)  # > 2 MiB: several chunks
    assert file_digest(p, "md5") == hashlib.md5(p.read_bytes()).hexdigest()
    assert file_digest(p) == hashlib.sha256(p.read_bytes()).hexdigest()


def test_manifest_md5_mismatch_fails_before_decode_and_match_is_verified(
    slides: Path, tmp_path: Path
) -> None:
    good = file_digest(SLIDE, "md5")
    bad = ("0" if good[0] != "0" else "1") + good[1:]
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"path,slide_id,md5\nslides/a.svs,A,{bad}\nslides/b.svs,B,{good}\n")
    out = tmp_path / "out"
    run_cohort(discover_slides(manifest), out, CONFIG, workers=0, progress=False)
    s = _by_id(out)
    a, b = s["A"], s["B"]
    assert (a["status"], a["error_type"], a["integrity"]) == (
        "failed", "SlideIntegrityError", "mismatch"
    )  # fmt: skip
    msg = a["message"]
    assert "slide 'A'" in msg and f"expected {bad}, found {good}" in msg
    assert "cohort.csv' line 2" in msg and "re-download" in msg and "\n" not in msg
    assert a["coords_file"] is None and not (out / "coords" / "A.csv").exists()  # never decoded
    assert (b["status"], b["integrity"], b["checksum"]) == ("done", "verified", f"md5:{good}")


def test_sidecar_and_unverified_and_require(slides: Path, tmp_path: Path) -> None:
    (slides / "a.svs.sha256").write_text(f"{file_digest(SLIDE)}  a.svs\n")
    out = tmp_path / "auto"
    run_cohort(discover_slides(slides), out, CONFIG, workers=0, progress=False)
    s = _by_id(out)
    assert (s["a"]["status"], s["a"]["integrity"]) == ("done", "verified")
    assert s["a"]["checksum"].startswith("sha256:")
    assert (s["b"]["status"], s["b"]["integrity"], s["b"]["checksum"]) == (
        "done", "unverified", None
    )  # fmt: skip
    out = tmp_path / "require"
    config = CONFIG.model_copy(update={"checksums": "require"})
    run_cohort(discover_slides(slides), out, config, workers=0, progress=False)
    s = _by_id(out)
    assert s["a"]["status"] == "done"
    assert s["b"]["status"] == "failed" and "no known checksum" in s["b"]["message"]
    (slides / "a.svs.sha256").write_text("f" * 64 + "\n")  # now wrong, but checks are off
    out = tmp_path / "off"
    config = CONFIG.model_copy(update={"checksums": "off"})
    run_cohort(discover_slides(slides), out, config, workers=0, progress=False)
    assert _by_id(out)["a"]["integrity"] == "unverified" and _by_id(out)["a"]["status"] == "done"


def test_gdc_manifest_and_md5sum_output_via_cli(slides: Path, tmp_path: Path) -> None:
    good = file_digest(SLIDE, "md5")
    (slides / "b.svs").write_bytes(SLIDE.read_bytes()[:-100])  # truncated download
    gdc = tmp_path / "gdc_manifest.txt"
    gdc.write_text(
        "id\tfilename\tmd5\tsize\tstate\n"
        f"11111111-aaaa\ta.svs\t{good}\t{SLIDE.stat().st_size}\treleased\n"
        f"22222222-bbbb\tb.svs\t{good}\t{SLIDE.stat().st_size}\treleased\n"
    )
    out = tmp_path / "out"
    args = ["slides", "tile", str(slides), "--out", str(out), "--workers", "0", "--no-verify"]
    res = runner.invoke(app, [*args, "--checksum-manifest", str(gdc), "--no-progress"])
    assert res.exit_code == 0, res.output
    s = _by_id(out)
    assert s["a"]["integrity"] == "verified" and s["b"]["status"] == "failed"
    assert "GDC file id 22222222-bbbb" in s["b"]["message"]
    sums = tmp_path / "MD5SUMS"
    sums.write_text(f"{good} *a.svs\n{good}  b.svs\n")
    assert {k: v[1] for k, v in read_checksum_manifest(sums).items()} == {
        "a.svs": good, "b.svs": good
    }  # fmt: skip


def test_bad_digest_values_are_one_line_errors(tmp_path: Path) -> None:
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"path,md5\n{SLIDE},not-a-digest\n")
    with pytest.raises(InputError, match=r"line 2: md5 'not-a-digest' is not a 32-character"):
        discover_slides(manifest)
    junk = tmp_path / "sums.txt"
    junk.write_text("hello world\n")
    with pytest.raises(InputError, match="neither a header"):
        read_checksum_manifest(junk)


def test_invisible_bit_flip_is_done_unverified_without_digest_and_failed_with_one(
    tmp_path: Path,
) -> None:
    """Byte 10 of CMU-1 is padding before the first tile: every backend decodes the flipped
    file to identical pixels, so only the download's digest can tell."""
    d = tmp_path / "slides"
    d.mkdir()
    blob = bytearray(SLIDE.read_bytes())
    blob[10] ^= 1 << 4
    (d / "flip-header.svs").write_bytes(bytes(blob))
    out = tmp_path / "plain"
    config = TileConfig(qc=False)  # with --verify: every tile read and checked
    run_cohort(discover_slides(d), out, config, workers=0, progress=False)
    s = _by_id(out)["flip-header"]
    assert (s["status"], s["integrity"], s["counts"]) == ("done", "unverified", {})
    (d / "flip-header.svs.md5").write_text(file_digest(SLIDE, "md5") + "\n")
    out = tmp_path / "checked"
    run_cohort(discover_slides(d), out, config, workers=0, progress=False)
    s = _by_id(out)["flip-header"]
    assert (s["status"], s["integrity"]) == ("failed", "mismatch")
    assert "sidecar 'flip-header.svs.md5'" in s["message"]


def test_unknown_checksums_mode_is_a_usage_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    args = ["slides", "tile", str(SLIDE), "--out", str(tmp_path / "o"), "--checksums", "maybe"]
    argv = ["metastat", *args]
    code = f"import sys; from metastat.cli.main import main; sys.argv = {argv!r}; main()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "--checksums 'maybe' is not one of: auto, off, require" in r.stderr


def test_gdc_manifest_is_the_slide_list_of_a_gdc_client_download(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`slides tile MANIFEST`: slides where gdc-client put them (<id>/<filename>), md5 checked."""
    good, size = file_digest(SLIDE, "md5"), SLIDE.stat().st_size
    dl = tmp_path / "download"
    for file_id, name, data in [
        ("aaaa-1111", "TCGA-A1-0001-01Z-00-DX1.svs", SLIDE.read_bytes()),
        ("bbbb-2222", "TCGA-A1-0002-01Z-00-DX1.svs", SLIDE.read_bytes()[:-100]),  # cut short
    ]:
        (dl / file_id).mkdir(parents=True)
        (dl / file_id / name).write_bytes(data)
    manifest = dl / "gdc_manifest.2026-12-01.txt"
    manifest.write_text(
        "id\tfilename\tmd5\tsize\tstate\n"
        f"aaaa-1111\tTCGA-A1-0001-01Z-00-DX1.svs\t{good}\t{size}\treleased\n"
        f"bbbb-2222\tTCGA-A1-0002-01Z-00-DX1.svs\t{good}\t{size}\treleased\n"
        f"cccc-3333\tTCGA-A1-0003-01Z-00-DX1.svs\t{good}\t{size}\treleased\n"  # not downloaded
        f"dddd-4444\tnationwidechildrens.org_clinical.TCGA-A1-0001.xml\t{good}\t9\treleased\n"
    )
    out = tmp_path / "out"
    args = ["slides", "tile", str(manifest), "--out", str(out), "--workers", "0", "--no-verify"]
    res = runner.invoke(app, [*args, "--no-progress"])
    assert res.exit_code == 0, res.output
    s = _by_id(out)
    assert set(s) == {f"TCGA-A1-000{i}-01Z-00-DX1" for i in (1, 2, 3)}  # the XML is not a slide
    one, two, three = (s[f"TCGA-A1-000{i}-01Z-00-DX1"] for i in (1, 2, 3))
    assert one["status"] == "done" and one["integrity"] == "verified"
    assert two["status"] == "failed" and "GDC file id bbbb-2222" in two["message"]
    assert three["status"] == "failed"
    assert "does not exist: download it first (gdc-client download cccc-3333)" in three["message"]
    assert "1 non-slide file(s) skipped" in caplog.text


def test_gdc_manifest_layouts_names_and_pseudonymised_messages(tmp_path: Path) -> None:
    from metastat.slides.checksums import verify_checksum
    from metastat.slides.results import SlideResult

    good = file_digest(SLIDE, "md5")
    dl = tmp_path / "dl"
    (dl / "id-a").mkdir(parents=True)
    shutil.copy(SLIDE, dl / "id-a" / "same.svs")  # one name under two ids (a re-upload at GDC)
    shutil.copy(SLIDE, dl / "flat.svs")  # a flat copy beside the manifest
    manifest = dl / "gdc_manifest.txt"
    manifest.write_text(
        "id\tfilename\tmd5\tsize\tstate\r\n"
        f"id-a\tsame.svs\t{good}\t1\treleased\r\n"
        f"id-b\tsame.svs\t{good}\t1\treleased\r\n"
        f"id-c\tflat.svs\t{good.upper()}\t1\treleased\r\n"
        " \t \t\t\t\r\n"  # a trailing line of blanks
    )
    jobs = {j.slide_id: j for j in discover_slides(manifest)}
    assert set(jobs) == {"same.id-a", "same.id-b", "flat"}
    assert jobs["same.id-a"].path == dl / "id-a" / "same.svs"
    assert jobs["same.id-b"].path == dl / "id-b" / "same.svs"  # never the other id's file
    assert jobs["flat"].path == dl / "flat.svs" and jobs["flat"].checksum[1] == good

    # a cohort manifest with GDC-like columns and a path column stays a cohort manifest
    cohort = dl / "cohort.tsv"
    cohort.write_text(
        f"path\tslide_id\tid\tfilename\tmd5\tsize\nflat.svs\tS1\tx\ty.svs\t{good}\t1\n"
    )
    (only,) = discover_slides(cohort)
    assert only.slide_id == "S1" and only.path == dl / "flat.svs"

    # pseudonymised: neither the path nor the GDC file id (it names a case) in the message
    missing = next(j for j in discover_slides(manifest, pseudonym_key="k") if "id-b" in str(j.path))
    with pytest.raises(InputError) as err:
        verify_checksum(missing, "auto", SlideResult(missing.slide_id, "failed"))
    text = str(err.value)
    assert "does not exist" in text and "gdc-client download -m MANIFEST" in text
    assert "id-b" not in text and "same" not in text and str(dl) not in text
