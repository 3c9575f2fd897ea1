"""The SIGKILL benchmark (benchmarks/bench_sigkill.py) with a small count: one writer and two
concurrent writers killed at random moments lose no acknowledged entry and leave no partial
batch, and the ledger verifies after every kill. The benchmark itself runs 1,000 kills."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_few_kills_of_one_and_two_writers(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    figures = tmp_path / "sigkill.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_sigkill.py"), "--kills", "8",
         "--dir", str(tmp_path), "--json", str(figures)],
        capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    got = json.loads(figures.read_text())
    assert got["all"]["kills"] == 8 and got["one"]["kills"] and got["two"]["kills"]
    assert got["all"]["present"] >= got["all"]["acknowledged"] > 0
    assert [got["all"][k] for k in ("lost", "partial", "unverified", "writer_errors")] == [0] * 4
    assert "SIGKILL of ledger writers" in done.stdout
