"""The commitment commands as a person uses them: a document's problems located, a
proposal and a signature by signatory keys, refusals that say what to do, never a
traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

from scalegate.demo.workspace import PEOPLE, create_workspace
from server.serving import SCALEGATE


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    """The command's result, its output unwrapped (rich wraps to the terminal's width)."""
    res = subprocess.run([SCALEGATE, *args], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in res.stderr, res.stderr
    return subprocess.CompletedProcess(res.args, res.returncode, " ".join(res.stdout.split()),
                                       " ".join(res.stderr.split()))


def test_a_bad_commitment_names_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "pact.yaml"
    bad.write_text("id: Pact\ntitle: t\ntext: x\nscope: {compute: {flop: -1}}\n"
                   "window: {start: activation}\nactivation: {parties: [a], at_least: 2}\n")
    res = sh("commitment", "check", str(bad))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    for where in ("pact.yaml:1:5: id", "scope.compute.flop", "window", "activation"):
        assert where in out, out
    assert sh("commitment", "check", str(tmp_path / "none.yaml")).returncode != 0
    ok = sh("commitment", "check", "pause-2023-joint")
    assert ok.returncode == 0 and "is valid" in ok.stdout


def test_propose_and_endorse_by_signatory_keys_and_refuse_others(tmp_path: Path) -> None:
    ws = create_workspace(tmp_path / "ws", org="openai",
                          people={**PEOPLE, "ceo": ("signatory",)})
    ws.close()
    keys, ledger = ws.root / "keys", str(ws.ledger_path)
    refused = sh("commitment", "propose", "pause-2023-joint", "--key",
                 str(keys / "trainer.key"), "--ledger", ledger)
    assert refused.returncode != 0 and "signatory" in refused.stdout + refused.stderr
    res = sh("commitment", "propose", "pause-2023-joint", "--key", str(keys / "ceo.key"),
             "--ledger", ledger)
    assert res.returncode == 0 and "proposed pause-2023-joint" in res.stdout, res.stderr
    again = sh("commitment", "propose", "pause-2023-joint", "--key", str(keys / "ceo.key"),
               "--ledger", ledger)
    assert again.returncode != 0 and "already proposed" in again.stdout + again.stderr
    res = sh("commitment", "endorse", "pause-2023-joint", "--key", str(keys / "ceo.key"),
             "--ledger", ledger)
    assert res.returncode == 0 and "signed pause-2023-joint" in res.stdout
    early = sh("commitment", "withdraw", "pause-2023-joint", "--key", str(keys / "ceo.key"),
               "--ledger", ledger, "--effective", "2000-01-01T00:00:00Z")
    assert early.returncode != 0 and "notice" in early.stdout + early.stderr
    status = sh("commitment", "status", "pause-2023-joint", "--ledger", ledger,
                "--trust", str(ws.root / "trust.yaml"))
    # One of five has joined: proposed; the log has no witness, nothing binds yet.
    assert status.returncode == 0, status.stdout + status.stderr
    assert "proposed: 1 of the 5" in status.stdout
    mismatched = sh("commitment", "status", "pause-2023-joint", "--ledger", ledger)
    assert mismatched.returncode != 0
