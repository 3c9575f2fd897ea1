"""A pause at a compute ceiling is a step, not a dead end.

The run pauses at its capability trigger, resumes with approvals that set a ceiling,
pauses again at the ceiling, and goes on once the quorum approves again: the supervisor
evaluated the model at the ceiling before declaring the pause, so the resumption needs
nothing else. A ceiling pause without fresh results (the run had no evaluator) says
what is missing and how to supply it, and :meth:`Supervisor.evaluate_paused` supplies it.
Real ledger (SQLite), real signatures, a probe for the capability; no torch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scalegate.audit.replay import replay_decisions
from scalegate.demo.workspace import create_workspace
from scalegate.errors import RunError, RunPaused
from scalegate.evals import Probe, Suite
from scalegate.governance import approve, attest, resume
from scalegate.policy import load_policy
from scalegate.runs import load_state, run_log_entries, to_entries
from scalegate.supervisor import Supervisor, paused_checkpoint

DEMO = load_policy("demo")
assert DEMO.evaluation is not None and DEMO.evaluation.first_at is not None
FIRST_AT = DEMO.evaluation.first_at
STEP = FIRST_AT / 10


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


@pytest.fixture()
def world(tmp_path: Path):
    clock = Clock()
    ws = create_workspace(tmp_path / "ws", clock=clock)
    yield ws, clock
    ws.close()


def suite(seen: list[tuple[int, float]]) -> Suite:
    """The capability rises with compute and reaches the demo's 0.6 trigger at ~36x."""
    def fn(model, ctx):
        seen.append((ctx.step, ctx.effective_flop))
        return (min(1.0, (ctx.effective_flop / FIRST_AT) ** 0.5 / 9.8), 0.01, 100)

    return Suite([Probe("cyber-demo-task", "cyber-demo", "accuracy", fn)])


def open_run(ws, clock, tmp: Path, evaluator) -> Supervisor:
    def save(step: int) -> Path:
        path = tmp / f"ck-{step}"
        path.mkdir(exist_ok=True)
        (path / "weights.bin").write_bytes(f"weights at {step}".encode())
        return path

    return Supervisor.open("run-1", DEMO, ws.ledger, ws.key("trainer"), evaluator=evaluator,
                           save_checkpoint=save, checkpoint_dir=tmp / "ck", compute_every=5,
                           clock=clock, check_interval=1e9, record_interval=0)


def train_to_pause(sup: Supervisor) -> None:
    for _ in range(2000):
        if sup.step(tokens=1000, flop=STEP).verdict == "pause":
            return
    raise AssertionError("the run never paused")


def lift_trigger_pause(ws, clock, ceiling: str) -> None:
    attest(ws.ledger, ws.key("ciso"), "security-level-demo", policy=DEMO,
           evidence=b"pen-test report", now=clock())
    approve(ws.ledger, ws.key("rso"), "run-1", "safeguard verified", ceiling=ceiling,
            now=clock())
    approve(ws.ledger, ws.key("board"), "run-1", "agreed", now=clock())
    resume(ws.ledger, ws.key("trainer"), "run-1", now=clock())


def test_a_ceiling_pause_carries_fresh_results_and_needs_only_the_quorum(world,
                                                                         tmp_path: Path) -> None:
    ws, clock = world
    seen: list[tuple[int, float]] = []
    train_to_pause(open_run(ws, clock, tmp_path, suite(seen)))
    lift_trigger_pause(ws, clock, "1.5x")

    sup = open_run(ws, clock, tmp_path, suite(seen))
    train_to_pause(sup)
    state = load_state(ws.ledger, "run-1")
    pause = state.active_pause
    assert pause is not None and "ceiling" in sup.decision.rules
    # Evaluated on the paused model, at the pause's step, before the pause was declared.
    assert seen[-1][0] == pause.predicate.step
    last_eval = state.evals[-1]
    assert last_eval.predicate.step == pause.predicate.step and last_eval.index < pause.index

    with pytest.raises(RunPaused) as info:
        open_run(ws, clock, tmp_path, suite(seen))
    missing = info.value.missing
    assert missing and all("approval" in m for m in missing), missing
    assert any("scalegate approve run-1" in m for m in missing), missing

    approve(ws.ledger, ws.key("rso"), "run-1", "shown safe at the ceiling", ceiling="1.5x",
            now=clock())
    approve(ws.ledger, ws.key("board"), "run-1", "agreed", now=clock())
    resume(ws.ledger, ws.key("trainer"), "run-1", now=clock())
    sup = open_run(ws, clock, tmp_path, suite(seen))
    for _ in range(3):
        assert sup.step(tokens=1000, flop=STEP).verdict != "pause"
    sup.flush()

    entries = to_entries(run_log_entries(ws.ledger, "run-1"), ws.ledger.registry())
    assert [r for r in replay_decisions(DEMO, entries, "run-1") if not r.matches] == []


def test_a_ceiling_pause_without_results_is_evaluated_later(world, tmp_path: Path) -> None:
    ws, clock = world
    seen: list[tuple[int, float]] = []
    train_to_pause(open_run(ws, clock, tmp_path, suite(seen)))
    lift_trigger_pause(ws, clock, "1.5x")
    # Reopened without an evaluator: nothing can be evaluated at the ceiling.
    train_to_pause(open_run(ws, clock, tmp_path, None))
    state = load_state(ws.ledger, "run-1")
    pause = state.active_pause
    assert pause is not None

    with pytest.raises(RunPaused) as info:
        open_run(ws, clock, tmp_path, suite(seen))
    text = str(info.value)
    assert "evaluation cyber-demo-task of the checkpoint at the pause" in text
    assert "Supervisor.evaluate_paused" in text and "scalegate approve run-1" in text

    # Evaluate the recorded checkpoint: its files are checked against the ledger first.
    path = paused_checkpoint(ws.ledger, "run-1")
    assert (path / "weights.bin").exists()
    before = len(seen)
    res = Supervisor.evaluate_paused("run-1", DEMO, ws.ledger, ws.key("trainer"),
                                     model=None, evaluator=suite(seen), clock=clock,
                                     checkpoint_dir=tmp_path / "ck")
    assert len(seen) == before + 1 and seen[-1][0] == pause.predicate.step
    state = load_state(ws.ledger, "run-1")
    ev = state.evals[-1].predicate
    assert ev.checkpoint == pause.predicate.checkpoint and ev.step == pause.predicate.step
    assert [m.kind for m in res.missing] == ["approval", "approval"]

    # A checkpoint whose files changed is refused.
    (path / "weights.bin").write_bytes(b"other weights")
    with pytest.raises(RunError, match="does not match the digest"):
        paused_checkpoint(ws.ledger, "run-1")


def test_evaluating_a_run_that_is_not_paused_is_refused(world, tmp_path: Path) -> None:
    ws, clock = world
    sup = open_run(ws, clock, tmp_path, None)
    sup.step(tokens=1, flop=1.0)
    with pytest.raises(RunError, match="is not paused"):
        Supervisor.evaluate_paused("run-1", DEMO, ws.ledger, ws.key("trainer"), model=None,
                                   evaluator=suite([]), clock=clock)
