"""Several processes appending to one ledger at once get distinct, gap-free indices and build one
consistent tree (real subprocesses on one SQLite file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledger_writer import make_ledger, run_concurrent_writers

WRITERS, BATCHES, BATCH = 4, 5, 20


@pytest.mark.slow
def test_concurrent_writers_get_distinct_gap_free_indices(tmp_path: Path) -> None:
    db, key_file, _ = make_ledger(tmp_path)
    run_concurrent_writers(str(db), key_file, WRITERS, BATCHES, BATCH, timeout=240)
