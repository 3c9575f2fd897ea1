"""Checkpoint digests match the OpenSSF model-signing root digest definition."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from scalegate.errors import ScalegateError
from scalegate.manifest import manifest_of


def test_directory_digest_is_sha256_over_sorted_file_digests(tmp_path: Path) -> None:
    (tmp_path / "b.bin").write_bytes(b"bbb")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(b"a" * 3_000_000)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ignored")
    m = manifest_of(tmp_path)
    assert sorted(m.files) == ["b.bin", "sub/a.bin"]
    expected = hashlib.sha256(
        hashlib.sha256(b"bbb").digest() + hashlib.sha256(b"a" * 3_000_000).digest()
    ).hexdigest()
    assert m.digest == expected


def test_any_byte_change_changes_the_digest(tmp_path: Path) -> None:
    f = tmp_path / "model.pt"
    f.write_bytes(b"weights-1")
    before = manifest_of(tmp_path).digest
    f.write_bytes(b"weights-2")
    assert manifest_of(tmp_path).digest != before
    assert manifest_of(f).files == {"model.pt": hashlib.sha256(b"weights-2").hexdigest()}


def test_missing_or_empty_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScalegateError, match="does not exist"):
        manifest_of(tmp_path / "nope")
    with pytest.raises(ScalegateError, match="holds no files"):
        manifest_of(tmp_path)
