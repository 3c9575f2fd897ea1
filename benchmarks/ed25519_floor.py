"""The Ed25519 floor: how long signature checks alone take right now, to read times against.

This machine's speed drifts by up to 2x within minutes, so the verification benchmarks
give every time also as a multiple of this floor: the seconds that 10^6 checks by the bulk
backend (``scalegate.ledger._signature_pool.BULK_BACKEND``) take on as many processes,
measured right before and after the time it is compared with.
"""

from __future__ import annotations

import multiprocessing
import resource
import subprocess
import sys
import time
from pathlib import Path

from scalegate.ledger._signature_pool import BULK_BACKEND, check_signatures
from scalegate.ledger.keys import SigningKey

_KEY = SigningKey.from_seed("bench/floor", bytes([9]) * 32)


def _check_same(n: int) -> float:
    msg = b"x" * 700  # about a statement's PAE
    items = [(_KEY.vkey.public, msg, _KEY.sign(msg))] * n
    t = time.perf_counter()
    assert all(check_signatures(items, BULK_BACKEND))
    return time.perf_counter() - t


def floor(workers: int, sample: int = 40_000) -> float:
    """Seconds that 10^6 signature checks take on ``workers`` processes now (``sample``
    of them timed, scaled)."""
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        t = time.perf_counter()
        pool.map(_check_same, [sample // workers] * workers)
        return (time.perf_counter() - t) / sample * 1e6


def cli_verify(path: Path, workers: int = 2) -> tuple[float, float, float, bool]:
    """``scalegate ledger verify --ledger PATH`` as a user runs it, in a fresh process:
    wall seconds, CPU seconds (all its processes), the floor on ``workers`` processes
    (mean of right before and right after) and whether it verified."""
    before = floor(workers)
    exe = Path(sys.executable).parent / "scalegate"
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run([str(exe), "ledger", "verify", "--ledger", str(path)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru2.ru_utime + ru2.ru_stime - ru.ru_utime - ru.ru_stime
    return wall, cpu, (before + floor(workers)) / 2, done.returncode == 0
