"""Checksums, weights digests and run provenance (metastat.core.provenance)."""

from __future__ import annotations

import hashlib
import io

from metastat.core.provenance import (
    copy_with_digest,
    copy_with_digests,
    run_provenance,
    sha256_file,
    verify_sha256,
    weights_digest,
)


def test_sha256_file_streams_and_verifies(tmp_path):
    p = tmp_path / "a.bin"
    data = bytes(range(256)) * 10_000  # > one chunk
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
    assert verify_sha256(p, hashlib.sha256(data).hexdigest())
    assert not verify_sha256(p, "0" * 64)
    assert not verify_sha256(tmp_path / "missing.bin", hashlib.sha256(data).hexdigest())
    assert not verify_sha256(p, None)


def test_weights_digest_identifies_content_not_name(tmp_path):
    a, b = tmp_path / "x" / "model.bin", tmp_path / "y" / "model.bin"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_bytes(b"weights one")
    b.write_bytes(b"weights two")
    assert weights_digest(a) != weights_digest(b)
    assert weights_digest(None) is None
    a.write_bytes(b"weights two!")  # changed in place: the cache key (size, mtime) changes
    assert weights_digest(a) == hashlib.sha256(b"weights two!").hexdigest()


def test_feature_fingerprint_includes_the_weights_digest(tmp_path):
    from metastat.slides.pipeline import ProcessConfig

    a, b = tmp_path / "x" / "model.bin", tmp_path / "y" / "model.bin"
    for p, text in ((a, b"one"), (b, b"two")):
        p.parent.mkdir()
        p.write_bytes(text)
    fa = ProcessConfig(encoder_weights=str(a)).fingerprint()
    fb = ProcessConfig(encoder_weights=str(b)).fingerprint()
    assert fa != fb  # same file name, different weights
    assert fa == ProcessConfig(encoder_weights=str(a)).fingerprint()


def test_run_provenance_records_versions_and_extra():
    meta = run_provenance(seed=3)
    assert {"metastat", "python", "numpy", "pandas", "scikit-learn", "platform"} <= set(meta)
    assert meta["seed"] == 3


def test_settings_digest_is_the_sorted_json_fingerprint() -> None:
    """One fingerprint for slide tiling, feature extraction, stain and radiomics settings:
    key order does not matter, values do; the digests of earlier runs stay valid."""
    import hashlib
    import json

    from metastat.core.provenance import settings_digest

    a, b = {"tile": 256, "mpp": 0.5}, {"mpp": 0.5, "tile": 256}
    assert settings_digest(a) == settings_digest(b) != settings_digest({**a, "tile": 224})
    old = hashlib.sha256(json.dumps(a, sort_keys=True).encode()).hexdigest()[:16]
    assert settings_digest(a) == old and len(settings_digest(a, 8)) == 8


def test_copy_with_digests_writes_the_bytes_and_hashes_them_in_one_pass(tmp_path) -> None:
    data = bytes(range(256)) * 9000  # over two 1 MiB chunks
    got = copy_with_digests(io.BytesIO(data), tmp_path / "f", ("sha256", "md5"))
    assert (tmp_path / "f").read_bytes() == data
    assert got == {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}
    assert copy_with_digest(io.BytesIO(data), tmp_path / "g") == got["sha256"]
