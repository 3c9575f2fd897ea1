"""`scalegate demo` end to end, as `make demo` runs it: a real subprocess, a real model.

The run must pause itself at the trigger, be refused until the safeguard is attested and
the quorum approves, resume from the paused checkpoint, pause again at the compute ceiling
of that approval (evaluated there), go on once the quorum approves the next step, finish,
and verify clean — and the ledger it leaves must say so to anyone who folds it again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scalegate.ledger.log import Ledger
from scalegate.manifest import manifest_of
from scalegate.runs import load_state

pytestmark = pytest.mark.slow
SCALEGATE = str(Path(sys.executable).with_name("scalegate"))


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    return subprocess.run([SCALEGATE, "demo", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_demo_pauses_is_approved_resumes_and_verifies(tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    done = _demo("--dir", str(ws), "--no-live")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    for expected in ("PAUSED at step", "refused", "CISO attests", "RSO approves",
                     "board member approves", "matches the pause record",
                     "paused itself at its ceiling", "evaluated at the ceiling before pausing",
                     "RSO approves the next step",
                     "training finished at step 1000", "decisions replay to the same verdict",
                     "pauses declared and honoured", "training transcript",
                     "reproduces bitwise"):
        assert expected in out, (expected, out)

    assert "✗" not in out and (ws / "audit.html").stat().st_size > 10_000
    with Ledger.open(ws / "ledger.db") as ledger:
        state = load_state(ledger, "demo-run")
        assert ledger.verify().ok
    pause, at_ceiling = state.pauses
    resumed, _ = state.resumes
    assert [r.predicate.checkpoint for r in state.resumes] == [
        p.predicate.checkpoint for p in state.pauses]
    assert pause.index < resumed.index < at_ceiling.index
    # At the ceiling the model was evaluated before the pause, at the pause's step, and
    # the approvals alone lifted it.
    fresh = [e for e in state.evals if e.predicate.step == at_ceiling.predicate.step]
    assert fresh and all(e.index < at_ceiling.index for e in fresh)
    assert sorted(a.roles[0] for a in state.approvals_for(at_ceiling.ref)) == ["board", "rso"]
    ck = state.find(pause.predicate.checkpoint)
    assert ck is not None and manifest_of(ck.predicate.uri).digest == ck.predicate.digest
    roles = sorted(a.roles[0] for a in state.approvals_for(pause.ref))
    assert roles == ["board", "rso"]
    assert state.attestations[0].roles == ("ciso",)
    # Evaluated at the policy's milestones, through Inspect (the dangerous task) and a probe.
    dangerous = [e.predicate for e in state.evals if e.predicate.evaluation_id == "cyber-demo-task"]
    assert dangerous[0].harness.startswith("inspect")
    assert dangerous[0].value == 0.0 and max(e.value or 0 for e in dangerous) >= 0.6
    assert [d.predicate.verdict for d in state.decisions].count("alert") >= 1
    # The notification the policy requires was recorded as soon as it was owed, and the
    # ledger passes an audit dated long after its deadline, witnessed times and all.
    (notice,) = state.notifications
    assert notice.predicate.obligation_id == "demo-notify"
    later = subprocess.run([SCALEGATE, "verify", "--ledger", str(ws / "ledger.db"), "--trust",
                            str(ws / "trust.yaml"), "--at", "2030-01-01T00:00:00Z", "--no-state",
                            "--json"], capture_output=True, text=True, timeout=300)
    assert later.returncode == 0, later.stdout + later.stderr
    report = json.loads(later.stdout)
    assert len(report["witnessed_times"]) >= 5 and report["operator_word"] == []
    assert "entry times bounded by witnesses" in out
    # No compute was recorded between the pause and the resumption.
    assert not [c for c in state.compute if pause.index < c.index < resumed.index]
    assert state.compute[-1].predicate.step == 1000
    # Run again in the same place: new keys, said loudly (a trust file handed out stops
    # matching).
    assert "no longer matches" not in out
    again = _demo("--dir", str(ws), "--no-live", "--until-pause")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "trust file handed out for the earlier one" in " ".join(again.stdout.split())


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    refused = _demo("--dir", str(foreign), "--no-live")
    assert refused.returncode != 0
    assert "not made by `scalegate demo`" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (foreign / "thesis.tex").read_text() == "precious"
