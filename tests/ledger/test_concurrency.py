"""Several processes appending to one ledger at once get distinct, gap-free indices and build one
consistent tree (real subprocesses on one SQLite file)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from ledger_writer import WRITER, acks, make_ledger

from scalegate.ledger import merkle
from scalegate.ledger.log import Ledger

WRITERS, BATCHES, BATCH = 4, 5, 20


@pytest.mark.slow
def test_concurrent_writers_get_distinct_gap_free_indices(tmp_path: Path) -> None:
    db, key_file, _ = make_ledger(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER), str(db), str(key_file), f"w{i}", str(BATCHES),
             str(BATCH)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(WRITERS)
    ]
    results = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    ranges = {f"w{i}": acks(out.splitlines()) for i, (out, _) in enumerate(results)}

    claimed: list[int] = []
    for rs in ranges.values():
        assert len(rs) == BATCHES
        for first, last, _ in rs:
            assert last - first + 1 == BATCH
            claimed.extend(range(first, last + 1))
    total = WRITERS * BATCHES * BATCH
    assert sorted(claimed) == list(range(1, total + 1))  # distinct and gap-free after entry 0

    with Ledger.open(db) as led:
        assert led.size == total + 1
        for run_id, rs in ranges.items():
            entries = led.entries(run_id=run_id)
            assert [e.statement.predicate.step for e in entries] == list(range(BATCHES * BATCH))
            for first, last, step in rs:
                assert [e.statement.predicate.step for e in led.entries(first, last + 1)] == (
                    list(range(step, step + BATCH)))
        report = led.verify()
        assert report.ok, report.problems
        assert report.root == merkle.root([e.leaf_hash for e in led.entries()])
    # The writers did run at the same time: batches of different writers interleave.
    order = sorted((first, run) for run, rs in ranges.items() for first, _, _ in rs)
    switches = sum(1 for a, b in itertools.pairwise(order) if a[1] != b[1])
    assert switches >= WRITERS - 1
