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


def make_ledger(tmp: Path) -> tuple[Path, Path, SigningKey]:
    """A ledger with one registered trainer; returns (db, trainer key file, log key)."""
    log_key, root, trainer = (SigningKey.generate("example.org/log"),
                              SigningKey.generate("acme/root"), SigningKey.generate("acme/trainer"))
    db, key_file = tmp / "lab.db", tmp / "trainer.key"
    trainer.save(key_file)
    with Ledger.create(db, "example.org/log", log_key, [root.vkey]) as led:
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
