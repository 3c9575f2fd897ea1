"""Signature checking for appends and verification: backends agree, the process pool agrees with
the in-process check, and forgeable (small-order) keys are kept out of the ledger."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scalegate.errors import AppendRefused, KeyMaterialError
from scalegate.ledger.keys import SigningKey, VerifierKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.registry import is_small_order
from scalegate.ledger.signature_pool import BACKEND, SignaturePool, check_signatures
from scalegate.ledger.statements import KeyPredicate, sign_statement

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IDENTITY = bytes([1]) + bytes(31)  # the neutral point: order 1
FORGERY = IDENTITY + bytes(32)  # R = identity, S = 0: "valid" for any message under IDENTITY
BACKENDS = ["openssl"] + (["libsodium"] if BACKEND == "libsodium" else [])


def _cases() -> tuple[list[tuple[bytes, bytes, bytes]], list[bool]]:
    key, other = SigningKey.generate("a/b"), SigningKey.generate("a/c")
    items, want = [], []
    for i in range(150):
        msg = os.urandom(40 + i)
        sig = key.sign(msg)
        kind = i % 5
        if kind == 0:
            items.append((key.public, msg, sig))
            want.append(True)
        elif kind == 1:
            items.append((key.public, msg + b"x", sig))  # message changed
            want.append(False)
        elif kind == 2:
            items.append((other.public, msg, sig))  # another key
            want.append(False)
        elif kind == 3:
            items.append((key.public, msg, sig[:63]))  # truncated signature
            want.append(False)
        else:
            items.append((bytes(31) + b"\x02", msg, sig))  # not a curve point
            want.append(False)
    return items, want


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_give_the_expected_verdicts(backend: str) -> None:
    items, want = _cases()
    assert check_signatures(items, backend) == want


def test_the_process_pool_agrees_with_the_in_process_check() -> None:
    items, want = _cases()
    with SignaturePool(2) as pool:
        assert pool.check(items) == want
        assert pool.check(items[:10]) == want[:10]  # small batches stay in-process


def test_openssl_accepts_a_forgery_under_a_small_order_key() -> None:
    """Why small-order keys must never be registered (libsodium refuses them itself)."""
    assert check_signatures([(IDENTITY, b"any message at all", FORGERY)], "openssl") == [True]
    if BACKEND == "libsodium":
        assert check_signatures([(IDENTITY, b"m", FORGERY)], "libsodium") == [False]


def test_small_order_points_are_recognised() -> None:
    weak = [bytes(32), IDENTITY,
            bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
            bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
            bytes([0xEC]) + b"\xff" * 30 + b"\x7f"]
    for w in weak:
        assert is_small_order(w)
        assert is_small_order(w[:31] + bytes([w[31] | 0x80]))  # either sign bit
    assert not any(is_small_order(SigningKey.generate("a/b").public) for _ in range(50))


def test_a_small_order_key_cannot_be_registered_or_be_a_root(tmp_path: Path) -> None:
    root = SigningKey.generate("acme/root")
    led = Ledger.create(tmp_path / "l.db", "example.org/log", SigningKey.generate("x"),
                        [root.vkey], now=lambda: T0 + timedelta(days=1))
    evil = VerifierKey.from_public("acme/evil", IDENTITY)
    with pytest.raises(AppendRefused, match="small-order point"):
        led.append(sign_statement(KeyPredicate(vkey=evil.text(), org="acme", valid_from=T0),
                                  root))
    assert led.size == 0
    led.close()
    with pytest.raises(KeyMaterialError, match="small-order point"):
        Ledger.create(tmp_path / "m.db", "example.org/log", SigningKey.generate("x"), [evil])
