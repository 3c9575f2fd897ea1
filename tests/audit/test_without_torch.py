"""An auditor needs no torch: `pip install scalegate` (no extras) is enough to verify a log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .runworld import new_world

# Make these imports fail, as in an environment where they were never installed.
_NO_HEAVY = """
import sys
for name in ("torch", "transformers", "lightning", "inspect_ai", "numpy"):
    sys.modules[name] = None
sys.argv = ["scalegate", *sys.argv[1:]]
from scalegate.cli import main
main()
"""


def test_verify_runs_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    w = new_world(tmp_path)
    try:
        w.train(lambda d: d.verdict == "pause")
        w.witness()
        trust = w.trust_file()
        ledger = w.ws.ledger_path
    finally:
        w.close()
    done = subprocess.run(
        [sys.executable, "-c", _NO_HEAVY, "verify", "--ledger", str(ledger), "--trust",
         str(trust), "--no-state", "--at", "2026-03-02T00:00:00Z"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "nothing violated" in done.stdout
