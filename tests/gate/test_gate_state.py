"""The fold: statements -> RunState (pure), and the quorum matching the resumption relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from timeline_runner import run_scenario

from scalegate.errors import RunError
from scalegate.gate import decide, match_quorum, resumption
from scalegate.ledger.statements import (
    ApprovalPredicate,
    AttestationPredicate,
    ComputePredicate,
    Ref,
    make_statement,
    parse_statement,
)
from scalegate.policy import QuorumClause
from scalegate.state import LoggedStatement, Recorded, fold, record_type

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _entry(index: int, predicate, signer: str | None = None,
           roles: tuple[str, ...] = ()) -> LoggedStatement:
    return LoggedStatement(
        ref=Ref(index=index, leaf_hash=f"{index:064x}"),
        statement=make_statement(predicate),
        signer=signer,
        roles=roles,
    )


def _compute(run_id: str, step: int, flop: float) -> ComputePredicate:
    return ComputePredicate(
        run_id=run_id,
        step=step,
        tokens=1.0,
        flop_by_phase={"pretraining": flop},
        effective_flop=flop,
        method="test",
        at=T0 + timedelta(hours=step),
    )


DEMO = {
    "name": "demo pause and resume",
    "policy": "demo",
    "keys": {"demo/rso": ["rso"], "demo/ciso": ["ciso"], "demo/board": ["board"]},
    "timeline": [
        {"compute": {"pretraining": 1e12}},
        {"eval": {"id": "cyber-demo-task", "value": 0.9}},
        {"pause": {}},
        {"attestation": {"safeguard": "security-level-demo", "by": "demo/ciso"}},
        {"approval": {"by": "demo/rso", "role": "rso", "ceiling_x": 2}},
        {"approval": {"by": "demo/board", "role": "board"}},
        {"resume": {}},
        {"compute": {"pretraining": 1.5e12}},
    ],
}


def test_fold_keeps_only_its_run_and_its_orgs_attestations() -> None:
    entries = [
        _entry(0, _compute("a", 1, 1e12)),
        _entry(1, _compute("b", 1, 5e12)),
        _entry(
            2, AttestationPredicate(safeguard="s", org="other", valid_from=T0), "o/ciso", ("ciso",)
        ),
        _entry(3, AttestationPredicate(safeguard="s", valid_from=T0), "x/ciso", ("ciso",)),
        _entry(4, _compute("a", 2, 2e12)),
    ]
    state = fold(entries, run_id="a")
    assert [c.predicate.step for c in state.compute] == [1, 2]
    assert [a.index for a in state.attestations] == [2, 3]  # org unknown without a run statement
    assert state.size == 5 and state.step == 2
    assert state.latest_time == T0 + timedelta(hours=2)
    assert fold(entries).run_id == "a"  # the first run mentioned


def test_incremental_fold_equals_one_fold() -> None:
    t = run_scenario(DEMO)
    whole = fold(t.entries, run_id=t.run_id)
    part = fold(t.entries[:5], run_id=t.run_id)
    rest = fold(t.entries[5:], into=part)
    assert rest == whole
    with pytest.raises(RunError, match="cannot fold run 'x'"):
        fold([], run_id="x", into=part)


def test_state_views_pause_resume_and_find() -> None:
    t = run_scenario(DEMO)
    state = t.state()
    assert state.active_pause is None
    assert state.last_resume is not None
    pause = state.pauses[-1]
    assert state.resume_of(pause.ref) is state.last_resume
    assert len(state.approvals_for(pause.ref)) == 2
    assert state.find(pause.ref) == pause
    assert state.find(Ref(index=999, leaf_hash="0" * 64)) is None
    assert state.org == "lab" and state.policy is not None and state.policy.id == "demo"
    approval = state.approvals[0]
    assert isinstance(approval, Recorded) and approval.roles == ("rso",)
    assert approval.signer == "demo/rso"


def test_decision_is_recorded_verbatim_as_a_statement() -> None:
    t = run_scenario(DEMO)
    decision = decide(t.policy, t.state(), T0 + timedelta(days=1))
    statement = make_statement(decision.to_predicate())
    again = parse_statement(statement.to_payload())
    assert again.predicate.reasons == decision.reasons
    assert again.predicate.verdict == decision.verdict
    assert again.predicate.ceiling_flop == decision.ceiling_flop == 2e12
    assert again.predicate.basis_size == len(t.entries)


def test_resumption_answers_for_an_unknown_pause_ref() -> None:
    t = run_scenario(DEMO)
    res = resumption(t.policy, t.state(), Ref(index=3, leaf_hash="f" * 64))
    assert not res.may_resume and res.missing[0].kind == "pause"
    assert "no pause of run run-1 at entry #3" in res.missing[0].message


def _approval(index: int, signer: str, role: str, roles: tuple[str, ...]) -> Recorded:
    p = ApprovalPredicate(
        run_id="r", pause=Ref(index=0, leaf_hash="0" * 64), role=role, rationale="ok", at=T0
    )
    return Recorded[ApprovalPredicate](
        ref=Ref(index=index, leaf_hash=f"{index:064x}"), predicate=p, signer=signer, roles=roles
    )


def test_quorum_matching_reassigns_seats_to_satisfy_every_clause() -> None:
    clauses = [QuorumClause(any_of=["rso", "board"]), QuorumClause(any_of=["rso"])]
    # A greedy assignment would give the first seat to alice (rso) and leave the rso seat empty.
    approvals = [
        _approval(1, "alice", "rso", ("rso",)),
        _approval(2, "bob", "board", ("board",)),
    ]
    used, short, notes = match_quorum(clauses, approvals)
    assert short == [] and notes == [] and [r.index for r in used] == [1, 2]


def test_quorum_counts_keys_not_approvals_and_checks_roles() -> None:
    clauses = [QuorumClause(any_of=["board"], count=2)]
    approvals = [
        _approval(1, "carol", "board", ("board",)),
        _approval(2, "carol", "board", ("board",)),
        _approval(3, "dave", "board", ("researcher",)),
    ]
    used, short, notes = match_quorum(clauses, approvals)
    assert len(used) == 1 and short[0][1] == 1
    assert notes == ["approval #3 by dave as 'board' not counted: the key holds researcher"]


def test_folding_in_place_equals_folding_copies() -> None:
    t = run_scenario(DEMO)
    whole = fold(t.entries, run_id=t.run_id)
    for size in (1, 2, 3, 5):
        state = None
        for k in range(0, len(t.entries), size):
            before = state
            state = fold(t.entries[k : k + size], run_id=t.run_id, into=state, extend=True)
            if before is not None:  # the earlier state's lists were taken over, not copied
                assert state.compute is before.compute and state.pauses is before.pauses
        assert state == whole
    # Without extend the earlier state is left as it was.
    part = fold(t.entries[:4], run_id=t.run_id)
    kept = list(part.compute)
    fold(t.entries[4:], into=part)
    assert part.compute == kept


def test_records_are_folded_as_they_are() -> None:
    t = run_scenario(DEMO)
    state = fold(t.entries, run_id=t.run_id)
    records = sorted([state.run, *state.compute, *state.checkpoints, *state.evals,
                      *state.attestations, *state.decisions, *state.pauses, *state.approvals,
                      *state.resumes, *state.notifications], key=lambda r: r.index)
    again = fold(records, run_id=t.run_id)
    assert again == state
    assert all(a is b for a, b in zip(again.compute, state.compute, strict=True))
    assert again.run is state.run
    # Entries and records mixed, in pieces: the same state.
    by_index = {r.index: r for r in records}
    mixed = [by_index.get(e.ref.index, e) if i % 2 else e for i, e in enumerate(t.entries)]
    assert any(isinstance(x, LoggedStatement) for x in mixed) and any(x in records for x in mixed)
    assert fold(mixed[3:], into=fold(mixed[:3], run_id=t.run_id)) == state
    assert record_type(ComputePredicate) is record_type(ComputePredicate)
    assert record_type(ComputePredicate) is Recorded[ComputePredicate]
    assert t.entries[0].predicate is t.entries[0].statement.predicate
