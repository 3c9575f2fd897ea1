"""The supervisor end to end on a real ledger, with declared FLOP and a probe (no torch).

The probe's value rises with compute, as a capability does during training: the run
crosses the demo policy's alert, then its trigger without the safeguard, pauses by
itself, refuses to go on, and resumes only after the CISO attests and the quorum approves.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scalegate.audit.replay import replay_decisions
from scalegate.demo.workspace import create_workspace
from scalegate.errors import LedgerUnavailable, RunError, RunPaused
from scalegate.evals import Probe, Suite
from scalegate.governance import approve, attest, resume
from scalegate.ledger.statements import KeyRevocationPredicate, sign_statement
from scalegate.policy import load_policy
from scalegate.runs import load_state, run_log_entries, to_entries
from scalegate.supervisor import Supervisor

DEMO = load_policy("demo")
assert DEMO.evaluation is not None and DEMO.evaluation.first_at is not None
# The demo evaluates first at FIRST_AT, then every 2x (1.5x after the alert).
FIRST_AT = DEMO.evaluation.first_at
((TRIGGER,),) = [level.evaluations for cap in DEMO.capabilities for level in cap.levels]
STEP_FLOP = FIRST_AT / 10  # ten steps to the first evaluation: milestones fall on whole steps


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


def capability(flop: float) -> float:
    """A capability that grows with compute, as sqrt(flop / first_at) / 9.8.

    Against the demo's alert 0.3 and trigger 0.6, at its milestones (x first_at = 1.7e10):
    0.10 at 1x, 0.14 at 2x, 0.20 at 4x, 0.289 at 8x (below the alert), 0.41 at 16x (the
    alert: the cadence tightens to 1.5x), 0.50 at 24x, 0.61 at 36x = 6.1e11 (the trigger
    without the safeguard: pause).
    """
    return min(1.0, max(0.0, (flop / FIRST_AT) ** 0.5 / 9.8))


@pytest.fixture()
def world(tmp_path: Path):
    clock = Clock()
    ws = create_workspace(tmp_path / "ws", clock=clock)
    yield ws, clock
    ws.close()


def _suite(seen: list[float]) -> Suite:
    def probe(model, ctx):
        seen.append(ctx.effective_flop)
        return (capability(ctx.effective_flop), 0.01, 100)

    return Suite([Probe("cyber-demo-task", "cyber-demo", "accuracy", probe)])


def _save(tmp: Path):
    def save(step: int) -> Path:
        path = tmp / f"ckpt-{step}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "weights.bin").write_bytes(f"weights at {step}".encode())
        return path

    return save


def _open(ws, clock, tmp: Path, seen: list[float]) -> Supervisor:
    return Supervisor.open(
        "run-1", load_policy("demo"), ws.ledger, ws.key("trainer"), evaluator=_suite(seen),
        save_checkpoint=_save(tmp), checkpoint_dir=tmp / "ck", compute_every=5, clock=clock,
        check_interval=1e9, record_interval=0,
    )


def test_pause_honoured_then_resume_with_quorum(world, tmp_path: Path) -> None:
    ws, clock = world
    seen: list[float] = []
    sup = _open(ws, clock, tmp_path, seen)
    verdicts = []
    for _ in range(1000):
        d = sup.step(tokens=1000, flop=STEP_FLOP)
        verdicts.append(d.verdict)
        if d.verdict == "pause":
            break
    assert verdicts[-1] == "pause", "the trigger without the safeguard must pause the run"
    assert "alert" in verdicts
    # Evaluations ran at the milestones: first_at, then x2 until the alert, then x1.5.
    assert seen[0] == pytest.approx(FIRST_AT)
    ratios = [b / a for a, b in itertools.pairwise(seen)]
    assert all(r == pytest.approx(2.0, rel=0.06) or r == pytest.approx(1.5, rel=0.08)
               for r in ratios), ratios
    assert any(r == pytest.approx(1.5, rel=0.08) for r in ratios), "the alert tightens cadence"
    paused_at = sup.effective_flop
    assert capability(seen[-1]) >= TRIGGER.trigger

    # The pause's public statement is the policy's disclosure template, filled in.
    (pause,) = sup.state.pauses
    assert pause.predicate.public_statement.startswith("Run run-1 paused at ")
    assert "effective FLOP: " in pause.predicate.public_statement

    # Training during the pause is refused, locally and on reopening.
    with pytest.raises(RunPaused):
        sup.step(tokens=1000, flop=STEP_FLOP)
    with pytest.raises(RunPaused) as info:
        _open(ws, clock, tmp_path, seen)
    missing = " ".join(info.value.missing)
    assert "security-level-demo" in missing and "rso" in missing and "board" in missing

    # Resumption: refused until the attestation and the whole quorum are there.
    with pytest.raises(RunPaused, match="security-level-demo"):
        resume(ws.ledger, ws.key("trainer"), "run-1", now=clock())
    attest(ws.ledger, ws.key("ciso"), "security-level-demo", policy=load_policy("demo"),
           evidence=b"pen-test report", now=clock())
    approve(ws.ledger, ws.key("rso"), "run-1", "safeguard verified", ceiling="2x", now=clock())
    with pytest.raises(RunPaused, match="board") as info:
        resume(ws.ledger, ws.key("trainer"), "run-1", now=clock())
    assert not any("rso" in m for m in info.value.missing)
    with pytest.raises(RunError, match="does not hold role 'board'"):
        approve(ws.ledger, ws.key("ciso"), "run-1", "me too", role="board", now=clock())
    approve(ws.ledger, ws.key("board"), "run-1", "agreed", now=clock())
    resumed = resume(ws.ledger, ws.key("trainer"), "run-1", now=clock())
    # The gate's decision and the resume citing it went in as one batch, side by side.
    decision, last = ws.ledger.entries(resumed.index - 1, resumed.index + 1)
    assert decision.kind == "decision" and last.kind == "resume"
    assert last.statement.predicate.decision.index == decision.index
    assert last.statement.predicate.decision.leaf_hash == decision.leaf_hash.hex()

    state = load_state(ws.ledger, "run-1")
    assert state.active_pause is None and len(state.resumes) == 1
    assert state.resumes[0].predicate.checkpoint == state.pauses[0].predicate.checkpoint
    assert state.resumes[0].predicate.ceiling_flop == pytest.approx(2 * paused_at)

    # The resumed run goes on, and pauses again at the 2x ceiling.
    sup = _open(ws, clock, tmp_path, seen)
    assert sup.effective_flop == pytest.approx(paused_at)
    for _ in range(1000):
        d = sup.step(tokens=1000, flop=STEP_FLOP)
        if d.verdict == "pause":
            break
    assert d.verdict == "pause"
    assert any(r.rule.startswith("ceiling") for r in d.reasons), d.rules
    assert sup.effective_flop == pytest.approx(2 * paused_at, rel=0.02)

    # Every recorded decision replays to the same verdict and rules.
    entries = to_entries(run_log_entries(ws.ledger, "run-1"), ws.ledger.registry())
    replayed = replay_decisions(load_policy("demo"), entries, "run-1")
    assert len(replayed) >= 10
    assert [r for r in replayed if not r.matches] == []
    assert {r.recorded for r in replayed} >= {"continue", "alert", "pause"}


def test_compute_is_recorded_in_batches_not_every_step(world, tmp_path: Path) -> None:
    ws, clock = world
    sup = _open(ws, clock, tmp_path, [])
    before = ws.ledger.size
    for _ in range(3):  # below the first milestone: one gate check, then batches of 5
        sup.step(tokens=10, flop=1e9)
    after_three = ws.ledger.size
    for _ in range(10):
        sup.step(tokens=10, flop=1e9)
    state = load_state(ws.ledger, "run-1")
    assert ws.ledger.size - after_three == 2  # two batches of 5 steps each
    assert after_three - before == 2  # the first step's compute + decision
    assert state.compute[-1].predicate.step == 11
    assert state.compute[-1].predicate.tokens == 110


def test_the_state_grows_in_place_so_the_gate_keeps_its_figures(world, tmp_path: Path) -> None:
    # Folding into a copy made every append re-derive the gate's figures from all compute
    # statements: 257 ms per append and decision at 10^5 statements, against 0.24 ms.
    ws, clock = world
    sup = _open(ws, clock, tmp_path, [])
    for _ in range(6):
        sup.step(tokens=10, flop=1e9)
    records = sup.state.compute
    figures = records.derived  # what the gate derived from them at its last decision
    assert figures is not None
    for _ in range(10):
        sup.step(tokens=10, flop=1e9)
    assert sup.state.compute is records and len(records) > 3
    assert records.derived is figures  # extended, not made again
    fresh = load_state(ws.ledger, "run-1")
    assert [r.predicate for r in fresh.compute] == [r.predicate for r in records]


def test_ledger_refusal_fails_closed(world, tmp_path: Path) -> None:
    ws, clock = world
    sup = _open(ws, clock, tmp_path, [])
    sup.step(tokens=10, flop=1e9)
    revoke = KeyRevocationPredicate(
        vkey=ws.key("trainer").vkey.text(), reason="laptop lost", revoked_at=clock()
    )
    ws.ledger.append(sign_statement(revoke, ws.org_root))
    with pytest.raises(LedgerUnavailable, match="must not go on"):
        for _ in range(10):
            sup.step(tokens=10, flop=1e9)
    with pytest.raises(RunPaused):
        sup.step(tokens=10, flop=1e9)


def test_ledger_failure_can_pause_instead_of_raising(world, tmp_path: Path) -> None:
    ws, clock = world
    sup = Supervisor.open(
        "run-2", load_policy("demo"), ws.ledger, ws.key("trainer"), flop_per_token=1.0,
        save_checkpoint=_save(tmp_path), compute_every=2, clock=clock, on_ledger_error="pause",
        record_interval=0,
    )
    sup.step(tokens=10)
    revoke = KeyRevocationPredicate(
        vkey=ws.key("trainer").vkey.text(), reason="compromised", revoked_at=clock()
    )
    ws.ledger.append(sign_statement(revoke, ws.org_root))  # the ledger now refuses the trainer
    verdicts = []
    while not verdicts or verdicts[-1] != "pause":
        verdicts.append(sup.step(tokens=10).verdict)
        assert len(verdicts) < 5
    assert sup.decision is not None and sup.decision.rules == ["ledger-unavailable"]
    with pytest.raises(RunPaused, match="ledger"):
        sup.step(tokens=10)


def test_reopening_under_another_policy_is_refused(world, tmp_path: Path) -> None:
    ws, clock = world
    _open(ws, clock, tmp_path, []).step(tokens=1, flop=1.0)
    with pytest.raises(RunError, match="registered under policy demo"):
        Supervisor.open("run-1", load_policy("eu-ai-act"), ws.ledger, ws.key("trainer"),
                        flop_per_token=1.0)
