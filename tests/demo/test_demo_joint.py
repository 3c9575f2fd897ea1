"""`scalegate demo --joint`: the three-lab story, from the command line, in seconds; and
the status command it suggests says the same from the three ledgers it leaves."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from server.serving import SCALEGATE


def test_the_joint_demo_tells_the_three_lab_story(tmp_path: Path) -> None:
    root = tmp_path / "joint"
    t = time.monotonic()
    res = subprocess.run([SCALEGATE, "demo", "--joint", "--dir", str(root)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert time.monotonic() - t < 60
    said = " ".join(res.stdout.split())
    for step in ("proposed: 2 of the 3", "3 compliant", "in breach", "identity alerts",
                 "B. Boss, CEO of lab-b", "unverifiable"):
        assert step in said, step
    args = [SCALEGATE, "commitment", "status", "three-labs-pause", "--json"]
    for org in ("lab-a", "lab-b", "lab-c"):
        args += ["--ledger", str(root / org / "ledger.db"), "--trust",
                 str(root / org / "trust.yaml")]
    status = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert status.returncode == 3, status.stderr  # lab-b is in breach
    parties = {p["org"]: p for p in json.loads(status.stdout)["parties"]}
    assert parties["lab-b"]["compliance"] == "in breach"
    assert parties["lab-a"]["withdrawn_from"] is not None  # with 30 days' notice
