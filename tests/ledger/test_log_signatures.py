"""Signature checking for appends and verification: backends agree, the process pool agrees with
the in-process check, and forgeable (small-order) keys are kept out of the ledger."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scalegate.errors import AppendRefused, KeyMaterialError
from scalegate.ledger._signature_pool import (
    BACKEND,
    BULK_BACKEND,
    SignaturePool,
    check_signatures,
)
from scalegate.ledger.keys import SigningKey, VerifierKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.registry import is_small_order
from scalegate.ledger.statements import KeyPredicate, sign_statement

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IDENTITY = bytes([1]) + bytes(31)  # the neutral point: order 1
FORGERY = IDENTITY + bytes(32)  # R = identity, S = 0: "valid" for any message under IDENTITY
BACKENDS = ["openssl"] + (["libsodium"] if BACKEND == "libsodium" else []) + (
    ["zebra"] if BULK_BACKEND == "zebra" else [])


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
    with pytest.raises(KeyMaterialError, match="small-order"):
        Ledger.create(tmp_path / "m.db", "example.org/log", SigningKey.generate("x"), [evil])


# --- the bulk verifier (ZIP 215 + libsodium's cheap refusals) against crafted points ---------

L = 2**252 + 27742317777372353535851937790883648493
T8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")  # order 8


def _raw_sign(a: int, r: int, public: bytes, msg: bytes, big_r: bytes) -> bytes:
    """An Ed25519 signature from raw scalars, with ``big_r`` as the R it commits to."""
    import hashlib

    k = int.from_bytes(hashlib.sha512(big_r + public + msg).digest(), "little") % L
    return big_r + ((r + k * a) % L).to_bytes(32, "little")


def _crafted() -> dict[str, tuple[bytes, bytes, bytes]]:
    nacl = pytest.importorskip("nacl.bindings")
    base = nacl.crypto_scalarmult_ed25519_base_noclamp
    a, r = (int.from_bytes(os.urandom(32), "little") % L for _ in range(2))
    public, big_r = base(a.to_bytes(32, "little")), base(r.to_bytes(32, "little"))
    msg = b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
    sig = _raw_sign(a, r, public, msg, big_r)
    mixed_key = nacl.crypto_core_ed25519_add(public, T8)  # A + a point of order 8
    torsion_r = nacl.crypto_core_ed25519_add(big_r, T8)
    return {
        "honest": (public, msg, sig),
        "S + L": (public, msg, sig[:32] + (int.from_bytes(sig[32:], "little") + L)
                  .to_bytes(32, "little")),
        "small-order key": (IDENTITY, msg, FORGERY),
        "small-order R": (public, msg, _raw_sign(a, 0, public, msg, IDENTITY)),
        "mixed-order key": (mixed_key, msg, _raw_sign(a, r, mixed_key, msg, big_r)),
        "torsion in R": (public, msg, _raw_sign(a, r, public, msg, torsion_r)),
    }


@pytest.mark.skipif(BULK_BACKEND != "zebra", reason="ed25519-zebra is not installed")
def test_bulk_verifier_accepts_all_libsodium_does_and_refuses_its_cheap_refusals() -> None:
    cases = _crafted()
    names = list(cases)
    sodium = dict(zip(names, check_signatures(list(cases.values()), "libsodium"), strict=True))
    bulk = dict(zip(names, check_signatures(list(cases.values()), "zebra"), strict=True))
    # (libsodium's cofactorless check accepts the mixed-order key's honest signature when
    # the challenge k is a multiple of 8: one time in eight. The bulk check never does.)
    assert {n: v for n, v in sodium.items() if n != "mixed-order key"} == {
        n: n == "honest" for n in names if n != "mixed-order key"}
    assert bulk["honest"]  # never stricter than admission
    assert not bulk["S + L"] and not bulk["small-order key"] and not bulk["small-order R"]
    assert not bulk["mixed-order key"]
    # The one documented difference: a key holder can put torsion into R on purpose.
    assert bulk["torsion in R"] and not sodium["torsion in R"]


def test_canonical_points() -> None:
    from scalegate.ledger.keys import is_canonical_point, is_sound_key

    key = SigningKey.generate("a/b").public
    assert is_canonical_point(key) and is_sound_key(key)
    p = 2**255 - 19
    for y in (p, p + 1, p + 18, 2**255 - 1):  # y >= p: non-canonical encodings
        assert not is_canonical_point(y.to_bytes(32, "little"))
    assert not is_canonical_point(IDENTITY) and not is_canonical_point(T8)
    assert not is_canonical_point(key[:31])
    nacl = pytest.importorskip("nacl.bindings")
    assert not is_sound_key(nacl.crypto_core_ed25519_add(key, T8))  # mixed order
