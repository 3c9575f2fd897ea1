"""A writer killed with SIGKILL at random moments loses no acknowledged entry, leaves only whole
batches, and leaves a ledger that opens and verifies (real subprocesses, real `kill -9`)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from ledger_writer import check_survivors, kill_mid_batch, make_ledger

from scalegate.ledger.log import Ledger

BATCH = 96


@pytest.mark.slow
def test_sigkill_mid_batch_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    db, key_file, log_key = make_ledger(tmp_path)
    for rnd in range(3):
        run_id = f"run-{rnd}"
        done = kill_mid_batch(str(db), key_file, run_id, BATCH, rng.uniform(0.0, 0.8), seed)

        with Ledger.open(db, log_key=log_key) as led:  # the WAL is recovered, tail intact
            check_survivors(led, log_key, run_id, done, BATCH, seed)
