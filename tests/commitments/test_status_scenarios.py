"""A commitment's status from evidence, scenario by scenario (``scenarios/*.yaml``: the
evidence verifiers found, the time asked, and what the status must say)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from scalegate.commitments import Commitment, load_commitment
from scalegate.commitments.status import (
    AttestationSeen,
    ComputeSeen,
    Evidence,
    LevelSeen,
    LogEvidence,
    RunEvidence,
    SignatureSeen,
    WithdrawalSeen,
    commitment_status,
)
from scalegate.ledger import Ref

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ref(index: int) -> Ref:
    return Ref(index=index, leaf_hash=f"{index:064x}")


def _evidence(s: dict[str, Any]) -> Evidence:
    c = s["commitment"]
    commitment = load_commitment(c) if isinstance(c, str) else Commitment.model_validate(c)
    proposed = s.get("proposed")
    return Evidence(
        commitment=commitment,
        proposed=_ref(proposed["index"]) if proposed else None,
        proposed_at=_t(proposed["at"]) if proposed else None,
        signatures=[SignatureSeen(ref=_ref(g["index"]), org=g["org"], at=_t(g["at"]),
                                  signer=f"{g['org']}/signer+00000000", method=g["method"],
                                  why=g.get("why", ""), signatory=g.get("signatory"))
                    for g in s.get("signatures", [])],
        withdrawals=[WithdrawalSeen(ref=_ref(w["index"]), org=w["org"], at=_t(w["at"]),
                                    effective=_t(w["effective"]), method=w["method"])
                     for w in s.get("withdrawals", [])],
        logs={org: LogEvidence(
            status=g["status"],
            witnessed_at=_t(g["witnessed_at"]) if g.get("witnessed_at") else None,
            runs=[RunEvidence(run_id=r["run_id"], computes=[
                ComputeSeen(ref=_ref(i), at=_t(at), flop_by_phase={"pretraining": flop})
                for i, at, flop in r["computes"]],
                pauses=[(_ref(i), _t(at)) for i, at in r.get("pauses", [])],
                levels=[LevelSeen(ref=_ref(i), at=_t(at), path=path)
                        for i, at, path in r.get("levels", [])])
                for r in g.get("runs", [])],
            attestations=[AttestationSeen(
                ref=_ref(a["index"]), safeguard=a["safeguard"], run_id=a.get("run_id"),
                valid_from=_t(a["valid_from"]),
                valid_until=_t(a["valid_until"]) if a.get("valid_until") else None)
                for a in g.get("attestations", [])])
            for org, g in s.get("logs", {}).items()})


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    s = yaml.safe_load(path.read_text())
    got = commitment_status(_evidence(s), _t(s["at"]))
    want = s["expect"]
    assert got.state == want.get("state", got.state), got.summary
    parties = {p.org: p for p in got.parties}
    for key, value in want.items():
        if key == "parties":
            for org, compliance in value.items():
                assert parties[org].compliance == compliance, (org, parties[org].why)
        elif key == "proof":
            for org, indices in value.items():
                assert [r.index for r in parties[org].proof] == indices, parties[org].why
        elif key == "why":
            for org, words in value.items():
                assert words in parties[org].why, parties[org].why
        elif key == "withdrawn_from":
            for org, when in value.items():
                assert parties[org].withdrawn_from == (_t(when) if when else None)
        elif key == "alerts":
            assert len(got.alerts) == value, got.alerts
        elif key in ("activated_at", "lapsed_at"):
            assert getattr(got, key) == _t(value)
        elif key == "window":
            assert got.window == (_t(value[0]), _t(value[1]))
        elif key in ("joined",):
            assert got.joined == value, got.summary
    assert got.summary


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 25
