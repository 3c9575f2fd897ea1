"""Auditor benchmark: `scalegate verify` time per 10^5 entries, log-level audit and run
replay.

    .venv/bin/python benchmarks/bench_verify.py                       # 10^5 entries (~2 min)
    .venv/bin/python benchmarks/bench_verify.py --sizes 100000,1000000 --workdir /tmp/bv

For each size it builds (or, with ``--workdir``, reuses) a real ledger holding one run as
an honest supervisor records it: the policy and run statements, then a signed ``compute``
statement per step (1e12 FLOP each), and at every evaluation milestone of the policy
(first at 1e13, then every 2x) an ``eval`` and the ``decision`` after it — all by a
registered trainer key, written through the store's batch path as
``benchmarks/bench_ledger.py`` does — then a log-signed checkpoint cosigned by two
witnesses through :func:`scalegate.audit.witness_ledger`. It then times, side by side on
the same file, the log-level audit (:func:`scalegate.audit.audit_log`: checkpoint and
cosignatures, tree and every stored node, every signature, the registry fold, signers'
standing) and the whole audit with the run replayed
(:func:`scalegate.audit.runcheck.audit_ledger`: every statement parsed and folded, every
decision re-decided, the gate consulted at every milestone), with 1 and 2 processes, and
the ledger's own ``Ledger.verify`` for reference. Prints a Markdown table with seconds per
10^5 entries and the extrapolation to 10^6 (target: under 60 s on 2 cores, replay
included), and the CPU time (which the machine's load inflates less than the wall time).
Signatures are checked with the bulk backend (ed25519-zebra, see
``scalegate.ledger._signature_pool``). This machine's speed drifts by up to 2× within
minutes, so every time is also given as a multiple of the *Ed25519 floor*: the time the
same number of signature checks alone takes on as many processes, measured right before
and after. Not a timed test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ed25519_floor import cli_verify, floor
from scalegate.audit import TrustFile, Witness, witness_ledger
from scalegate.audit.runcheck import audit_ledger
from scalegate.ledger import merkle
from scalegate.ledger._tables import EntryRow, format_time
from scalegate.ledger.cosignature import CosignatureVerifier
from scalegate.ledger.envelope import Envelope, sign_envelope, statement_digest
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import (
    ComputePredicate,
    DecisionPredicate,
    EvalPredicate,
    KeyPredicate,
    PolicyPredicate,
    PolicyRef,
    Predicate,
    RunPredicate,
    make_statement,
    sign_statement,
)
from scalegate.policy import parse_policy

ORIGIN = "bench.example/scalegate"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_CHUNK = 4096


def _key(name: str, n: int) -> SigningKey:
    return SigningKey.from_seed(name, bytes([n]) * 32)


LOG, ROOT, TRAINER = _key(ORIGIN, 1), _key("bench/root", 2), _key("bench/trainer", 3)
WITNESSES = [_key("witness.example/w1", 4), _key("witness.example/w2", 5)]
STEP_FLOP = 1e12
POLICY = parse_policy("""
id: bench
version: "1"
compute:
  regimes: {training: {include: [pretraining, fine-tuning, rl]}}
  effective: {regime: training, multiplier: 1x, source: none}
evaluation: {every: 2x, first_at: 1e13, on_missing: pause}
capabilities:
  - id: cyber
    levels:
      - id: cyber-1
        evaluations: [{evaluation: cyber-task, metric: accuracy, alert: 0.5, trigger: 0.8}]
        requires: [security]
safeguards: [{id: security, kind: security, attested_by: [ciso]}]
governance:
  roles: [rso, ciso, board]
  resumption: {quorum: [rso, board]}
  policy_change: [rso]
""", source="benchmarks/bench_verify.py")
RUN = "bench-run"


def _run_predicates(n: int) -> Iterator[Predicate]:
    """The run as an honest supervisor records it, ``n - 1`` statements after the key's.

    The gate answers "continue" at every milestone (the probe stays under the alert), so
    the decisions are written without calling it; the audit's replay checks they match.
    """
    yield PolicyPredicate(policy_id=POLICY.id, version=POLICY.version, digest=POLICY.digest(),
                          document=POLICY.document())
    yield RunPredicate(run_id=RUN, org="bench", model="bench", started_at=T0,
                       policy=PolicyRef(id=POLICY.id, version=POLICY.version,
                                        digest=POLICY.digest()))
    written, step, index = 3, 0, 3
    milestone = 1e13  # first_at, then 2x the last evaluated compute
    while written < n:
        step += 1
        flop = STEP_FLOP * step
        at = T0 + timedelta(seconds=step)
        yield ComputePredicate(run_id=RUN, step=step, tokens=4096.0 * step,
                               flop_by_phase={"pretraining": flop}, effective_flop=flop,
                               method="6ND", at=at)
        written, index = written + 1, index + 1
        due = flop >= milestone * (1 - 1e-9)
        if due and written + 2 <= n:
            yield EvalPredicate(run_id=RUN, evaluation_id="cyber-task", capability="cyber",
                                metric="accuracy", value=0.1, stderr=0.01, n=100, step=step,
                                effective_flop=flop, at=at)
            milestone = 2 * flop
            written, index = written + 1, index + 1
        if (due or step == 1) and written < n:
            yield DecisionPredicate(run_id=RUN, step=step, effective_flop=flop,
                                    verdict="continue", next_eval_at_flop=milestone,
                                    basis_size=index, at=at)
            written, index = written + 1, index + 1


def _sign_many(preds: list[Predicate]) -> list[bytes]:
    return [sign_envelope(make_statement(p).to_payload(), TRAINER).to_bytes() for p in preds]


def build(path: Path, n: int) -> float:
    """A real, witnessed ledger of ``n`` entries holding one run; returns the seconds."""
    t = time.perf_counter()
    led = Ledger.create(path, ORIGIN, LOG, [ROOT.vkey], now=lambda: T0 + timedelta(days=30))
    led.append(sign_statement(KeyPredicate(vkey=TRAINER.vkey.text(), org="bench",
                                           roles=["trainer"], valid_from=T0), ROOT))
    stamp = format_time(T0 + timedelta(days=30))
    store = led.store
    with store.reader() as conn:
        compact = store.compact_range(conn, 1)
    preds = _run_predicates(n)
    jobs = iter(lambda: list(itertools.islice(preds, _CHUNK)), [])
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        for chunk in pool.imap(_sign_many, jobs):
            with store.writer() as w:
                rows, nodes = [], []
                for data in chunk:
                    leaf = merkle.leaf_hash(data)
                    kind = data_kind(data)
                    rows.append(EntryRow(w.size + len(rows), leaf, data, kind,
                                         None if kind == "policy" else RUN,
                                         TRAINER.vkey.keyid, stamp))
                    nodes.extend(compact.append(leaf)[1:])
                w.add(rows, nodes, (), [statement_digest(r.data) for r in rows])
            print(f"  built {compact.size:,}/{n:,}", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    led.checkpoint()
    clock = iter(T0 + timedelta(days=31, seconds=s) for s in range(10))
    for i, w in enumerate(WITNESSES):
        witness_ledger(led, Witness(path.parent / f"{path.stem}-w{i}.json", w,
                                    {ORIGIN: LOG.vkey}, now=lambda: next(clock)))
    led.close()
    return time.perf_counter() - t


def data_kind(data: bytes) -> str:
    """The statement kind of an envelope (for the store's derived column)."""
    payload = Envelope.from_bytes(data).payload_bytes()
    return json.loads(payload)["predicateType"].split(":")[2]


def _cpu() -> float:
    """CPU seconds used by this process and its finished children (load-independent-ish)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed_audit(path: Path, workers: int, replay: bool, state: Path | None = None
                 ) -> tuple[float, float, str, str, int]:
    """One audit, timed where it runs: seconds, CPU seconds (with its helpers), verdict,
    what it replayed, and the signature verdicts it reused from ``state``."""
    cpu0, t = _cpu(), time.perf_counter()
    audit = audit_ledger(path, trust(), state_path=state, use_state=state is not None,
                         workers=workers, replay=replay, now=T0 + timedelta(days=32))
    secs, cpu = time.perf_counter() - t, _cpu() - cpu0
    report = audit.report
    verdict = "ok" if report.ok else f"FAILED {report.to_json_data()['checks']}"
    extra = ""
    if replay and audit.runs and audit.runs[0].replay is not None:
        r = audit.runs[0].replay
        extra = f", {len(r.decisions)} decisions replayed, {r.consults} gate consultations"
    reused = report.counts.get("signatures verified by an earlier audit (same bytes, same keys)",
                               0)
    return secs, cpu, verdict, extra, reused


def _fresh(fn, *args):  # type: ignore[no-untyped-def]
    """``fn(*args)`` in a fresh interpreter: an audit forks its helpers from the process it
    runs in, and helpers forked from a process that has just freed a large audit's objects
    run ~40 % slower (their writes land in the parent's scattered, copy-on-write pages), so
    each measurement gets a process of its own, as a user's `scalegate verify` does."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _reaudit_in(path: Path, workers: int) -> tuple[float, float, str, str, int]:
    state = path.with_suffix(".auditor.json")
    state.unlink(missing_ok=True)
    _timed_audit(path, workers, True, state)  # the first audit records the verdicts
    return _timed_audit(path, workers, True, state)


def _reaudit(path: Path, n: int, workers: int) -> list[tuple[str, str]]:
    """An auditor's next audit of the same log: its state file holds the verdicts."""
    secs, cpu, verdict, _, reused = _fresh(_reaudit_in, path, workers)
    return [(f"re-audit of {n:,} entries with replay, {workers} process(es), with the state of "
             f"the previous audit ({verdict}; {reused:,} signature verdicts reused)",
             f"{secs:,.1f} s = {secs / n * 1e5:,.2f} s per 10^5 → {secs / n * 1e6:,.0f} s per "
             f"10^6 (CPU {cpu / n * 1e5:,.2f} s per 10^5)")]


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
    from scalegate.ledger._signature_pool import BULK_BACKEND as SIGNATURE_BACKEND

    print(f"cores: {cores}, load average: {os.getloadavg()[0]:.2f}, signatures checked with "
          f"{SIGNATURE_BACKEND}, work: {work}", file=sys.stderr)
    rows: list[tuple[str, str]] = []
    try:
        for n in (int(s) for s in args.sizes.split(",") if s):
            path = work / f"verify-run-{n}.db"
            if not path.exists():
                rows.append((f"build a witnessed {n:,}-entry ledger", f"{build(path, n):,.1f} s"))
            per: dict[tuple[str, int], float] = {}
            for workers in sorted({int(w) for w in args.workers.split(",") if w}):
                for label, replay in (("log only", False), ("with replay", True)):
                    base = floor(workers)
                    secs, cpu, verdict, extra, _ = _fresh(_timed_audit, path, workers, replay)
                    base = (base + floor(workers)) / 2
                    per[label, workers] = secs
                    rows.append((f"audit of {n:,} entries, {label}, {workers} process(es), "
                                 f"{SIGNATURE_BACKEND} ({verdict}{extra})",
                                 f"{secs:,.1f} s = {secs / n * 1e5:,.2f} s per 10^5 → "
                                 f"{secs / n * 1e6:,.0f} s per 10^6 (CPU "
                                 f"{cpu / n * 1e5:,.2f} s per 10^5); "
                                 f"{secs / n * 1e6 / base:.2f}× the Ed25519 floor "
                                 f"({base:.0f} s per 10^6 signatures on {workers} "
                                 "process(es) alone, same moment)"))
                if ("log only", workers) in per:
                    extra_s = per["with replay", workers] - per["log only", workers]
                    rows.append((f"replay's share at {n:,}, {workers} process(es)",
                                 f"{extra_s:,.1f} s = {extra_s / n * 1e5:,.2f} s per 10^5"))
            rows.extend(_reaudit(path, n, max(per_w for _, per_w in per) if per else 2))
            if ("with replay", 1) in per and ("with replay", 2) in per:
                rows.append((f"speed-up with 2 processes at {n:,} (with replay)",
                             f"×{per['with replay', 1] / per['with replay', 2]:.2f}"))
            if not args.no_reference:
                secs, _, base, ok = cli_verify(path)
                rows.append((f"reference: `scalegate ledger verify` of {n:,} "
                             f"({'ok' if ok else 'FAILED'}; a fresh process)",
                             f"{secs:,.1f} s = {secs / n * 1e5:,.2f} s per 10^5; "
                             f"{secs / n * 1e6 / base:.2f}× the Ed25519 floor ({base:.0f} s)"))
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
