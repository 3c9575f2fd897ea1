"""Auditing a served log against auditing the same ledger file, side by side in one run.

    .venv/bin/python benchmarks/bench_remote_verify.py                 # 10^5 entries, ~3 min
    .venv/bin/python benchmarks/bench_remote_verify.py --entries 20000 --rounds 3

Builds a real ledger (``--entries`` signed statements of one registered run) and a
trust file, serves it with ``scalegate serve`` (a real process on 127.0.0.1), then, in
alternating rounds, each a fresh ``scalegate`` process:

- ``verify --ledger lab.db``: the audit of the local file (the reference);
- ``verify --ledger http://...`` cold: a new mirror (every tile fetched in parallel and
  checked against the signed root, every entry against its leaf), then the same audit;
- ``verify --ledger http://...`` warm: the mirror is current (one checkpoint fetched);
- ``ledger sync`` alone, cold.

Every audit must reach the same verdict (exit code and the count of each finding).
Prints a Markdown table of median seconds and the ratio to the local audit. Not a
timed test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scalegate.audit import TrustedLog, TrustFile
from scalegate.ledger import (
    ComputePredicate,
    KeyPredicate,
    Ledger,
    PolicyRef,
    RunPredicate,
    SigningKey,
    sign_statement,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server.serving import SCALEGATE, serving

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def build(work: Path, n: int) -> Path:
    """``lab.db`` with ``n`` entries of run ``bench-1``, and ``trust.yaml`` for it."""
    log = SigningKey.generate("bench.example/log")
    log.save(work / "log.key")
    root, trainer = SigningKey.generate("bench/root"), SigningKey.generate("bench/trainer")
    trainer.save(work / "trainer.key")  # later appends (bench_registry.py) sign with it
    led = Ledger.create(work / "lab.db", log.name, work / "log.key", [root.vkey],
                        now=lambda: T0 + timedelta(days=1))
    led.append(sign_statement(KeyPredicate(vkey=trainer.vkey.text(), org="bench",
                                           roles=["trainer"], valid_from=T0), root))
    led.append(sign_statement(RunPredicate(
        run_id="bench-1", org="bench", policy=PolicyRef(id="none", version="1",
                                                      digest="0" * 64),
        started_at=T0, model="tiny"), trainer))
    step = 0
    while led.size < n:
        batch = []
        for _ in range(min(1000, n - led.size)):
            step += 1
            batch.append(sign_statement(ComputePredicate(
                run_id="bench-1", step=step, tokens=1e3 * step,
                flop_by_phase={"pretraining": 1e12 * step}, effective_flop=1e12 * step,
                method="6ND", at=T0 + timedelta(seconds=step)), trainer))
        led.append_many(batch)
    led.checkpoint()
    led.close()
    trust = TrustFile(log=TrustedLog(origin=log.name, key=log.vkey),
                      org_roots={"bench": [root.vkey]})
    (work / "trust.yaml").write_text(trust.to_yaml())
    return work / "lab.db"


def timed(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    res = subprocess.run([SCALEGATE, *args], capture_output=True, text=True, env=env,
                         timeout=3600)
    took = time.perf_counter() - start
    if "Traceback" in res.stderr:
        raise SystemExit(res.stderr)
    return took, res.returncode, _findings(res.stdout)


def _findings(out: str) -> str:
    """The verdict line's findings (the counts, not the times)."""
    lines = [ln for ln in out.splitlines() if "found" in ln or "no violation" in ln]
    return (lines[-1].split(" in ")[0] if lines else "").strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench-remote-"))
    work.mkdir(parents=True, exist_ok=True)
    lab = work / "lab.db"
    if not lab.exists():
        print(f"building {a.entries:,} entries …", file=sys.stderr)
        build(work, a.entries)
    trust = str(work / "trust.yaml")
    base = {**os.environ, "COLUMNS": "200"}
    times: dict[str, list[float]] = {"local": [], "remote, cold": [], "remote, warm": [],
                                     "sync alone, cold": []}
    verdicts: set[tuple[int, str]] = set()
    with serving(lab, "--checkpoint-interval", "1h") as (url, _):
        for r in range(a.rounds):
            mirrors = work / f"mirrors-{r}"
            shutil.rmtree(mirrors, ignore_errors=True)
            env = {**base, "SCALEGATE_MIRRORS": str(mirrors)}
            audit = ["verify", "--trust", trust, "--no-state", "--ledger"]
            for name, args, e in (
                ("local", [*audit, str(lab)], base),
                ("remote, cold", [*audit, url], env),
                ("remote, warm", [*audit, url], env),
                ("sync alone, cold", ["ledger", "sync", url, str(work / f"m-{r}.db")], base),
            ):
                took, code, found = timed(args, e)
                times[name].append(took)
                if name != "sync alone, cold":
                    verdicts.add((code, found))
                print(f"round {r + 1}: {name}: {took:.2f} s", file=sys.stderr)
            (work / f"m-{r}.db").unlink()
    if len(verdicts) != 1:
        raise SystemExit(f"the audits disagree: {verdicts}")
    local = statistics.median(times["local"])
    print(f"\n{a.entries:,} entries, {a.rounds} rounds, median seconds "
          f"(verdict: exit {next(iter(verdicts))[0]}, {next(iter(verdicts))[1]!r})\n")
    print("| audit | seconds | vs local |\n|---|---:|---:|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.2f} | {m / local:.2f}× |")


if __name__ == "__main__":
    main()
