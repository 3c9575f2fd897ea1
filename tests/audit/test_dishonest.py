"""Issue 7 §2: a dishonest trainer, writing statements directly with its valid key, is caught.

Each test starts from a stage of an honest run (built once by the real supervisor and
real officers, see :mod:`runworld`), lets the trainer cheat in one way, witnesses the
log and audits it end to end with a trust file. It asserts the violation's kind and the
statements it points at; the honest stages themselves verify clean.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from scalegate.audit import EXIT_OK, EXIT_VIOLATIONS
from scalegate.audit.replay import RUN_VIOLATION_KINDS
from scalegate.audit.report import Violation
from scalegate.audit.runcheck import SETUP_VIOLATION_KINDS, LedgerAudit
from scalegate.gate import resumption
from scalegate.ledger.statements import (
    ApprovalPredicate,
    AttestationPredicate,
    ComputePredicate,
    PolicyPredicate,
    PolicyRef,
    Ref,
    ResumePredicate,
    RunPredicate,
    sha256_hex,
)

from .runworld import (
    POLICY,
    RUN,
    SAFEGUARD,
    STEP_FLOP,
    T0,
    World,
    build_stages,
    new_world,
)


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, World]:
    built = build_stages(tmp_path_factory.mktemp("stages"))
    yield built
    for w in built.values():
        w.close()


@pytest.fixture
def at(stages: dict[str, World], tmp_path: Path):
    """``at("paused")``: a fresh copy of that stage for this test."""
    made: list[World] = []

    def copy(stage: str) -> World:
        made.append(stages[stage].copy(tmp_path / f"{stage}-{len(made)}"))
        return made[-1]

    yield copy
    for w in made:
        w.close()


def found(audit: LedgerAudit, kind: str) -> list[Violation]:
    """The violations of ``kind``; the audit must have failed with "violations found"."""
    assert audit.report.exit_code == EXIT_VIOLATIONS, audit.report.to_json_data()
    out = [v for v in audit.report.violations if v.kind == kind]
    assert out, f"no {kind}; found: {[(v.kind, v.message) for v in audit.report.violations]}"
    return out


def idx(refs: list[Ref]) -> list[int]:
    return [r.index for r in refs]


# --- honest ledgers ------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["running", "paused", "resumed", "ceiling"])
def test_honest_stages_verify_clean(stages: dict[str, World], at, stage: str) -> None:
    w = at(stage)
    audit = w.audit()
    assert audit.report.exit_code == EXIT_OK, [(v.kind, v.message)
                                               for v in audit.report.violations]
    (run,) = audit.runs
    assert run.replay is not None and run.replay.decisions
    assert not run.replay.mismatches
    assert all(c.ok for c in audit.report.checks)


# --- pauses --------------------------------------------------------------------------------------


def test_a_replayed_pause_is_out_of_place_and_no_pause(at) -> None:
    """An old pause copied to the end of the log (around admission) after the run resumed:
    the run is not paused again, the copy is reported, honest training after it is not."""
    w = at("resumed")
    old_pause = w.state().pauses[-1].ref
    copy = w.replay(old_pause.index)
    state = w.state()
    assert state.active_pause is None and [p.ref for p in state.pauses] == [old_pause]
    sup = w.supervisor()
    sup.step(tokens=1000, flop=STEP_FLOP)  # trains on: the copy is no pause
    sup.flush()
    audit = w.audit()
    (v,) = found(audit, "statement-out-of-place")
    assert v.refs == [copy] and "replayed" in v.message
    (d,) = [x for x in audit.report.violations if x.kind == "duplicate-statement"]
    assert d.refs == [copy] and f"statement of entry {old_pause.index}" in d.message
    assert {x.kind for x in audit.report.violations} == {"statement-out-of-place",
                                                          "duplicate-statement"}
    integrity = w.ledger.verify()  # `ledger verify` sees the copy too
    assert not integrity.ok and any(f"entry {copy.index} repeats the statement of entry "
                                    f"{old_pause.index}" in p for p in integrity.problems)


def test_a_withheld_statement_shows_as_a_gap(at) -> None:
    """Statements the trainer signed that never reached the log leave a gap in its count."""
    w = at("running")
    last = w.state().latest_compute.predicate
    nxt = w.state().next_seq
    ref = w.sign(ComputePredicate(
        run_id=RUN, step=last.step + 1, tokens=last.tokens + 1000,
        flop_by_phase={"pretraining": last.flop_by_phase["pretraining"] + STEP_FLOP},
        effective_flop=last.effective_flop + STEP_FLOP, method="declared", at=w.clock(),
        seq=nxt + 2))
    (v,) = found(w.audit(), "statement-out-of-place")
    assert v.refs == [ref] and "2 the trainer signed before it are missing" in v.message
    assert w.state().next_seq == nxt + 3


def test_training_during_a_pause(at) -> None:
    w = at("paused")
    pause = w.state().active_pause.ref
    (c1, _) = w.more_compute(2)
    (v,) = found(w.audit(), "training-during-pause")
    assert idx(v.refs) == [pause.index, c1.index] and v.refs[1] == c1
    assert v.run_id == RUN


def test_a_checkpoint_advancing_during_a_pause(at) -> None:
    w = at("paused")
    pause = w.state().active_pause
    ck = w.checkpoint(pause.predicate.step + 50, pause.predicate.effective_flop + 5e12)
    (v,) = found(w.audit(), "training-during-pause")
    assert v.refs == [pause.ref, ck]


def test_training_after_an_invalid_resumption_is_training_during_the_pause(at) -> None:
    w = at("paused")
    pause = w.state().active_pause.ref
    w.approve("rso")
    w.resume()  # no attestation, no board member
    (c1,) = w.more_compute(1)
    (v,) = found(w.audit(), "training-during-pause")
    assert v.refs == [pause, c1]


def test_pause_required_by_new_results_not_declared(at) -> None:
    w = at("running")
    last = w.state().latest_compute.predicate
    ev = w.eval(0.9, last.step, last.effective_flop)  # the trigger, without the safeguard
    (c1, _) = w.more_compute(2)
    audit = w.audit()
    (v,) = found(audit, "pause-not-declared")
    assert v.refs == [ev, c1]
    assert "safeguard-missing" in v.message


def test_recorded_decision_that_hides_a_pause(at) -> None:
    w = at("running")
    last = w.state().latest_compute.predicate
    w.eval(0.9, last.step, last.effective_flop)
    d = w.decision("continue")
    (c1,) = w.more_compute(1)
    audit = w.audit()
    (m,) = found(audit, "decision-mismatch")
    assert m.refs == [d]
    assert "recorded continue" in m.message and "replays pause" in m.message
    (v,) = found(audit, "pause-not-declared")
    assert v.refs == [d, c1]


def test_recorded_decision_that_differs(at) -> None:
    w = at("running")
    d = w.decision("pause")  # the gate says alert here
    (v,) = found(w.audit(), "decision-mismatch")
    assert v.refs == [d]


def test_decision_resting_on_a_stale_basis(at) -> None:
    w = at("running")
    basis = w.ledger.size
    w.more_compute(1)
    d = w.decision("alert", basis=basis)  # leaves out the compute just recorded
    (v,) = found(w.audit(), "decision-mismatch")
    assert v.refs == [d] and "leaves out" in v.message


def test_skipped_evaluation(at) -> None:
    w = at("running")  # alerted: the next evaluation is due at 1.5x the last one
    state = w.state()
    line = state.decisions[-1].predicate.next_eval_at_flop
    step = state.latest_compute.predicate.step
    assert line is not None and line > state.latest_compute.predicate.effective_flop
    due = w.compute(step + 100, line)
    past = w.compute(step + 101, line + STEP_FLOP)
    more = w.compute(step + 102, line + 2 * STEP_FLOP)
    audit = w.audit()
    (v,) = found(audit, "evaluation-skipped")
    assert v.refs == [due, past]
    (p,) = found(audit, "pause-not-declared")  # on_missing: pause
    assert p.refs == [past, more]


def test_training_past_the_approved_ceiling(at) -> None:
    w = at("resumed")  # the RSO approved up to 2x the compute at the pause
    state = w.state()
    ceiling = state.resumes[0].predicate.ceiling_flop
    assert ceiling == pytest.approx(2 * state.pauses[0].predicate.effective_flop)
    step = state.latest_compute.predicate.step
    at_ceiling = w.compute(step + 360, ceiling)
    beyond = w.compute(step + 361, ceiling + STEP_FLOP)
    audit = w.audit()
    (v,) = found(audit, "ceiling-exceeded")
    assert v.refs == [at_ceiling, beyond]
    assert not [x for x in audit.report.violations if x.kind == "pause-not-declared"]


def test_one_last_step_far_past_the_ceiling_and_no_pause(at) -> None:
    """The run's last statement jumps past its ceiling and nothing follows: the gate required
    a pause with that statement, and none was declared by the audit time."""
    w = at("resumed")
    state = w.state()
    ceiling = state.resumes[0].predicate.ceiling_flop
    step = state.latest_compute.predicate.step
    last = w.compute(step + 4000, 3 * ceiling)
    (v,) = found(w.audit(), "pause-not-declared")
    assert v.refs == [last] and "ceiling" in v.message and "no pause was declared" in v.message
    # Within the grace a supervisor takes to declare it, it may still be on its way; but the
    # same statement went far past the evaluation milestone (1.5x) without evaluating there,
    # and that is done (issue 13 §2).
    soon = w.audit(now=w.clock.t + timedelta(minutes=1)).report
    assert [(x.kind, x.refs[-1]) for x in soon.violations] == [("evaluation-skipped", last)]


# --- resumptions ---------------------------------------------------------------------------------


def test_resume_without_quorum(at) -> None:
    w = at("paused")
    pause = w.state().active_pause.ref
    w.attest()
    w.approve("rso")
    r = w.resume()
    (v, *_) = found(w.audit(), "resume-without-quorum")
    assert v.refs[:2] == [r, pause] and "board" in v.message


def test_resume_citing_too_few_approvals(at) -> None:
    w = at("paused")
    w.attest()
    rso = w.approve("rso")
    w.approve("board")
    r = w.resume(approvals=[rso])  # the quorum exists in the log, but is not what it cites
    (v,) = found(w.audit(), "resume-without-quorum")
    assert v.refs == [r, rso] and "cites approvals" in v.message


def test_resume_before_the_gate_allows_it(at) -> None:
    w = at("paused")
    pause = w.state().active_pause.ref
    w.approve("rso")
    w.approve("board")
    r = w.resume()  # the safeguard was never attested
    (v,) = found(w.audit(), "resume-premature")
    assert v.refs == [r, pause] and "security-level-demo" in v.message


def test_resume_from_another_checkpoint(at) -> None:
    w = at("paused")
    pause = w.state().active_pause
    other = w.checkpoint(pause.predicate.step, pause.predicate.effective_flop)  # same step
    w.attest()
    w.approve("rso")
    w.approve("board")
    r = w.resume(checkpoint=other)
    (v,) = found(w.audit(), "resume-wrong-checkpoint")
    assert v.refs == [r, pause.ref, other]


def test_approvals_of_an_earlier_pause_reused(at) -> None:
    w = at("ceiling")
    state = w.state()
    first, second = state.pauses
    old = [a.ref for a in state.approvals_for(first.ref)]
    r = w.resume(approvals=old)
    audit = w.audit()
    wrong = found(audit, "approval-wrong-pause")
    assert [v.refs for v in wrong] == [[a, r, second.ref] for a in old]
    assert found(audit, "resume-without-quorum")[0].refs[:2] == [r, second.ref]


# --- obligations, compute, attestations -----------------------------------------------------------


def _crossing(w: World):
    """The decision at which the 1e13 notification obligation first appears, and its deadline."""
    audit = w.audit(now=T0)
    (run,) = audit.runs
    first = next(d for d in run.replay.decisions if d.effective_flop >= 1e13)
    return first.ref, first.at + timedelta(days=14)


def test_notification_missed(at) -> None:
    w = at("running")
    point, deadline = _crossing(w)
    assert w.audit(now=deadline - timedelta(hours=1)).report.exit_code == EXIT_OK
    (v,) = found(w.audit(now=deadline + timedelta(hours=1)), "notification-missed")
    assert v.refs == [point] and "demo-notify" in v.message


def test_notification_sent_late(at) -> None:
    w = at("running")
    point, deadline = _crossing(w)
    n = w.notify("demo-notify", deadline + timedelta(days=1))
    (v,) = found(w.audit(now=deadline + timedelta(days=2)), "notification-missed")
    assert v.refs == [point, n] and "only at" in v.message


def test_notification_backdated(at) -> None:
    """Logged a week after the deadline, claiming to have been sent before it: the log holds
    no evidence of a timely notice."""
    w = at("running")
    point, deadline = _crossing(w)
    w.clock.jump(deadline + timedelta(days=7) - w.clock.t)
    n = w.notify("demo-notify", deadline - timedelta(hours=1))
    (v,) = found(w.audit(now=deadline + timedelta(days=8)), "notification-missed")
    assert v.refs == [point, n] and "the log recorded it only at" in v.message


def test_notification_on_time_is_clean(at) -> None:
    w = at("running")
    _, deadline = _crossing(w)
    w.notify("demo-notify", deadline - timedelta(days=1))
    assert w.audit(now=deadline + timedelta(days=30)).report.exit_code == EXIT_OK


def test_notification_logged_late_by_a_log_whose_clock_was_set_back(at) -> None:
    """The log's clock says the notification was logged before the deadline; a trusted
    witness cosigned, after the deadline, a checkpoint that did not contain it."""
    w = at("running")
    point, deadline = _crossing(w)
    w.more_compute(1)
    w.witness(at=deadline + timedelta(days=2))  # the witness's own clock
    assert w.clock.t < deadline  # the operator's clock
    n = w.notify("demo-notify", deadline - timedelta(hours=1))
    audit = w.audit(now=deadline + timedelta(days=8), witness_at=deadline + timedelta(days=3))
    (v,) = found(audit, "notification-missed")
    assert v.refs == [point, n] and "did not yet contain it" in v.message


def test_notification_in_time_by_the_operators_word_only_is_said_apart(at) -> None:
    """No witnessed checkpoint shows when the notification was logged: it passes, on the
    log operator's word, and the report lists it as such."""
    w = at("running")
    _, deadline = _crossing(w)
    n = w.notify("demo-notify", deadline - timedelta(days=1))
    w.clock.jump(deadline + timedelta(days=1) - w.clock.t)
    audit = w.audit(now=deadline + timedelta(days=2))  # first cosigned after the deadline
    assert audit.report.exit_code == EXIT_OK
    (said,) = audit.report.operator_word
    assert said.refs[-1] == n and "no witnessed checkpoint shows" in said.message


def test_a_resume_backdated_into_an_attestations_validity(at) -> None:
    """The attestation expired; days later the approvals came; the trainer then dated its
    resumption decision, resume and compute inside the attestation's window."""
    w = at("paused")
    attested = w.clock.t
    w.attest(valid_for=timedelta(days=1))
    w.witness()
    w.clock.jump(timedelta(days=3))
    approvals = [w.approve("rso"), w.approve("board")]
    w.witness()  # a checkpoint holding the approvals, cosigned days after the window
    back = attested + timedelta(hours=12)
    state = w.state()
    pause = state.active_pause
    res = resumption(POLICY, state, now=back)
    assert res.may_resume and res.decision is not None  # the gate, asked at the false time
    decision = w.sign(res.decision.to_predicate())
    resumed = w.sign(ResumePredicate(
        run_id=RUN, pause=pause.ref, approvals=approvals, decision=decision,
        checkpoint=pause.predicate.checkpoint, at=back))
    last = state.latest_compute.predicate
    c1 = w.compute(last.step + 1, last.flop_by_phase["pretraining"] + STEP_FLOP,
                   at=back + timedelta(minutes=1))
    audit = w.audit()
    backdated = found(audit, "backdated")
    assert {r.index for v in backdated for r in v.refs} == {decision.index, resumed.index,
                                                            c1.index}
    order = found(audit, "time-order")
    assert {(v.refs[0].index, v.refs[1].index) for v in order} == {
        (resumed.index, a.index) for a in approvals}


def test_an_approval_dated_before_its_pause(at) -> None:
    w = at("paused")
    pause = w.state().active_pause
    early = pause.predicate.at - timedelta(hours=2)
    a = w.sign(ApprovalPredicate(run_id=RUN, pause=pause.ref, role="rso", rationale="ok",
                                 at=early), who="rso")
    (v,) = found(w.audit(), "time-order")
    assert v.refs == [a, pause.ref] and "before the pause" in v.message


def test_an_attestation_dated_inside_a_window_it_was_logged_after(at) -> None:
    w = at("paused")
    w.clock.jump(timedelta(days=10))
    w.approve("rso")
    w.witness()  # days after the window the attestation will claim
    old = w.clock.t - timedelta(days=9)
    a = w.sign(AttestationPredicate(safeguard=SAFEGUARD, org=w.ws.org, valid_from=old,
                                    valid_until=old + timedelta(days=2),
                                    evidence_digest=sha256_hex("report")), who="ciso")
    (v,) = found(w.audit(), "backdated")
    assert v.refs == [a] and "attestation" in v.message


def test_compute_going_backwards(at) -> None:
    w = at("running")
    prev = w.state().latest_compute
    back = w.compute(prev.predicate.step - 10, prev.predicate.effective_flop - 1e12)
    (v,) = found(w.audit(), "compute-backwards")
    assert v.refs == [prev.ref, back] and "step" in v.message and "pretraining" in v.message


def test_attestation_by_a_role_the_safeguard_does_not_allow(at) -> None:
    w = at("paused")
    a = w.attest(who="rso")  # security-level-demo is attested by the CISO only
    (v,) = found(w.audit(), "attestation-wrong-role")
    assert v.refs == [a] and "ciso" in v.message


def test_attestation_relied_on_after_it_expired(at) -> None:
    w = at("paused")
    a = w.attest(valid_for=timedelta(hours=1))
    w.approve("rso")
    w.approve("board")
    w.honest_resume()
    w.clock.jump(timedelta(hours=2))
    (c1, c2) = w.more_compute(2)
    audit = w.audit()
    (v,) = found(audit, "attestation-expired")
    assert v.refs == [a, c1]
    (p,) = found(audit, "pause-not-declared")
    assert p.refs == [c1, c2] and "safeguard-expired" in p.message


def test_expiry_within_the_grace_is_tolerated(at) -> None:
    w = at("paused")
    w.attest(valid_for=timedelta(hours=1))
    w.approve("rso")
    w.approve("board")
    w.honest_resume()
    w.clock.jump(timedelta(hours=1))
    w.more_compute(2)  # minutes after the expiry: a supervisor checks the clock periodically
    assert w.audit().report.exit_code == EXIT_OK


def test_pause_citing_no_checkpoint(at) -> None:
    w = at("running")
    last = w.state().latest_compute.predicate
    w.eval(0.9, last.step, last.effective_flop)
    d = w.decision("pause")
    p = w.pause(d, d)  # its "checkpoint" is the decision
    (v,) = found(w.audit(), "bad-reference")
    assert v.refs == [p, d] and "checkpoint" in v.message


# --- the run's set-up ----------------------------------------------------------------------------


def test_policy_never_published(tmp_path: Path) -> None:
    w = new_world(tmp_path)
    try:
        run = w.sign(RunPredicate(run_id=RUN, org=w.ws.org, model="m", started_at=T0,
                                  policy=PolicyRef(id="demo", version="1",
                                                   digest=sha256_hex("no such policy"))))
        w.compute(1, 1e11)
        (v,) = found(w.audit(), "policy-unpublished")
        assert v.refs == [run]
        assert not w.audit().runs[0].replay
    finally:
        w.close()


def test_policy_document_with_a_false_digest(tmp_path: Path) -> None:
    w = new_world(tmp_path)
    try:
        claimed = sha256_hex("a policy I would rather have")
        doc = w.sign(PolicyPredicate(policy_id="demo", version="1", digest=claimed,
                                     document=POLICY.document()))
        run = w.sign(RunPredicate(run_id=RUN, org=w.ws.org, model="m", started_at=T0,
                                  policy=PolicyRef(id="demo", version="1", digest=claimed)))
        (v,) = found(w.audit(), "policy-digest-mismatch")
        assert v.refs == [run, doc]
    finally:
        w.close()


def test_policy_document_that_does_not_load(tmp_path: Path) -> None:
    w = new_world(tmp_path)
    try:
        claimed = sha256_hex("unreadable")
        doc = w.sign(PolicyPredicate(policy_id="demo", version="1", digest=claimed,
                                     document="id: [unclosed"))
        run = w.sign(RunPredicate(run_id=RUN, org=w.ws.org, model="m", started_at=T0,
                                  policy=PolicyRef(id="demo", version="1", digest=claimed)))
        (v,) = found(w.audit(), "policy-invalid")
        assert v.refs == [run, doc]
    finally:
        w.close()


def test_statements_for_an_unregistered_run(tmp_path: Path) -> None:
    w = new_world(tmp_path)
    try:
        c = w.sign(ComputePredicate(run_id="ghost", step=1, tokens=1.0,
                                    flop_by_phase={"pretraining": 1e20}, effective_flop=1e20,
                                    method="declared", at=T0))
        (v,) = found(w.audit(), "run-unregistered")
        assert v.refs == [c] and v.run_id == "ghost"
    finally:
        w.close()


def test_a_malformed_statement_with_a_valid_signature(at) -> None:
    from types import SimpleNamespace

    from scalegate.ledger.envelope import sign_envelope
    from scalegate.ledger.statements import canonical_json, make_statement

    from .conftest import rogue_append

    w = at("running")
    good = make_statement(ComputePredicate(run_id=RUN, step=999, tokens=1.0,
                                           flop_by_phase={"pretraining": 1e14},
                                           effective_flop=1e14, method="declared", at=T0))
    body = good.model_dump(mode="json", by_alias=True)
    body["predicate"]["effective_flop"] = -1.0  # the log admits only valid statements
    env = sign_envelope(canonical_json(body), w.ws.key("trainer"))
    index = rogue_append(SimpleNamespace(ledger=w.ledger, clock=w.clock), env.to_bytes(),
                         w.ws.key("trainer").vkey.keyid)
    (v,) = found(w.audit(), "statement-malformed")
    assert idx(v.refs) == [index] and "effective_flop" in v.message


def test_every_violation_kind_has_a_test() -> None:
    import re

    tested = set(re.findall(r'found\(.*, "([a-z-]+)"\)', Path(__file__).read_text()))
    assert tested == set(RUN_VIOLATION_KINDS) | set(SETUP_VIOLATION_KINDS)
