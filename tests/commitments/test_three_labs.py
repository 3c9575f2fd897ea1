"""Three labs, three ledgers, one joint commitment: two join (pending), the third joins
(active), one trains past the scope inside the window (breach, with the statement that
proves it), one lab's log stops being witnessed (unverifiable), one withdraws with
notice, and a signature claiming to be another lab's CEO is shown as claimed, not
verified. The status is gathered across the three real ledgers, each audited."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from scalegate.commitments import Commitment, commitment_status, parse_commitment
from scalegate.commitments.evidence import gather
from scalegate.commitments.joining import endorse, propose, withdraw
from scalegate.commitments.scenario import JointLab
from scalegate.errors import CommitmentError
from scalegate.ledger import (
    ComputePredicate,
    KeyPredicate,
    PolicyRef,
    Ref,
    RunPredicate,
    Signatory,
    SigningKey,
    now_utc,
    sign_statement,
)
from server.serving import SCALEGATE

TEXT = """\
id: three-labs-pause
title: Three labs pause together
text: Each of us pauses training past 1e25 FLOP once all three have joined.
scope:
  compute: {flop: 1.0e+25}
window: {start: activation, duration: 180d}
activation: {parties: [lab-a, lab-b, lab-c]}
withdrawal: {notice: 30d}
"""


Lab = JointLab  # a lab of the story: its workspace, witness and trust file


def breach_and_impostor(b: Lab, c: Lab, doc: Commitment) -> Ref:
    """lab-b trains past the scope while bound, without pausing (the compute statement is
    returned); someone lab-c's root registered signs as lab-b's CEO (claimed)."""
    b.ws.ledger.append(sign_statement(RunPredicate(
        run_id="b-big", org="lab-b", model="big", started_at=now_utc(),
        policy=PolicyRef(id="demo", version="1", digest="0" * 64)), b.ws.key("trainer")))
    breach = b.ws.ledger.append(sign_statement(ComputePredicate(
        run_id="b-big", step=10, tokens=1e9, flop_by_phase={"pretraining": 2e25},
        effective_flop=2e25, method="6ND", at=now_utc()), b.ws.key("trainer")))
    impostor = SigningKey.generate("lab-c/impostor")
    c.ws.ledger.append(sign_statement(KeyPredicate(
        vkey=impostor.vkey.text(), org="lab-c", roles=["signatory"],
        valid_from=now_utc() - timedelta(minutes=1)), c.ws.org_root))
    endorse(c.ws.ledger, impostor, doc, signatory=Signatory(
        name="B. Boss", title="CEO", affiliation="lab-b"))
    return Ref(index=breach.index, leaf_hash=breach.leaf_hash.hex())


def _status(labs: list[Lab], **kw: object):  # type: ignore[no-untyped-def]
    now = now_utc()
    return commitment_status(gather("three-labs-pause", [lab.log() for lab in labs], now=now),
                             now, **kw)  # type: ignore[arg-type]


@pytest.fixture
def labs(tmp_path: Path) -> list[Lab]:
    made = [Lab.create(tmp_path, org) for org in ("lab-a", "lab-b", "lab-c")]
    yield made
    for lab in made:
        lab.ws.close()


def test_three_labs_join_one_breaks_it_one_goes_silent_one_leaves(labs: list[Lab]) -> None:
    a, b, c = labs
    doc = parse_commitment(TEXT)
    propose(a.ws.ledger, a.ws.key("ceo"), doc, TEXT)
    with pytest.raises(CommitmentError, match="not signatory"):  # a trainer signs no pacts
        endorse(a.ws.ledger, a.ws.key("trainer"), doc)
    for lab in (a, b):
        endorse(lab.ws.ledger, lab.ws.key("ceo"), doc)
    for lab in labs:
        lab.cosign()
    pending = _status(labs)
    assert pending.state == "proposed" and pending.joined == 2, pending.summary
    assert {p.org: p.compliance for p in pending.parties} == {
        "lab-a": "not bound", "lab-b": "not bound", "lab-c": "not bound"}
    assert all(s.method == "signatory" for s in pending.signatures)

    endorse(c.ws.ledger, c.ws.key("ceo"), doc)
    breach = breach_and_impostor(b, c, doc)
    for lab in labs:
        lab.cosign()
    active = _status(labs)
    parties = {p.org: p for p in active.parties}
    assert active.state == "active" and active.joined == 3, active.summary
    assert parties["lab-b"].compliance == "in breach"
    assert [r.index for r in parties["lab-b"].proof] == [breach.index]
    assert parties["lab-a"].compliance == parties["lab-c"].compliance == "compliant"
    (alert,) = active.alerts
    assert "B. Boss, CEO of lab-b" in alert and "lab-c's root, not by lab-b's" in alert

    # lab-a leaves with notice: still bound until then. lab-c's log goes unwitnessed.
    withdraw(a.ws.ledger, a.ws.key("ceo"), doc, reason="board decision")
    time.sleep(2.5)
    for lab in (a, b):
        lab.cosign()
    later = _status(labs, stale_after=timedelta(seconds=2))
    parties = {p.org: p for p in later.parties}
    assert parties["lab-c"].compliance == "unverifiable"
    assert "witnessed" in parties["lab-c"].why
    assert parties["lab-a"].compliance == "compliant"
    assert parties["lab-a"].withdrawn_from is not None and \
        parties["lab-a"].withdrawn_from > now_utc() + timedelta(days=29)
    assert later.state == "active"  # the withdrawal is not in effect yet

    # The same, from the command line: a table, and the exit code of the worst party.
    for lab in labs:
        lab.ws.close()
    args = [SCALEGATE, "commitment", "status", "three-labs-pause"]
    for lab in labs:
        args += ["--ledger", str(lab.ws.ledger_path), "--trust", str(lab.trust_path)]
    res = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 3, res.stdout + res.stderr  # a party in breach
    shown = json.loads(res.stdout)
    assert {p["org"]: p["compliance"] for p in shown["parties"]}["lab-b"] == "in breach"
    table = subprocess.run(args, capture_output=True, text=True, timeout=120)
    said = " ".join(table.stdout.split())  # as wrapped to the terminal
    assert "in breach" in said and "identity alerts" in said, table.stdout
    assert "Traceback" not in table.stderr


def test_a_revoked_keys_earlier_signature_still_counts(labs: list[Lab]) -> None:
    """A signatory key revoked after it signed: its signature stands (it was in standing
    when it signed); the log refuses its later statements."""
    from scalegate.errors import ScalegateError
    from scalegate.ledger import KeyRevocationPredicate

    a, b, _ = labs
    doc = parse_commitment(TEXT)
    propose(a.ws.ledger, a.ws.key("ceo"), doc, TEXT)
    for lab in labs:
        endorse(lab.ws.ledger, lab.ws.key("ceo"), doc)
    time.sleep(0.01)
    b.ws.ledger.append(sign_statement(KeyRevocationPredicate(
        vkey=b.ws.key("ceo").vkey.text(), reason="left the company",
        revoked_at=now_utc()), b.ws.org_root))
    with pytest.raises(ScalegateError, match="revoked"):
        withdraw(b.ws.ledger, b.ws.key("ceo"), doc)
    for lab in labs:
        lab.cosign()
    got = _status(labs)
    assert got.state == "active"
    (sig,) = [s for s in got.signatures if s.org == "lab-b"]
    assert sig.method == "signatory", sig.why
