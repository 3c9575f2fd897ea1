"""Ed25519 signature checks for many entries at once, optionally spread over processes.

Signature verification is the dominant cost of appending to and of verifying a ledger,
so large batches are split between this process and ``workers - 1`` helper processes,
which never touch the database. Three implementations, two rules:

- **Admission is strict** (:data:`BACKEND`): libsodium (PyNaCl) when installed, else
  OpenSSL. libsodium refuses non-canonical encodings and small-order keys and ``R``
  values that OpenSSL accepts, so an entry the ledger admits verifies under every
  common Ed25519 implementation.
- **Bulk verification** (:data:`BULK_BACKEND`, used by ``ledger verify`` and the
  auditor) uses ed25519-zebra when installed: about 1.5x faster than libsodium on the
  reference machine, which is what lets 10^6 entries verify within a minute on two
  cores. zebra applies ZIP 215 (cofactored equation, non-canonical points decoded);
  before it runs we refuse what libsodium refuses on cheap grounds: non-canonical or
  small-order ``R``, and a public key that is small-order, non-canonical or outside
  the prime-order subgroup (checked once per key). Every signature libsodium accepts
  is accepted; the only signatures accepted beyond libsodium's are ones whose ``R``
  carries a small torsion component, which only the key's holder can make (a forger
  gains nothing). A ledger holding such an entry bypassed strict admission.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scalegate.ledger.keys import is_canonical_point, is_sound_key

_sodium_open: Callable[[bytes, bytes], bytes] | None
_sodium_valid_point: Callable[[bytes], bool] | None
try:  # optional accelerator (see the module docstring)
    from nacl.bindings import crypto_core_ed25519_is_valid_point as _sodium_valid_point
    from nacl.bindings import crypto_sign_open as _sodium_open
    from nacl.exceptions import BadSignatureError as _SodiumBad
except ImportError:  # pragma: no cover - depends on the installation
    _sodium_open = _sodium_valid_point = None
try:  # optional accelerator for bulk verification (see the module docstring)
    from ed25519_zebra import ed_verify as _zebra_verify
except ImportError:  # pragma: no cover - depends on the installation
    _zebra_verify = None

__all__ = ["BACKEND", "BULK_BACKEND", "SignatureCheck", "SignaturePool", "check_signatures"]

#: The strict implementation that decides admission.
BACKEND = "libsodium" if _sodium_open is not None else "openssl"
#: The implementation that verifies whole ledgers (ZIP 215 with libsodium's cheap refusals).
BULK_BACKEND = ("zebra" if _zebra_verify is not None and _sodium_valid_point is not None
                else BACKEND)

# (32-byte Ed25519 public key, signed message, signature)
SignatureCheck = tuple[bytes, bytes, bytes]

_KEYS: dict[bytes, Ed25519PublicKey] = {}
_START = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
_MIN_PARALLEL = 64  # below this, process hand-off costs more than it saves


def _public(raw: bytes) -> Ed25519PublicKey:
    key = _KEYS.get(raw)
    if key is None:
        if len(_KEYS) > 4096:
            _KEYS.clear()
        key = _KEYS[raw] = Ed25519PublicKey.from_public_bytes(raw)
    return key


def check_signatures(items: Sequence[SignatureCheck], backend: str | None = None) -> list[bool]:
    """Whether each ``(public, message, signature)`` verifies (in this process).

    ``backend`` is ``"openssl"``, ``"libsodium"`` or ``"zebra"`` (default: :data:`BACKEND`,
    the strict one; pass :data:`BULK_BACKEND` to verify stored entries).
    """
    backend = backend or BACKEND
    if backend == "zebra":
        return _check_zebra(items)
    if backend == "libsodium":
        return _check_sodium(items)
    return _check_openssl(items)


def _check_openssl(items: Sequence[SignatureCheck]) -> list[bool]:
    out = []
    for public, message, sig in items:
        if len(sig) != 64:
            out.append(False)
            continue
        try:
            _public(public).verify(sig, message)
        except (InvalidSignature, ValueError):
            out.append(False)
        else:
            out.append(True)
    return out


def _check_sodium(items: Sequence[SignatureCheck]) -> list[bool]:
    if _sodium_open is None:
        raise RuntimeError("libsodium backend requested but PyNaCl is not installed")
    out = []
    for public, message, sig in items:
        if len(sig) != 64 or len(public) != 32:
            out.append(False)
            continue
        try:
            _sodium_open(sig + message, public)  # combined form: signature || message
        except (_SodiumBad, ValueError, TypeError):
            out.append(False)
        else:
            out.append(True)
    return out


_GOOD_KEYS: dict[bytes, bool] = {}


def _good_key(public: bytes) -> bool:
    good = _GOOD_KEYS.get(public)
    if good is None:
        if len(_GOOD_KEYS) > 4096:
            _GOOD_KEYS.clear()
        good = _GOOD_KEYS[public] = is_sound_key(public)
    return good


def _check_zebra(items: Sequence[SignatureCheck]) -> list[bool]:
    if _zebra_verify is None or _sodium_valid_point is None:
        raise RuntimeError("zebra backend requested but ed25519-zebra or PyNaCl is missing")
    out = []
    for public, message, sig in items:
        out.append(len(sig) == 64 and _good_key(public) and is_canonical_point(sig[:32])
                   and _zebra_verify(sig, bytes(message), public))
    return out


class SignaturePool:
    """Checks batches of signatures using ``workers`` processes (this one included).

    With ``workers <= 1`` everything runs in-process. Helper processes start lazily and
    stop on :meth:`close`. They are forked where the platform can (``spawn`` would
    re-import the caller's ``__main__``, which breaks unguarded training scripts); a
    forked helper runs only :func:`check_signatures` and never uses inherited handles.
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers - 1, mp_context=multiprocessing.get_context(_START)
            )
        return self._pool

    def submit(self, items: Sequence[SignatureCheck]) -> Future[list[bool]]:
        """Check ``items`` in a helper process (in-process when there are no helpers)."""
        if self.workers <= 1:
            f: Future[list[bool]] = Future()
            f.set_result(check_signatures(items))
            return f
        return self._executor().submit(check_signatures, list(items))

    def check(self, items: Sequence[SignatureCheck]) -> list[bool]:
        """Whether each item verifies; large batches are split across the processes."""
        n = len(items)
        if self.workers <= 1 or n < _MIN_PARALLEL:
            return check_signatures(items)
        step = -(-n // self.workers)
        chunks = [items[i : i + step] for i in range(0, n, step)]
        futures = [self.submit(c) for c in chunks[1:]]
        out = check_signatures(chunks[0])
        for f in futures:
            out.extend(f.result())
        return out

    def close(self) -> None:
        """Stop the helper processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> SignaturePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
