"""The registry: following a log from empty, catching up, and its pages, side by side in one run.

    .venv/bin/python benchmarks/bench_registry.py                      # 10^5 entries, ~3 min
    .venv/bin/python benchmarks/bench_registry.py --entries 1000000 --workdir /tmp/br

Builds (or reuses, with ``--workdir``) a real ledger of ``--entries`` signed statements of
one run, serves it with ``scalegate serve`` (a real process on 127.0.0.1) and has a
registry follow it:

- from empty: the first round (mirror every tile, verify it, audit it), against the
  Ed25519 floor measured right before and after (the time the same number of signature
  checks alone takes on 2 processes; ``benchmarks/ed25519_floor.py``);
- catching up: ``--new`` entries appended to the served log, then the next round (the
  audit reads only what is new: its time per new entry is set beside the time per entry
  from empty), and again after a restart (the audit's fold read back from its file);
- page latency: ``--requests`` requests each of the home, log, run and pause-less run
  pages and the JSON API, p50 and p95 (the app in this process, through HTTP), the log
  holding ``--runs`` runs.

Prints a Markdown table. Not a timed test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import bench_remote_verify
from ed25519_floor import floor
from scalegate.ledger import (
    ComputePredicate,
    Ledger,
    PolicyRef,
    RunPredicate,
    SigningKey,
    sign_statement,
)
from scalegate.registry import Monitor, RegistryStore, load_config
from scalegate.registry.web import create_registry_app
from server.serving import free_port, serving


def _append(lab: Path, n: int) -> int:
    """``n`` more compute statements of the run, by its trainer; the log's size then."""
    trainer = SigningKey.load(lab.parent / "trainer.key")
    with Ledger.open(lab) as led:
        step = led.size
        for a in range(step, step + n, 1000):
            led.append_many([sign_statement(ComputePredicate(
                run_id="bench-1", step=i, tokens=1e3 * i, flop_by_phase={"pretraining": 1e12 * i},
                effective_flop=1e12 * i, method="6ND",
                at=bench_remote_verify.T0 + timedelta(seconds=i)), trainer)
                for i in range(a, min(step + n, a + 1000))])
        led.checkpoint()
        return led.size


def _runs(lab: Path, n: int) -> None:
    """Runs ``bench-2`` … ``bench-n`` with a few statements each, unless the log has them."""
    trainer = SigningKey.load(lab.parent / "trainer.key")
    with Ledger.open(lab) as led:
        if n < 2 or led.entries(run_id=f"bench-{n}"):
            return
        for r in range(2, n + 1):
            run = f"bench-{r}"
            led.append_many([sign_statement(RunPredicate(
                run_id=run, org="bench", policy=PolicyRef(id="none", version="1",
                                                         digest="0" * 64),
                started_at=bench_remote_verify.T0, model="tiny"), trainer), *(
                sign_statement(ComputePredicate(
                    run_id=run, step=i, tokens=1e3 * i, flop_by_phase={"pretraining": 1e12 * i},
                    effective_flop=1e12 * i, method="6ND",
                    at=bench_remote_verify.T0 + timedelta(seconds=i)), trainer)
                for i in range(1, 6))])
        led.checkpoint()


def _served(url: str, size: int) -> None:
    """Wait until the served checkpoint covers ``size`` entries."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url.rstrip("/") + "/checkpoint") as r:
            if int(r.read().decode().split("\n")[1]) >= size:
                return
        time.sleep(0.2)
    sys.exit(f"the served log did not reach {size:,} entries")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--new", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench-registry-"))
    work.mkdir(parents=True, exist_ok=True)
    lab = work / "lab.db"
    if not lab.exists():
        print(f"building {a.entries:,} entries …", file=sys.stderr)
        bench_remote_verify.build(work, a.entries)
    _runs(lab, a.runs)
    rows: list[tuple[str, str]] = []
    with serving(lab, "--checkpoint-interval", "1s") as (url, _):
        cfg = work / "registry.yaml"
        cfg.write_text(f"logs:\n  - name: bench\n    url: {url}\n    trust: trust.yaml\n")
        shutil.rmtree(work / "registry-work", ignore_errors=True)  # a fresh registry
        (work / "registry.db").unlink(missing_ok=True)
        store = RegistryStore(work / "registry.db")
        monitor = Monitor(load_config(cfg), store, work / "registry-work")
        before = floor(2)
        t = time.perf_counter()
        monitor.check_all()
        first = time.perf_counter() - t
        after = floor(2)
        size = store.log("bench").size  # type: ignore[union-attr]
        fl = (before + after) / 2 * size / 1e6
        rows.append((f"following a {size:,}-entry log from empty (sync, verify, audit)",
                     f"**{first:.1f} s**; the Ed25519 floor for as many checks: {fl:.1f} s "
                     f"(**{first / fl:.2f}×** the floor)"))
        t = time.perf_counter()
        monitor.check_all()
        rows.append(("a round with nothing new (one checkpoint fetched; the audit stands)",
                     f"{(time.perf_counter() - t) * 1000:.0f} ms"))
        if a.new and (work / "trainer.key").exists():
            for when in ("", " after a restart"):
                if when:
                    monitor.keep_folds()
                    monitor = Monitor(load_config(cfg), store, work / "registry-work")
                _served(url, _append(lab, a.new))
                t = time.perf_counter()
                status = monitor.check_all()["bench"]
                took = time.perf_counter() - t
                fold = monitor._folds.get("bench")
                if fold is None:
                    sys.exit(f"the registry did not audit the new entries ({status})")
                fold = fold.audit
                rows.append((f"catching up {a.new:,} new entries{when}",
                             f"{took:.2f} s, the audit reading from entry {fold.read_from:,}: "
                             f"{took / a.new * 1e6:.0f} µs per new entry, "
                             f"**{took / a.new / (first / size):.2f}×** the time per entry "
                             "from empty"))
        rows.extend(_pages(store, a.requests))
        store.close()
    print("| what | measured |\n| --- | --- |")
    for what, got in rows:
        print(f"| {what} | {got} |")


def _pages(store: RegistryStore, n: int) -> list[tuple[str, str]]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_registry_app(store), host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    run = store.log("bench").audit["runs"][0]["run_id"]  # type: ignore[union-attr]
    out = []
    for name, path in (("home page", "/"), ("log page", "/logs/bench"),
                       ("run page", f"/logs/bench/runs/{run}"), ("JSON API, one log",
                                                                 "/api/logs/bench")):
        took = []
        for _ in range(n):
            t = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
                r.read()
            took.append(time.perf_counter() - t)
        out.append((f"{name} latency ({n} requests)",
                    f"p50 {_pct(took, 0.5):.1f} ms, p95 {_pct(took, 0.95):.1f} ms "
                    f"(mean {statistics.mean(took) * 1000:.1f} ms)"))
    server.should_exit = True
    return out


if __name__ == "__main__":
    main()
