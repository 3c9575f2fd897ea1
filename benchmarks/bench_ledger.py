"""Ledger benchmarks: signed appends per second, inclusion-proof latency, full verification time.

    .venv/bin/python benchmarks/bench_ledger.py                 # 10^5 and 10^6 entries (~5 min)
    .venv/bin/python benchmarks/bench_ledger.py --sizes 100000  # quicker

Prints a Markdown table. Not a timed test: numbers depend on the machine and its load.

How the large ledgers are built: real signed ``compute`` statements (one registered
trainer key, statements differing by their step counter) are signed in all cores and
written through the store's batch path (``LedgerStore.writer`` / ``Writer.add``, which
stores the entries and their interior nodes exactly as ``Ledger.append_many`` does but
skips re-checking signatures we just made). The result is a real ledger: the benchmark
runs ``Ledger.verify`` on it, which recomputes the tree and checks every signature.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ed25519_floor import cli_verify
from scalegate.ledger import merkle
from scalegate.ledger._tables import EntryRow, format_time
from scalegate.ledger.envelope import Envelope, sign_envelope, statement_digest
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import (
    ComputePredicate,
    KeyPredicate,
    make_statement,
    sign_statement,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ORIGIN = "bench.example/log"
_CHUNK = 1 << 15


def _compute(step: int) -> ComputePredicate:
    return ComputePredicate(run_id="bench-run", step=step, tokens=4096.0 * step,
                            flop_by_phase={"pretraining": 6e9 * 4096 * step},
                            effective_flop=6e9 * 4096 * step, method="6ND", at=T0)


def _new_ledger(path: Path, workers: int = 1) -> tuple[Ledger, SigningKey]:
    log_key, root = SigningKey.generate(ORIGIN), SigningKey.generate("bench/root")
    trainer = SigningKey.from_seed("bench/trainer", bytes(range(32)))
    led = Ledger.create(path, ORIGIN, log_key, [root.vkey], verify_workers=workers,
                        now=lambda: T0 + timedelta(days=1))
    led.append(sign_statement(KeyPredicate(vkey=trainer.vkey.text(), org="bench",
                                           roles=["trainer"], valid_from=T0), root))
    return led, trainer


# --- appends ---------------------------------------------------------------------------------


Row = tuple[str, str, str]  # what, measured (wall clock), CPU time (this process + helpers)


def _cpu() -> float:
    """CPU seconds used so far by this process and its finished helper processes."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_appends(work: Path, n_batched: int, n_single: int) -> list[Row]:
    rows: list[Row] = []
    trainer = SigningKey.from_seed("bench/trainer", bytes(range(32)))
    t, c = time.perf_counter(), _cpu()
    envs = [sign_statement(_compute(i), trainer) for i in range(n_batched)]
    sign_s, sign_cpu = time.perf_counter() - t, _cpu() - c
    rows.append(("build + sign a statement (1 core)", f"{n_batched / sign_s:,.0f} /s",
                 f"{sign_cpu / n_batched * 1e6:.0f} µs each"))
    for workers in (1, 2):
        led, _ = _new_ledger(work / f"append-{workers}.db", workers)
        led.append_many(envs[:256])  # warm-up (and starts helper processes)
        t, c = time.perf_counter(), _cpu()
        for a in range(256, n_batched, 256):
            led.append_many(envs[a : a + 256])
        el = time.perf_counter() - t
        led.close()  # helpers exit, so their CPU time is counted
        n = n_batched - 256
        cpu_us = (_cpu() - c) / n * 1e6
        rows.append((f"append signed statements, batches of 256, {workers} verify process"
                     f"{'es' if workers > 1 else ''}", f"{n / el:,.0f} entries/s",
                     f"{cpu_us:.0f} µs/entry"))
        if workers == 1:
            both = 1 / (el / n + sign_s / n_batched)
            rows.append(("  … the same including building and signing them",
                         f"{both:,.0f} entries/s",
                         f"{cpu_us + sign_cpu / n_batched * 1e6:.0f} µs/entry"))
    led, _ = _new_ledger(work / "append-single.db")
    t, c = time.perf_counter(), _cpu()
    for e in envs[:n_single]:
        led.append(e)
    el = time.perf_counter() - t
    cpu_us = (_cpu() - c) / n_single * 1e6
    rows.append(("append signed statements, batches of 1 (a durable commit each)",
                 f"{n_single / el:,.0f} entries/s", f"{cpu_us:.0f} µs/entry"))
    led.close()
    return rows


# --- building large ledgers -------------------------------------------------------------------


def _sign_range(args: tuple[bytes, int, int]) -> list[bytes]:
    seed, start, end = args
    key = SigningKey.from_seed("bench/trainer", seed)
    return [sign_envelope(make_statement(_compute(i)).to_payload(), key).to_bytes()
            for i in range(start, end)]


def build_ledger(path: Path, n: int) -> float:
    """A real ledger of ``n`` entries (see the module docstring); returns seconds taken."""
    t = time.perf_counter()
    led, trainer = _new_ledger(path)
    first = _sign_range((trainer.seed(), 0, 1))[0]
    Envelope.from_bytes(first, canonical=True)  # what we store is canonical
    stamp = format_time(T0 + timedelta(days=1))
    signer = trainer.vkey.keyid
    store = led.store
    with store.reader() as conn:
        compact = store.compact_range(conn, 1)
    jobs = [(trainer.seed(), a, min(a + _CHUNK, n - 1)) for a in range(0, n - 1, _CHUNK)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(os.cpu_count() or 1) as pool:
        for chunk in pool.imap(_sign_range, jobs):
            with store.writer() as w:
                rows, nodes = [], []
                for data in chunk:
                    leaf = merkle.leaf_hash(data)
                    rows.append(EntryRow(w.size + len(rows), leaf, data, "compute", "bench-run",
                                         signer, stamp))
                    nodes.extend(compact.append(leaf)[1:])
                w.add(rows, nodes, (), [statement_digest(r.data) for r in rows])
            print(f"  built {compact.size:,}/{n:,}", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    led.close()
    return time.perf_counter() - t


def bench_proofs(path: Path, samples: int) -> tuple[float, float]:
    """Median and 95th-percentile inclusion-proof time (ms) at the ledger's size."""
    with Ledger.open(path) as led:
        n = led.size
        root = led.root()
        rng = random.Random(1)
        idx = [rng.randrange(n) for _ in range(samples)]
        for i in idx[:50]:  # warm-up, and check what we time is right
            merkle.verify_inclusion(i, n, led.entries(i, i + 1)[0].leaf_hash,
                                    led.inclusion_proof(i, n), root)
        times = []
        for i in idx:
            t = time.perf_counter()
            led.inclusion_proof(i, n)
            times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times) * 1e3, times[int(0.95 * len(times))] * 1e3


def bench_signature_backends(n: int = 4000) -> list[Row]:
    """Raw Ed25519 verifications per second for each installed backend, side by side."""
    from scalegate.ledger._signature_pool import BACKEND, BULK_BACKEND, check_signatures

    key = SigningKey.generate("bench/x")
    items = [(key.public, m, key.sign(m)) for m in (os.urandom(800) for _ in range(n))]
    rows = []
    backends = ["openssl"] + (["libsodium"] if BACKEND == "libsodium" else []) + (
        ["zebra"] if BULK_BACKEND == "zebra" else [])
    for backend in backends:
        t, c = time.perf_counter(), _cpu()
        assert all(check_signatures(items, backend))
        wall, cpu = (time.perf_counter() - t) / n, (_cpu() - c) / n
        used = [what for what, b in (("appends", BACKEND), ("verification", BULK_BACKEND))
                if b == backend]
        label = f" (used for {' and '.join(used)})" if used else ""
        rows.append((f"Ed25519 signature check, {backend}{label}", f"{1 / wall:,.0f} /s",
                     f"{cpu * 1e6:.0f} µs each"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="ledger sizes for proofs/verify")
    ap.add_argument("--appends", type=int, default=8192, help="entries for the batch benchmark")
    ap.add_argument("--single", type=int, default=300, help="entries appended one at a time")
    ap.add_argument("--samples", type=int, default=2000, help="proofs timed per size")
    ap.add_argument("--workdir", type=Path, default=None, help="keep ledgers here (reused)")
    args = ap.parse_args()
    args.appends = max(args.appends, 512)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="scalegate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}, work: {work}",
          file=sys.stderr)
    rows: list[Row] = []
    try:
        for f in work.glob("append-*.db*"):
            f.unlink()
        rows += bench_signature_backends()
        rows += bench_appends(work, args.appends, args.single)
        for n in (int(s) for s in args.sizes.split(",") if s):
            path = work / f"ledger-{n}.db"
            if not path.exists():
                c = _cpu()
                built = build_ledger(path, n)
                rows.append((f"build a {n:,}-entry ledger (sign on all cores + batch insert)",
                             f"{built:,.1f} s", f"{_cpu() - c:,.1f} s"))
            med, p95 = bench_proofs(path, args.samples)
            rows.append((f"inclusion proof at {n:,} entries (median / p95)",
                         f"{med:.3f} ms / {p95:.3f} ms", ""))
            secs, cpu, base, ok = cli_verify(path)
            rows.append((f"`scalegate ledger verify` of {n:,} entries ({'ok' if ok else 'FAILED'}"
                         "; a fresh process, as a user runs it)",
                         f"{secs:,.1f} s ({secs / n * 1e5:,.1f} s per 10^5; "
                         f"{secs / n * 1e6 / base:.2f}× the Ed25519 floor of {base:.0f} s per "
                         "10^6 on 2 processes at the same moment)",
                         f"{cpu:,.1f} s ({cpu / n * 1e5:,.1f} s per 10^5)"))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"\n{os.cpu_count()} cores, load average {load:.2f} at the end "
          f"(other work on the machine slows the wall-clock column, less the CPU one)\n")
    print(f"| {'measurement'.ljust(w0)} | {'measured'.ljust(w1)} | CPU time (all processes) |")
    print(f"| {'-' * w0} | {'-' * w1} | ------------------------ |")
    for what, result, cpu in rows:
        print(f"| {what.ljust(w0)} | {result.ljust(w1)} | {cpu} |")


if __name__ == "__main__":
    main()
