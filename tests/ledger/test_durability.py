"""A writer killed with SIGKILL at random moments loses no acknowledged entry, leaves only whole
batches, and leaves a ledger that opens and verifies (real subprocesses, real `kill -9`)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ledger_writer import WRITER, acks, check_survivors, make_ledger

from scalegate.ledger.log import Ledger

BATCH = 96


@pytest.mark.slow
def test_sigkill_mid_batch_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    db, key_file, log_key = make_ledger(tmp_path)
    for rnd in range(3):
        run_id = f"run-{rnd}"
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(db), str(key_file), run_id, "100000", str(BATCH)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.strip() == "READY", (ready, proc.stderr.read() if proc.stderr else "")
        first_ack = proc.stdout.readline()  # at least one acknowledged batch per round
        time.sleep(rng.uniform(0.0, 0.8))  # then a random moment: signing, checking, committing
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        done = acks([first_ack, *out.splitlines()])
        assert done, f"seed {seed}: {first_ack!r}"

        with Ledger.open(db, log_key=log_key) as led:  # the WAL is recovered, tail intact
            check_survivors(led, log_key, run_id, done, BATCH, seed)
