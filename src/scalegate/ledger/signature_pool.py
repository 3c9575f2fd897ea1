"""Ed25519 signature checks for many entries at once, optionally spread over processes.

Signature verification is the dominant cost of appending and of verifying a ledger
(~100 µs each with ``cryptography``, which holds the GIL), so large batches are split
between this process and ``workers - 1`` helper processes. The helpers import only
``cryptography``; they never touch the database.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["SignatureCheck", "SignaturePool", "check_signatures"]

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


def check_signatures(items: Sequence[SignatureCheck]) -> list[bool]:
    """Whether each ``(public, message, signature)`` verifies (in this process)."""
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
