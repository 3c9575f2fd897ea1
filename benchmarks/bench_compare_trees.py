"""The whole-log checks of this source tree against another checkout's, side by side.

    .venv/bin/python benchmarks/bench_compare_trees.py --base /path/to/other/checkout
    .venv/bin/python benchmarks/bench_compare_trees.py --base ../old --rounds 7 --size 100000

For a change to the verifiers: both trees check the same ledger (built once by
``bench_verify.py``'s builder, in ``--workdir``), each run in a fresh interpreter
importing that tree's ``src``, alternating base and this tree round by round so the
machine's drift hits both alike. Timed: ``Ledger.verify`` (``scalegate ledger verify``),
the auditor's log-level audit and the audit with run replay, on ``--workers`` processes.
Prints the medians and their ratios (this tree / base): 1.00 is no change. Not a timed
test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = ("ledger verify", "audit, log only", "audit with replay")

_ONE = """
import json, resource, sys, time
from datetime import timedelta
sys.path.insert(0, {bench!r})
import bench_verify as B

def cpu():
    a, b = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

c0, t0 = cpu(), time.perf_counter()
if {kind!r} == "ledger verify":
    from scalegate.ledger import Ledger
    ok = Ledger.open({path!r}).verify(workers={workers}).ok
else:
    from scalegate.audit import audit_ledger
    ok = audit_ledger({path!r}, B.trust(), use_state=False, workers={workers},
                      replay={kind!r} == "audit with replay",
                      now=B.T0 + timedelta(days=32)).report.ok
print(json.dumps({{"wall": time.perf_counter() - t0, "cpu": cpu() - c0, "ok": ok}}))
"""


def _once(tree: Path, kind: str, path: Path, workers: int) -> dict[str, float]:
    code = _ONE.format(bench=str(tree / "benchmarks"), kind=kind, path=str(path),
                       workers=workers)
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=1800)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if not got["ok"]:
        raise SystemExit(f"{tree}: {kind} did not pass on {path}")
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the other checkout (its src/)")
    ap.add_argument("--size", type=int, default=100_000, help="ledger size")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/scalegate-bench-compare"))
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import bench_verify

    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"compare-{args.size}.db"
    if not path.exists():
        print(f"building a witnessed {args.size:,}-entry ledger in {path}", file=sys.stderr)
        bench_verify.build(path, args.size)
    trees = {"base": args.base.resolve(), "this": HERE.parent}
    times: dict[tuple[str, str], list[dict[str, float]]] = {}
    for r in range(args.rounds):
        for name, tree in trees.items():
            for kind in KINDS:
                times.setdefault((name, kind), []).append(_once(tree, kind, path, args.workers))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"| {args.size:,} entries, {args.workers} process(es), medians of {args.rounds} "
          "alternating rounds | base wall (CPU) | this wall (CPU) | this / base |")
    print("| --- | --- | --- | --- |")
    for kind in KINDS:
        b, t = times[("base", kind)], times[("this", kind)]
        bw, tw = (statistics.median(x["wall"] for x in v) for v in (b, t))
        bc, tc = (statistics.median(x["cpu"] for x in v) for v in (b, t))
        print(f"| {kind} | {bw:.2f} s ({bc:.2f}) | {tw:.2f} s ({tc:.2f}) | "
              f"{tw / bw:.3f} wall, {tc / bc:.3f} CPU |")


if __name__ == "__main__":
    main()
