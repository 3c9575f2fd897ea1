"""A writer process for the durability and concurrency tests, and how they set it up.

Run as a script: ``python ledger_writer.py DB KEY_FILE RUN_ID BATCHES BATCH_SIZE``

Appends ``BATCHES`` batches of signed ``compute`` statements for ``RUN_ID`` (step
numbers 0, 1, 2, ... across batches) and, after each batch is acknowledged by
``append_many``, prints ``ACK first_index last_index first_step`` and flushes, so
the parent knows exactly which entries were acknowledged before it kills us.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import ComputePredicate, KeyPredicate, sign_statement

WRITER = Path(__file__)


def make_ledger(tmp: Path, *, checkpoint: bool = True) -> tuple[Path, Path, SigningKey]:
    """A ledger with one registered trainer (and, with ``checkpoint``, a checkpoint of it);
    returns (db, trainer key file, log key)."""
    log_key, root, trainer = (SigningKey.generate("example.org/log"),
                              SigningKey.generate("acme/root"), SigningKey.generate("acme/trainer"))
    db, key_file = tmp / "lab.db", tmp / "trainer.key"
    trainer.save(key_file)
    with Ledger.create(db, "example.org/log", log_key, [root.vkey]) as led:
        led.checkpoint_on_close = checkpoint
        led.append(sign_statement(KeyPredicate(vkey=trainer.vkey.text(), org="acme",
                                               roles=["trainer"],
                                               valid_from=datetime.now(UTC) - timedelta(days=1)),
                                  root))
    return db, key_file, log_key


def acks(lines: list[str]) -> list[tuple[int, int, int]]:
    """The ``(first_index, last_index, first_step)`` of every acknowledged batch."""
    out = []
    for ln in lines:
        if ln.startswith("ACK "):
            first, last, step = (int(x) for x in ln.split()[1:4])
            out.append((first, last, step))
    return out


def run_concurrent_writers(location: str, key_file: Path, writers: int, batches: int,
                           batch: int, timeout: float) -> None:
    """Start ``writers`` writer processes at once on ``location`` and check the outcome:
    distinct, gap-free indices after entry 0, every writer's steps in place, batches of
    different writers interleaved, and a ledger that verifies."""
    import itertools
    import subprocess

    from scalegate.ledger import merkle

    procs = [
        subprocess.Popen([sys.executable, str(WRITER), location, str(key_file), f"w{i}",
                          str(batches), str(batch)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(writers)
    ]
    results = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    ranges = {f"w{i}": acks(out.splitlines()) for i, (out, _) in enumerate(results)}

    claimed: list[int] = []
    for rs in ranges.values():
        assert len(rs) == batches
        for first, last, _ in rs:
            assert last - first + 1 == batch
            claimed.extend(range(first, last + 1))
    total = writers * batches * batch
    assert sorted(claimed) == list(range(1, total + 1))  # distinct and gap-free after entry 0

    with Ledger.open(location) as led:
        assert led.size == total + 1
        for run_id, rs in ranges.items():
            entries = led.entries(run_id=run_id)
            assert [e.statement.predicate.step for e in entries] == list(range(batches * batch))
            for first, last, step in rs:
                assert [e.statement.predicate.step for e in led.entries(first, last + 1)] == (
                    list(range(step, step + batch)))
        report = led.verify()
        assert report.ok, report.problems
        assert report.root == merkle.root([e.leaf_hash for e in led.entries()])
    # The writers did run at the same time: batches of different writers interleave.
    order = sorted((first, run) for run, rs in ranges.items() for first, _, _ in rs)
    switches = sum(1 for a, b in itertools.pairwise(order) if a[1] != b[1])
    assert switches >= writers - 1


def kill_mid_batch(location: str, key_file: Path, run_id: str, batch: int, pause: float,
                   seed: int) -> list[tuple[int, int, int]]:
    """Start a writer, let it acknowledge a batch, wait ``pause`` seconds (a random moment
    of signing, checking or committing), SIGKILL it; return the batches it acknowledged."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(
        [sys.executable, str(WRITER), location, str(key_file), run_id, "100000", str(batch)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.strip() == "READY", (ready, proc.stderr.read() if proc.stderr else "")
    first_ack = proc.stdout.readline()  # at least one acknowledged batch per round
    time.sleep(pause)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = acks([first_ack, *out.splitlines()])
    assert done, f"seed {seed}: {first_ack!r}"
    return done


def check_survivors(led: Ledger, log_key: SigningKey, run_id: str,
                    done: list[tuple[int, int, int]], batch: int, seed: int) -> list[bytes]:
    """After a writer was killed: every acknowledged entry in place, only whole batches,
    a ledger that verifies and a checkpoint over it. Returns the leaf hashes."""
    from scalegate.ledger import merkle
    from scalegate.ledger.checkpoint import open_checkpoint

    mine = led.entries(run_id=run_id)
    for first, last, step in done:  # every acknowledged entry, in place
        got = led.entries(first, last + 1)
        assert [e.run_id for e in got] == [run_id] * (last - first + 1)
        assert [e.statement.predicate.step for e in got] == list(
            range(step, step + last - first + 1)), f"seed {seed}"
    # Only whole batches: an unacknowledged batch either committed fully or not at all.
    assert len(mine) % batch == 0, f"seed {seed}: {len(mine)} entries of {run_id}"
    assert len(mine) >= len(done) * batch
    assert [e.statement.predicate.step for e in mine] == list(range(len(mine)))
    report = led.verify()
    assert report.ok, (seed, report.problems)
    leaves = [e.leaf_hash for e in led.entries()]
    assert report.root == merkle.root(leaves)
    cp, _ = open_checkpoint(led.checkpoint(), log_key.vkey)
    assert (cp.size, cp.root_hash) == (len(leaves), report.root)
    return leaves


def main(db: str, key_file: str, run_id: str, batches: int, batch_size: int) -> None:
    key = SigningKey.load(key_file)
    at = datetime.now(UTC)
    step = 0
    with Ledger.open(db) as ledger:
        print("READY", flush=True)
        for _ in range(batches):
            envs = [
                sign_statement(
                    ComputePredicate(
                        run_id=run_id,
                        step=step + i,
                        tokens=float(step + i),
                        flop_by_phase={"pretraining": 1e15 * (step + i)},
                        effective_flop=1e15 * (step + i),
                        method="6ND",
                        at=at,
                    ),
                    key,
                )
                for i in range(batch_size)
            ]
            done = ledger.append_many(envs)
            print(f"ACK {done[0].index} {done[-1].index} {step}", flush=True)
            step += batch_size


if __name__ == "__main__":
    db, key_file, run_id, batches, size = sys.argv[1:6]
    main(db, key_file, run_id, int(batches), int(size))
