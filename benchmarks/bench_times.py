"""What bounding entry times by witnesses costs `scalegate verify`.

    .venv/bin/python benchmarks/bench_times.py                        # 10^5 entries
    .venv/bin/python benchmarks/bench_times.py --size 1000000 --workdir /tmp/bv

On the witnessed ledger ``bench_verify.py`` builds (reused from ``--workdir``), it times the
whole audit with the run replayed, side by side and alternating, with and without the
witnessed-time derivation (the per-entry interval from the witnesses' cosignatures, the
``backdated`` and ``time-order`` checks, notifications judged by witnessed time), each
audit in a fresh process. Prints both times (wall and CPU) per round and the median ratio;
the target is under 5 % added at 10^6 entries. Not a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_verify import _cpu, _fresh, build, trust


def _audit(path: Path, workers: int, with_times: bool) -> tuple[float, float, str]:
    from datetime import timedelta

    from bench_verify import T0
    from scalegate.audit import logcheck, runcheck

    spent = [0.0]
    if not with_times:  # the audit as it was before entries were bounded by witnesses
        runcheck.time_findings = lambda entries, times: []  # type: ignore[assignment]
        logcheck._LogAudit._witnessed = lambda self, stored: None  # type: ignore[attr-defined]
    else:  # the time inside the checks themselves, measured where they run
        findings = runcheck.time_findings

        def timed(entries, times):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return findings(entries, times)
            finally:
                spent[0] += time.perf_counter() - t0

        runcheck.time_findings = timed  # type: ignore[assignment]
    cpu0, t = _cpu(), time.perf_counter()
    audit = runcheck.audit_ledger(path, trust(), use_state=False, workers=workers,
                                  now=T0 + timedelta(days=32))
    secs, cpu = time.perf_counter() - t, _cpu() - cpu0
    bounded = len(audit.report.witnessed_times)
    inside = f", {spent[0]:.2f} s in the time checks ({spent[0] / secs:.1%})" if with_times else ""
    return secs, cpu, ("ok" if audit.report.ok else "FAILED") + f", {bounded} witnessed{inside}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the ledger here (reused)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="scalegate-bench-times-"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"verify-run-{args.size}.db"
    if not path.exists():
        print(f"building a witnessed {args.size:,}-entry ledger…", file=sys.stderr)
        build(path, args.size)
    walls, cpus = [], []
    for r in range(args.rounds):
        row = {}
        for with_times in (False, True) if r % 2 == 0 else (True, False):
            row[with_times] = _fresh(_audit, path, args.workers, with_times)
        (w0, c0, v0), (w1, c1, v1) = row[False], row[True]
        walls.append(w1 / w0)
        cpus.append(c1 / c0)
        print(f"round {r + 1}/{args.rounds}: without {w0:.2f} s (CPU {c0:.2f}, {v0}), with "
              f"{w1:.2f} s (CPU {c1:.2f}, {v1}): {w1 / w0 - 1:+.1%} wall, {c1 / c0 - 1:+.1%} "
              "CPU", flush=True)
    print(f"\n| {args.size:,} entries, {args.workers} processes | median added |\n| --- | --- |\n"
          f"| wall time | {statistics.median(walls) - 1:+.1%} |\n"
          f"| CPU time | {statistics.median(cpus) - 1:+.1%} |")


if __name__ == "__main__":
    main()
