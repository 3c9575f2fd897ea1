"""Ed25519 keys in C2SP signed-note form, checked against golang.org/x/mod/sumdb/note vectors."""

from __future__ import annotations

import base64
import dataclasses
import os
import stat
from pathlib import Path

import pytest

from scalegate.errors import KeyMaterialError
from scalegate.ledger.keys import (
    SigningKey,
    VerifierKey,
    check_key_name,
    key_id,
    verifier_key_in,
)

# From golang.org/x/mod/sumdb/note note_test.go.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)


def test_key_ids_match_go_vectors() -> None:
    peter = VerifierKey.parse(PETER_VKEY)
    enoch = VerifierKey.parse(ENOCH_VKEY)
    assert peter.key_id == bytes.fromhex("c74f20a3")
    assert enoch.key_id == bytes.fromhex("af0cfe78")
    assert key_id("PeterNeumann", peter.public) == bytes.fromhex("c74f20a3")
    assert key_id("PeterNeumann", peter.public, 0x04) != peter.key_id  # type separates IDs
    assert peter.keyid == "PeterNeumann+c74f20a3"
    assert peter.text() == PETER_VKEY and enoch.text() == ENOCH_VKEY


def test_go_signing_key_reproduces_go_signature() -> None:
    skey = SigningKey.parse(PETER_SKEY)
    assert skey.text() == PETER_SKEY
    assert skey.vkey == VerifierKey.parse(PETER_VKEY)
    sig = skey.sign(TEXT.encode())
    assert base64.b64encode(skey.key_id + sig).decode() == PETER_SIG
    assert skey.vkey.verify(TEXT.encode(), sig)


def test_verifier_key_manglings_rejected() -> None:
    b = PETER_VKEY.encode()
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(KeyMaterialError):
                    VerifierKey.parse(b[i:j].decode())
    for i in range(len(b)):
        mangled = bytearray(b)
        mangled[i] += 1
        with pytest.raises(KeyMaterialError):
            VerifierKey.parse(mangled.decode())
    # wrong length key and unknown algorithm, each with an adjusted key hash (Go's cases)
    with pytest.raises(KeyMaterialError, match="expected 32"):
        VerifierKey.parse(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(KeyMaterialError, match="signature type 0x65"):
        VerifierKey.parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_signing_key_manglings_rejected() -> None:
    b = PETER_SKEY.encode()
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(KeyMaterialError):
                    SigningKey.parse(b[i:j].decode())
    for i in range(len(b)):
        mangled = bytearray(b)
        mangled[i] += 1
        with pytest.raises(KeyMaterialError):
            SigningKey.parse(mangled.decode())


def test_key_id_mismatch_names_both_ids() -> None:
    with pytest.raises(KeyMaterialError, match=r"key ID c74f20a4 does not match.*c74f20a3"):
        VerifierKey.parse(PETER_VKEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(KeyMaterialError, match="does not match"):
        VerifierKey("Peter", bytes(4), VerifierKey.parse(PETER_VKEY).public)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "em\u2003space", "nl\n", "\x01"])
def test_invalid_names_rejected(name: str) -> None:
    with pytest.raises(KeyMaterialError, match="key names must be"):
        check_key_name(name)
    with pytest.raises(KeyMaterialError):
        SigningKey.generate(name)


def test_generate_sign_verify() -> None:
    key = SigningKey.generate("example-lab/trainer")
    other = SigningKey.generate("example-lab/trainer")
    assert key.vkey != other.vkey and key.key_id != other.key_id
    msg = b"statement"
    sig = key.sign(msg)
    assert len(sig) == 64
    assert key.vkey.verify(msg, sig)
    assert not key.vkey.verify(msg + b"!", sig)
    assert not other.vkey.verify(msg, sig)
    assert not key.vkey.verify(msg, sig[:-1])
    assert not key.vkey.verify(msg, bytes([sig[0] ^ 1]) + sig[1:])
    parsed = VerifierKey.parse(key.vkey.text())
    assert parsed == key.vkey and hash(parsed) == hash(key.vkey)
    assert {parsed, key.vkey} == {key.vkey}
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.name = "x"  # type: ignore[misc]
    assert SigningKey.parse(key.text()).seed() == key.seed()
    assert "PRIVATE" not in repr(key) and key.text().split("+", 4)[-1] not in repr(key)


def test_save_and_load(tmp_path: Path) -> None:
    key = SigningKey.generate("example-lab/rso")
    path = tmp_path / "rso.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == key.text() + "\n"
    assert SigningKey.load(path).vkey == key.vkey

    other = SigningKey.generate("example-lab/rso")
    with pytest.raises(KeyMaterialError, match="already exists"):
        other.save(path)
    assert SigningKey.load(path).vkey == key.vkey  # untouched
    other.save(path, overwrite=True)
    assert SigningKey.load(path).vkey == other.vkey
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rso.key"]  # no temp files left


def test_save_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="missing"):
        SigningKey.generate("a/b").save(tmp_path / "no-such-dir" / "k.key")
    assert list(tmp_path.iterdir()) == []


def test_load_refuses_loose_permissions(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    SigningKey.generate("a/b").save(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyMaterialError, match="mode 0644") as err:
        SigningKey.load(path)
    assert f"chmod 600 {path}" in str(err.value)
    os.chmod(path, 0o640)
    with pytest.raises(KeyMaterialError, match="mode 0640"):
        SigningKey.load(path)


def test_load_refuses_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="does not exist"):
        SigningKey.load(tmp_path / "absent.key")
    bad = tmp_path / "bad.key"
    bad.write_text("PeterNeumann+c74f20a3\n")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyMaterialError, match=r"key file .*bad\.key does not start with"):
        SigningKey.load(bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(KeyMaterialError, match="cannot read"):
        SigningKey.load(bad)
    with pytest.raises(KeyMaterialError, match="not a regular file"):
        SigningKey.load(tmp_path)


def test_load_go_key_file(tmp_path: Path) -> None:
    path = tmp_path / "peter.key"
    path.write_text(PETER_SKEY)  # Go's note.GenerateKey output, no trailing newline
    os.chmod(path, 0o600)
    assert SigningKey.load(path).vkey.text() == PETER_VKEY


@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_load_names_a_verifier_key_file_for_what_it_is(tmp_path: Path, mode: int) -> None:
    """A public key where a private one belongs: said so (whatever its mode), not 'chmod 600'."""
    pub = tmp_path / "peter.pub"
    pub.write_text(PETER_VKEY + "\n")
    os.chmod(pub, mode)
    with pytest.raises(KeyMaterialError) as err:
        SigningKey.load(pub)
    text = str(err.value)
    assert "holds the verifier (public) key PeterNeumann+c74f20a3, not a private key" in text
    assert "chmod" not in text and "leaked" not in text
    assert "(.key) written by `scalegate keys new`" in text  # no peter.key next to it
    SigningKey.parse(PETER_SKEY).save(tmp_path / "peter.key")
    with pytest.raises(KeyMaterialError, match=r"Use the private key file .*peter\.key instead"):
        SigningKey.load(pub)
    assert verifier_key_in(pub) == VerifierKey.parse(PETER_VKEY)
    assert verifier_key_in(tmp_path / "peter.key") is None  # a private key is not one
    assert verifier_key_in(tmp_path / "absent.pub") is None
