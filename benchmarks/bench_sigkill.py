"""SIGKILL at scale: writers appending signed statements are killed at random moments, and not one
acknowledged entry may be lost, no batch may be left half-written, and the ledger must open and
verify after every kill.

    .venv/bin/python benchmarks/bench_sigkill.py              # 1,000 kills (about 20 minutes)
    .venv/bin/python benchmarks/bench_sigkill.py --kills 40   # a quick look

Half the kills hit a writer alone, half hit two writers appending at once (each killed at its
own random moment). A writer is a real process (``tests/ledger/ledger_writer.py``) appending
batches of signed ``compute`` statements to a real SQLite ledger through
``Ledger.append_many``; after each batch returns it prints the indices it was given and
flushes, so the parent knows exactly what was acknowledged before the ``kill -9``. After every
round the parent opens the ledger (recovering the WAL), checks every acknowledged entry is in
place, that each run holds only whole batches at consecutive indices, runs ``Ledger.verify()``
(the tree recomputed, every signature checked) and has a checkpoint signed over it. The ledger
starts afresh once it holds ``--rotate`` entries, so verifying stays quick.

Prints a table: kills, acknowledged, present, lost (must be 0), partial batches (must be 0),
failed verifications (must be 0), wall time (``--json FILE`` writes the figures too). Exits 1
if any of those is not 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "ledger"))

from ledger_writer import WRITER, acks, make_ledger

from scalegate.errors import ScalegateError
from scalegate.ledger.checkpoint import open_checkpoint
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger

BATCHES = (1, 16, 96)  # batch sizes a writer is given (one per writer, at random)


@dataclass
class Tally:
    """What the kills of one kind (one writer, or two at once) did."""

    kills: int = 0
    acknowledged: int = 0
    present: int = 0
    lost: int = 0
    partial: int = 0
    unverified: int = 0
    writer_errors: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in ("kills", "acknowledged", "present", "lost", "partial", "unverified",
                     "writer_errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems.extend(other.problems)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.partial or self.unverified or self.writer_errors)


@dataclass
class Writer:
    run_id: str
    batch: int
    proc: subprocess.Popen[str]
    stderr: Path


def start_writer(db: Path, key_file: Path, run_id: str, batch: int, tmp: Path) -> Writer:
    """A writer process, once it has opened the ledger (it printed READY)."""
    err = tmp / f"{run_id}.err"
    with err.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(db), str(key_file), run_id, "1000000", str(batch)],
            stdout=subprocess.PIPE, stderr=sink, text=True)
    return Writer(run_id, batch, proc, err)


def wait_ready(w: Writer) -> bool:
    assert w.proc.stdout is not None
    return w.proc.stdout.readline().strip() == "READY"


def kill(w: Writer) -> tuple[list[tuple[int, int, int]], bool]:
    """SIGKILL the writer; return the batches it acknowledged, and whether it was still
    running when killed (and died of the signal)."""
    w.proc.send_signal(signal.SIGKILL)
    out, _ = w.proc.communicate(timeout=60)
    return acks(out.splitlines()), w.proc.returncode == -signal.SIGKILL


def check(led: Ledger, w: Writer, done: list[tuple[int, int, int]], tally: Tally) -> None:
    """Count what the killed writer acknowledged and left; note anything lost or partial."""
    mine = led.entries(run_id=w.run_id)
    tally.acknowledged += sum(last - first + 1 for first, last, _ in done)
    tally.present += len(mine)
    by_index = {e.index: e for e in mine}
    for first, last, step in done:
        for k, index in enumerate(range(first, last + 1)):
            e = by_index.get(index)
            if e is None or e.statement.predicate.step != step + k:
                tally.lost += 1
                tally.problems.append(f"{w.run_id}: acknowledged entry {index} is not in place")
    steps = [e.statement.predicate.step for e in mine]
    whole = len(mine) % w.batch == 0 and steps == list(range(len(mine)))
    # A batch is one transaction: its entries sit at consecutive indices.
    for b in range(0, len(mine), w.batch):
        chunk = mine[b: b + w.batch]
        whole = whole and [e.index for e in chunk] == list(
            range(chunk[0].index, chunk[0].index + len(chunk)))
    if not whole:
        tally.partial += 1
        tally.problems.append(f"{w.run_id}: {len(mine)} entries in batches of {w.batch}, "
                              f"steps {steps[:3]}...{steps[-3:]}: a batch is broken")


def round_of_kills(db: Path, key_file: Path, log_key: SigningKey, n_writers: int, rnd: int,
                   rng: random.Random, max_pause: float,
                   tmp: Path) -> tuple[Tally, int | None]:
    """Start ``n_writers`` writers, kill each at a random moment, check the ledger; return the
    tally and the ledger's size (``None``: it failed, start a fresh one)."""
    tally = Tally()
    writers = [start_writer(db, key_file, f"k{rnd}-w{j}", rng.choice(BATCHES), tmp)
               for j in range(n_writers)]
    ready = [wait_ready(w) for w in writers]
    pauses = sorted(rng.uniform(0, max_pause) for _ in writers)
    order = rng.sample(writers, len(writers))
    results: dict[str, tuple[list[tuple[int, int, int]], bool]] = {}
    started = time.monotonic()
    for w, at in zip(order, pauses, strict=True):
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        results[w.run_id] = kill(w)
    for w, was_ready in zip(writers, ready, strict=True):
        killed = results[w.run_id][1]
        tally.kills += 1
        if not (was_ready and killed):
            tally.writer_errors += 1
            tally.problems.append(f"{w.run_id}: the writer failed on its own (exit "
                                  f"{w.proc.returncode}): {w.stderr.read_text()[-500:]}")
    size: int | None = None
    try:
        with Ledger.open(db, log_key=log_key) as led:  # recovers the WAL; checks the head
            for w in writers:
                check(led, w, results[w.run_id][0], tally)
            report = led.verify()
            if not report.ok:
                tally.unverified += 1
                tally.problems.append(f"round {rnd}: ledger verify failed: {report.problems[:3]}")
            cp, _ = open_checkpoint(led.checkpoint(), log_key.vkey)
            if (cp.size, cp.root_hash) != (led.size, report.root):
                tally.unverified += 1
                tally.problems.append(f"round {rnd}: the checkpoint does not cover the ledger")
            size = led.size
    except ScalegateError as exc:  # keep the evidence; the run goes on with a fresh ledger
        tally.unverified += 1
        kept = keep(db, rnd)
        tally.problems.append(f"round {rnd}: the ledger does not open or verify after the "
                              f"kill ({exc}); kept in {kept}")
    for w in writers:
        w.stderr.unlink(missing_ok=True)
    return tally, size


def keep(db: Path, rnd: int) -> Path:
    """Copy a ledger that failed (with its write-ahead log) out of the temporary directory."""
    kept = Path.cwd() / f"sigkill-failure-{rnd}"
    kept.mkdir(exist_ok=True)
    for f in db.parent.glob(db.name + "*"):
        shutil.copy2(f, kept / f.name)
    return kept


def plan(kills: int, rng: random.Random) -> list[int]:
    """Writers per round: about half the kills alone, half two at once, shuffled."""
    pairs = kills // 4
    rounds = [2] * pairs + [1] * (kills - 2 * pairs)
    rng.shuffle(rounds)
    return rounds


def run(args: argparse.Namespace, console: Console) -> dict[int, Tally]:
    rng = random.Random(args.seed)
    tallies = {1: Tally(), 2: Tally()}
    rounds = plan(args.kills, rng)
    with tempfile.TemporaryDirectory(prefix="scalegate-sigkill-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        generation = 0
        db, key_file, log_key = make_ledger(_fresh(tmp, generation))
        columns = [TextColumn("[bold]SIGKILL"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn()]
        with Progress(*columns, console=console, transient=not console.is_terminal) as bar:
            task = bar.add_task("kills", total=sum(rounds), status="")
            step = max(1, sum(rounds) // 20)
            for rnd, n in enumerate(rounds):
                t, size = round_of_kills(db, key_file, log_key, n, rnd, rng, args.max_pause,
                                         tmp)
                tallies[n].add(t)
                for problem in t.problems:
                    console.print(f"[red]{problem}")
                total = _total(tallies)
                status = (f"acknowledged {total.acknowledged:,}, present {total.present:,}, "
                          f"lost {total.lost}, partial {total.partial}")
                bar.update(task, advance=n, status=status)
                if not console.is_terminal and total.kills // step > (total.kills - n) // step:
                    console.print(f"{total.kills:,} kills: {status}")  # a log, not a bar
                if size is None or size >= args.rotate:
                    generation += 1
                    db, key_file, log_key = make_ledger(_fresh(tmp, generation))
    return tallies


def _fresh(tmp: Path, generation: int) -> Path:
    d = tmp / f"ledger-{generation}"
    d.mkdir()
    return d


def _total(tallies: dict[int, Tally]) -> Tally:
    total = Tally()
    for t in tallies.values():
        total.add(t)
    return total


def report(tallies: dict[int, Tally], seconds: float, console: Console) -> Table:
    table = Table(title="SIGKILL of ledger writers")
    for name in ("writers", "kills", "acknowledged", "present", "lost", "partial batches",
                 "failed verifications", "writer errors", "wall time"):
        table.add_column(name, justify="left" if name == "writers" else "right")
    rows = [("one", tallies[1]), ("two at once", tallies[2]), ("all", _total(tallies))]
    for label, t in rows:
        table.add_row(label, f"{t.kills:,}", f"{t.acknowledged:,}", f"{t.present:,}",
                      str(t.lost), str(t.partial), str(t.unverified), str(t.writer_errors),
                      f"{seconds:,.0f} s" if label == "all" else "")
    console.print(table)
    return table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=1000, help="writers to kill (default 1000)")
    ap.add_argument("--max-pause", type=float, default=0.5,
                    help="a writer is killed 0..this many seconds after it opened the ledger")
    ap.add_argument("--rotate", type=int, default=20_000,
                    help="start a fresh ledger once one holds this many entries")
    ap.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
    ap.add_argument("--dir", help="where the ledgers are written (default: the temp dir)")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.kills < 1:
        ap.error("--kills must be at least 1")
    console = Console() if sys.stdout.isatty() else Console(width=120)
    console.print(f"{args.kills:,} kills, seed {args.seed} (pass --seed to repeat the moments)")
    started = time.monotonic()
    tallies = run(args, console)
    seconds = time.monotonic() - started
    report(tallies, seconds, console)
    if args.json:
        figures = {label: {k: v for k, v in vars(t).items() if k != "problems"}
                   for label, t in (("one", tallies[1]), ("two", tallies[2]),
                                    ("all", _total(tallies)))}
        args.json.write_text(json.dumps({**figures, "seconds": seconds, "seed": args.seed},
                                        indent=2))
    return 0 if _total(tallies).ok else 1


if __name__ == "__main__":
    sys.exit(main())
