"""The three-lab story, end to end on this machine: ``scalegate demo --joint``.

Three labs (``lab-a``, ``lab-b``, ``lab-c``), each with its own ledger, witness and trust
file. ``lab-a`` proposes a joint pause of training past a compute scope; ``lab-a`` and
``lab-b`` join (pending), ``lab-c`` joins (active). ``lab-b`` then trains a real tiny
model under a policy of its own that does not pause at this scale, and its supervisor
logs the compute as it goes: past the scope, inside the window (a breach, proven by the
compute statement). Someone ``lab-c``'s root registered signs as ``lab-b``'s CEO (claimed,
not verified). ``lab-a`` withdraws with notice, and ``lab-c``'s witness stops cosigning
(unverifiable). Each step's status is gathered from the three real ledgers, each audited.

The scope is set just above a few steps of the tiny model's compute (the story is the
same at 10^25 FLOP, only slower).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from scalegate.audit import TrustFile, Witness, load_trust, witness_ledger
from scalegate.commitments.document import Commitment, parse_commitment
from scalegate.commitments.evidence import LogToRead, gather
from scalegate.commitments.joining import endorse, propose, withdraw
from scalegate.commitments.status import CommitmentStatus, commitment_status
from scalegate.demo.run import prepare_dir
from scalegate.demo.workspace import PEOPLE, Workspace, create_workspace
from scalegate.ledger import (
    CosignatureVerifier,
    KeyPredicate,
    Signatory,
    SigningKey,
    now_utc,
    sign_statement,
)

__all__ = ["JointLab", "run_joint_demo"]

ORGS = ("lab-a", "lab-b", "lab-c")
STALE = timedelta(seconds=2)  # a witnessed checkpoint older than this is stale, here
SCOPE_STEPS = 20  # the scope lies at this many steps of lab-b's training


@dataclass
class JointLab:
    """One lab of the story: its workspace, witness and trust file."""

    ws: Workspace
    witness: Witness
    trust_path: Path

    @classmethod
    def create(cls, root: Path, org: str) -> JointLab:
        ws = create_workspace(root / org, org=org, origin=f"{org}.example/log",
                              people={**PEOPLE, "ceo": ("signatory",),
                                      "compliance": ("compliance-officer",)})
        key = SigningKey.generate(f"witness.example/{org}")
        witness = Witness(root / f"{org}-witness.json", key, {ws.ledger.origin: ws.log_key.vkey})
        trust_path = ws.root / "trust.yaml"
        was = load_trust(trust_path).model_dump(mode="json")
        trust = TrustFile.model_validate({
            **was, "witnesses": {key.name: CosignatureVerifier.from_key(key).text()},
            "witness_quorum": 1,  # and who publishes the law lab-b trains under
            "roles": {**was["roles"], "policy": [*was["roles"]["policy"], "compliance-officer"]}})
        trust_path.write_text(trust.to_yaml())
        return cls(ws, witness, trust_path)

    def cosign(self) -> None:
        """The lab's log signs a checkpoint and its witness cosigns it."""
        self.ws.ledger.checkpoint()
        witness_ledger(self.ws.ledger, self.witness)

    def log(self) -> LogToRead:
        return LogToRead(self.ws.ledger_path, load_trust(self.trust_path), name=self.ws.org)


def run_joint_demo(root: Path, say: Callable[[str, CommitmentStatus | None], None]
                   ) -> CommitmentStatus:
    """Play the story in ``root`` (replacing an earlier demo's), telling ``say`` each step
    and the status after it; returns the final status."""
    prepare_dir(root)
    labs = [JointLab.create(root, org) for org in ORGS]
    a, b, c = labs
    try:
        trainer = _trainer()
        flop = trainer.flop_per_token() * trainer.tokens_per_step * SCOPE_STEPS
        doc, text = _commitment(flop)

        def status(what: str) -> CommitmentStatus:
            for lab in labs:
                if lab is not c or not stopped:
                    lab.cosign()
            now = now_utc()
            got = commitment_status(gather(doc.id, [lab.log() for lab in labs], now=now),
                                    now, stale_after=STALE)
            say(what, got)
            return got

        stopped = False
        propose(a.ws.ledger, a.ws.key("ceo"), doc, text)
        for lab in (a, b):
            endorse(lab.ws.ledger, lab.ws.key("ceo"), doc)
        status("lab-a proposes a joint pause past "
               f"{flop:.3g} FLOP; lab-a and lab-b join")
        endorse(c.ws.ledger, c.ws.key("ceo"), doc)
        status("lab-c joins: the commitment binds all three")
        steps = _train(b, trainer, 3 * SCOPE_STEPS)
        _impostor(c, doc)
        status(f"lab-b trains a tiny transformer {steps} steps under its own policy, "
               "past the scope; someone lab-c registered signs as lab-b's CEO")
        withdraw(a.ws.ledger, a.ws.key("ceo"), doc, reason="its board decided so")
        stopped = True  # lab-c's witness cosigns no more
        time.sleep(STALE.total_seconds() + 0.5)
        return status("lab-a withdraws (30 days' notice); lab-c's log is no longer witnessed")
    finally:
        for lab in labs:
            lab.ws.close()


def _commitment(flop: float) -> tuple[Commitment, str]:
    text = f"""\
id: three-labs-pause
title: Three labs pause together
text: |
  Each of us pauses training past {flop:.3g} FLOP once all three have joined, for 180 days,
  verifiably: the compute each of us trains is in our public logs.
scope:
  compute: {{regime: training, flop: {flop!r}}}
window: {{start: activation, duration: 180d}}
activation: {{parties: [{", ".join(ORGS)}]}}
withdrawal: {{notice: 30d}}
"""
    return parse_commitment(text, source="the joint demo"), text


def _trainer() -> Any:
    """The demo's tiny transformer and its data (torch is imported here, not before)."""
    from scalegate.demo.training import DemoTrainer

    return DemoTrainer()


def _train(lab: JointLab, trainer: Any, steps: int) -> int:
    """Train under a policy that does not pause at this scale, the supervisor logging the
    compute every few steps; the number of steps trained."""
    from scalegate.governance import publish_policy
    from scalegate.policy import load_policy
    from scalegate.supervisor import Supervisor

    law = load_policy("eu-ai-act")
    publish_policy(lab.ws.ledger, lab.ws.key("compliance"), law)
    sup = Supervisor.open("b-tiny", law, lab.ws.ledger,
                          lab.ws.key("trainer"), model=trainer.model,
                          model_name="TinyGPT", compute_every=5, check_interval=1e9,
                          checkpoint_dir=lab.ws.root / "checkpoints")
    for _ in range(steps):
        sup.step(tokens=trainer.step())
    sup.flush()
    return steps


def _impostor(lab: JointLab, doc: Commitment) -> None:
    """A key ``lab``'s root registered signs as another lab's CEO."""
    key = SigningKey.generate(f"{lab.ws.org}/impostor")
    lab.ws.ledger.append(sign_statement(KeyPredicate(
        vkey=key.vkey.text(), org=lab.ws.org, roles=["signatory"],
        valid_from=now_utc() - timedelta(minutes=1)), lab.ws.org_root))
    endorse(lab.ws.ledger, key, doc, signatory=Signatory(name="B. Boss", title="CEO",
                                                         affiliation="lab-b"))
