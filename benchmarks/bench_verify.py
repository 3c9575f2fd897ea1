"""Auditor benchmark: `scalegate verify` time per 10^5 entries (log-level audit).

    .venv/bin/python benchmarks/bench_verify.py                       # 10^5 entries (~1 min)
    .venv/bin/python benchmarks/bench_verify.py --sizes 100000,1000000 --workdir /tmp/bv

For each size it builds (or, with ``--workdir``, reuses) a real ledger: signed ``compute``
statements by a registered trainer key, written through the store's batch path as
``benchmarks/bench_ledger.py`` does, then a log-signed checkpoint cosigned by two
witnesses through :func:`scalegate.audit.witness_ledger`. It then times, side by side on
the same file, the full log-level audit (:func:`scalegate.audit.audit_log`: checkpoint and
cosignatures, tree and every stored node, every signature, the registry fold, signers'
standing) with 1 and with 2 processes, and the ledger's own ``Ledger.verify`` for
reference. Prints a Markdown table with seconds per 10^5 entries and the extrapolation to
10^6 (target: under 60 s on 2 cores, replay included once it exists), and the CPU time
(which the machine's load inflates less than the wall time). Signatures are checked with
libsodium when PyNaCl is installed, else with OpenSSL (see ``scalegate.audit._envelopes``).
Not a timed test.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scalegate.audit import TrustFile, Witness, audit_log, witness_ledger
from scalegate.ledger import merkle
from scalegate.ledger.cosignature import CosignatureVerifier
from scalegate.ledger.envelope import sign_envelope
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.schema import EntryRow, format_time
from scalegate.ledger.statements import (
    ComputePredicate,
    KeyPredicate,
    make_statement,
    sign_statement,
)

ORIGIN = "bench.example/scalegate"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_CHUNK = 4096


def _key(name: str, n: int) -> SigningKey:
    return SigningKey.from_seed(name, bytes([n]) * 32)


LOG, ROOT, TRAINER = _key(ORIGIN, 1), _key("bench/root", 2), _key("bench/trainer", 3)
WITNESSES = [_key("witness.example/w1", 4), _key("witness.example/w2", 5)]


def _sign_range(bounds: tuple[int, int]) -> list[bytes]:
    return [sign_envelope(make_statement(ComputePredicate(
        run_id="bench-run", step=i, tokens=4096.0 * i, flop_by_phase={"pretraining": 1e12 * i},
        effective_flop=1e12 * i, method="6ND", at=T0)).to_payload(), TRAINER).to_bytes()
        for i in range(*bounds)]


def build(path: Path, n: int) -> float:
    """A real, witnessed ledger of ``n`` entries; returns the seconds it took."""
    t = time.perf_counter()
    led = Ledger.create(path, ORIGIN, LOG, [ROOT.vkey], now=lambda: T0 + timedelta(days=1))
    led.append(sign_statement(KeyPredicate(vkey=TRAINER.vkey.text(), org="bench",
                                           roles=["trainer"], valid_from=T0), ROOT))
    stamp = format_time(T0 + timedelta(days=1))
    store = led.store
    with store.reader() as conn:
        compact = store.compact_range(conn, 1)
    jobs = [(a, min(a + _CHUNK, n - 1)) for a in range(0, n - 1, _CHUNK)]
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        for chunk in pool.imap(_sign_range, jobs):
            with store.writer() as w:
                rows, nodes = [], []
                for data in chunk:
                    leaf = merkle.leaf_hash(data)
                    rows.append(EntryRow(w.size + len(rows), leaf, data, "compute", "bench-run",
                                         TRAINER.vkey.keyid, stamp))
                    nodes.extend(compact.append(leaf)[1:])
                w.add(rows, nodes)
            print(f"  built {compact.size:,}/{n:,}", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    led.checkpoint()
    clock = iter(T0 + timedelta(days=2, seconds=s) for s in range(10))
    for i, w in enumerate(WITNESSES):
        witness_ledger(led, Witness(path.parent / f"{path.stem}-w{i}.json", w,
                                    {ORIGIN: LOG.vkey}, now=lambda: next(clock)))
    led.close()
    return time.perf_counter() - t


def _cpu() -> float:
    """CPU seconds used by this process and its finished children (load-independent-ish)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def trust() -> TrustFile:
    return TrustFile.model_validate({
        "log": {"origin": ORIGIN, "key": LOG.vkey},
        "witnesses": {w.name: CosignatureVerifier.from_key(w) for w in WITNESSES},
        "witness_quorum": 2,
        "org_roots": {"bench": [ROOT.vkey]},
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000", help="ledger sizes, comma-separated")
    ap.add_argument("--workdir", type=Path, default=None, help="keep ledgers here (reused)")
    ap.add_argument("--no-reference", action="store_true", help="skip Ledger.verify")
    ap.add_argument("--workers", default="1,2", help="process counts to time, comma-separated")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="scalegate-bench-verify-"))
    work.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    from scalegate.audit._envelopes import SIGNATURE_BACKEND

    print(f"cores: {cores}, load average: {os.getloadavg()[0]:.2f}, signatures checked with "
          f"{SIGNATURE_BACKEND}, work: {work}", file=sys.stderr)
    rows: list[tuple[str, str]] = []
    try:
        for n in (int(s) for s in args.sizes.split(",") if s):
            path = work / f"verify-{n}.db"
            if not path.exists():
                rows.append((f"build a witnessed {n:,}-entry ledger", f"{build(path, n):,.1f} s"))
            per = {}
            for workers in sorted({int(w) for w in args.workers.split(",") if w}):
                cpu0, t = _cpu(), time.perf_counter()
                report = audit_log(path, trust(), use_state=False, workers=workers)
                secs, cpu = time.perf_counter() - t, _cpu() - cpu0
                per[workers] = secs
                verdict = "ok" if report.ok else f"FAILED {report.to_json_data()['checks']}"
                rows.append((f"audit of {n:,} entries, {workers} process(es), "
                             f"{SIGNATURE_BACKEND} ({verdict})",
                             f"{secs:,.1f} s = {secs / n * 1e5:,.2f} s per 10^5 → "
                             f"{secs / n * 1e6:,.0f} s per 10^6 (CPU {cpu / n * 1e5:,.2f} s "
                             "per 10^5)"))
            if 1 in per and 2 in per:
                rows.append((f"speed-up with 2 processes at {n:,}", f"×{per[1] / per[2]:.2f}"))
            if not args.no_reference:
                with Ledger.open(path) as led:
                    t = time.perf_counter()
                    ok = led.verify().ok
                    secs = time.perf_counter() - t
                rows.append((f"reference: `ledger verify` of {n:,} ({'ok' if ok else 'FAILED'})",
                             f"{secs:,.1f} s = {secs / n * 1e5:,.2f} s per 10^5"))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"| {'measurement'.ljust(width)} | result |")
    print(f"| {'-' * width} | ------ |")
    for what, result in rows:
        print(f"| {what.ljust(width)} | {result} |")


if __name__ == "__main__":
    main()
