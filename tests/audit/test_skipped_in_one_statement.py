"""Issue 13 §2: the auditor sees a skipped evaluation even when only one statement shows it.

The gate counts an evaluation as missing when a statement *after* the one that made it due
trained further; the statement that first reaches a milestone is taken as where the
supervisor stopped to evaluate. A trainer recording compute every 100 steps, whose only
statement past the milestone was its final flush, therefore verified clean. A compute
statement that goes past a due milestone (beyond the policy's grace, more than a step or
two past it) with no evaluation before it is ``evaluation-skipped``, whichever statement
it is: the run's last one, or one followed by the evaluation at its far end. The honest
supervisor's statement at the milestone (less than one step past it, before it evaluates,
and still the run's last while the evaluation runs) stays clean.

Every ledger is real (real keys, signatures, SQLite file, witness), built from an honest
run under the audit test policy (see :mod:`runworld`) and audited end to end, one of them
through `scalegate verify`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from scalegate.audit import EXIT_OK, EXIT_VIOLATIONS
from scalegate.audit.replay import replay_run
from scalegate.audit.report import Violation
from scalegate.audit.runcheck import LedgerAudit
from scalegate.evals import EvalResult, Suite
from scalegate.gate import decide
from scalegate.ledger.statements import Ref
from scalegate.runs import run_log_entries, to_entries
from scalegate.supervisor import Supervisor

from .runworld import POLICY, RUN, STEP_FLOP, World, _Probe, new_world

SCALEGATE = [str(Path(sys.executable).with_name("scalegate"))]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """An honest run, evaluated at its first milestones, alerted (cadence 1.5x), not paused."""
    w = new_world(tmp_path_factory.mktemp("running"))
    w.train(lambda d: d.verdict == "alert")
    yield w
    w.close()


@pytest.fixture
def world(running: World, tmp_path: Path) -> Iterator[World]:
    w = running.copy(tmp_path)
    yield w
    w.close()


class Milestone:
    """Where the run stands below its next evaluation milestone, and a trainer that records
    compute at a steady ``per_step`` FLOP that puts the milestone 250 steps (plus ``extra``)
    past the latest statement."""

    def __init__(self, w: World, extra: float = 0.0) -> None:
        state = w.state()
        last = state.latest_compute
        assert last is not None
        self.w = w
        self.line = state.decisions[-1].predicate.next_eval_at_flop
        assert self.line is not None
        self.step0, self.eff0 = last.predicate.step, last.predicate.effective_flop
        assert self.eff0 < self.line
        self.per_step = (self.line - self.eff0) / (250 + extra)

    def at(self, steps: int) -> Ref:
        """A compute statement ``steps`` steps past the start."""
        return self.w.compute(self.step0 + steps, self.eff0 + steps * self.per_step)

    def eff(self, steps: int) -> float:
        return self.eff0 + steps * self.per_step


def decide_and_record(w: World) -> Ref:
    """The gate's decision on the run as it stands, recorded verbatim (as a supervisor does)."""
    return w.sign(decide(POLICY, w.state(), w.clock()).to_predicate())


def violations(audit: LedgerAudit) -> list[tuple[str, str]]:
    return [(v.kind, v.message) for v in audit.report.violations]


def skipped(audit: LedgerAudit) -> Violation:
    """The one violation, an ``evaluation-skipped``; the audit failed with violations found."""
    assert audit.report.exit_code == EXIT_VIOLATIONS, violations(audit)
    (v,) = audit.report.violations
    assert v.kind == "evaluation-skipped" and v.run_id == RUN, violations(audit)
    return v


def verify(w: World) -> subprocess.CompletedProcess[str]:
    w.witness()
    at = (w.clock.t + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return subprocess.run([*SCALEGATE, "verify", "--trust", str(w.trust_file()), "--ledger",
                           str(w.ws.ledger_path), "--no-state", "--at", at],
                          capture_output=True, text=True, timeout=120)


# --- the ledger: compute every 100 steps, the final flush past the milestone ----------


def test_final_flush_past_the_milestone_is_a_skipped_evaluation(world: World) -> None:
    m = Milestone(world)
    m.at(100)
    below = m.at(200)
    flush = m.at(290)  # the milestone was reached at step +250: 40 steps past it
    audit = world.audit()
    v = skipped(audit)
    assert v.refs == [below, flush]
    assert f"compute #{flush.index} is the first statement to reach it" in v.message
    assert "about 40 steps past the milestone" in v.message
    (run,) = audit.runs
    assert run.replay is not None and not run.replay.mismatches


def test_scalegate_verify_fails_on_the_final_flush(world: World) -> None:
    m = Milestone(world)
    m.at(100)
    m.at(200)
    flush = m.at(290)
    r = verify(world)
    assert r.returncode == EXIT_VIOLATIONS, r.stdout + r.stderr
    assert "evaluation-skipped" in r.stdout and f"#{flush.index}" in r.stdout


def test_final_flush_far_past_the_milestone(world: World) -> None:
    """A final statement beyond the grace by far (here the next milestone too) is the same."""
    m = Milestone(world)
    below = m.at(100)
    last = m.at(2000)
    assert m.eff(2000) > 2 * m.line
    v = skipped(world.audit())
    assert v.refs == [below, last]


def test_a_statement_that_jumps_past_the_milestone_then_evaluates(world: World) -> None:
    """Evaluating at the far end of the jump does not show what the run was at the milestone:
    skipped, though every recorded decision replays."""
    m = Milestone(world)
    below = m.at(200)
    jump = m.at(300)
    decide_and_record(world)  # evaluate
    world.eval(0.55, world.state().latest_compute.predicate.step, m.eff(300))
    decide_and_record(world)  # alert, the next milestone 1.5x further
    assert world.state().decisions[-1].predicate.verdict == "alert"
    audit = world.audit()
    v = skipped(audit)
    assert v.refs == [below, jump]
    (run,) = audit.runs
    assert run.replay is not None and len(run.replay.decisions) > 2
    assert not run.replay.mismatches


def test_the_jump_followed_by_more_compute_is_reported_once(world: World) -> None:
    """Training on after the jump: the gate's own evaluation-missing (and the pause it
    requires) comes on top; the skipped milestone is reported once, at the jump."""
    m = Milestone(world)
    below = m.at(200)
    jump = m.at(300)
    more = m.at(400)
    audit = world.audit()
    assert audit.report.exit_code == EXIT_VIOLATIONS
    kinds = sorted(v.kind for v in audit.report.violations)
    assert kinds == ["evaluation-skipped", "pause-not-declared"], violations(audit)
    (v,) = [v for v in audit.report.violations if v.kind == "evaluation-skipped"]
    assert v.refs == [below, jump]
    (p,) = [v for v in audit.report.violations if v.kind == "pause-not-declared"]
    assert p.refs == [more]


# --- what stays clean ------------------------------------------------------------------------


def test_final_statement_that_only_reaches_the_milestone_is_clean(world: World) -> None:
    """Less than one step past the milestone, the statement an honest supervisor writes
    before it evaluates (the run's last while the evaluation runs): not past it."""
    m = Milestone(world, extra=-0.5)
    m.at(100)
    m.at(200)
    m.at(250)  # half a step past the milestone, beyond a grace of 1x
    assert m.eff(250) > m.line
    audit = world.audit()
    assert audit.report.exit_code == EXIT_OK, violations(audit)


def test_final_statement_exactly_at_the_milestone_is_clean(world: World) -> None:
    m = Milestone(world)
    m.at(100)
    m.at(250)
    audit = world.audit()
    assert audit.report.exit_code == EXIT_OK, violations(audit)


def test_within_the_grace_is_not_past(world: World) -> None:
    """How far past a milestone training may go while the evaluation runs is the policy's
    ``grace``: the same final flush, 40 steps past, is within a grace of 1.5x."""
    m = Milestone(world)
    m.at(100)
    m.at(200)
    m.at(290)
    entries = to_entries(run_log_entries(world.ledger, RUN), world.ledger.registry())
    now = world.clock.t + timedelta(days=1)
    strict = replay_run(POLICY, entries, RUN, now=now)
    assert [v.kind for v in strict.violations] == ["evaluation-skipped"]
    evaluation = POLICY.evaluation.model_copy(update={"grace": 1.5})
    lenient = POLICY.model_copy(update={"evaluation": evaluation})
    assert replay_run(lenient, entries, RUN, now=now).ok


class _Interrupted(_Probe):
    """The probe, interrupted: the process stops while the evaluation runs."""

    def run(self, model: Any, ctx: Any) -> list[EvalResult]:
        raise KeyboardInterrupt


def _supervisor(w: World, probe: _Probe) -> Supervisor:
    def save(step: int) -> Path:
        path = w.dir / "ck" / f"step-{step}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "weights.bin").write_bytes(f"weights at {step}".encode())
        return path

    return Supervisor.open(RUN, POLICY, w.ledger, w.ws.key("trainer"),
                           evaluator=Suite([probe]), save_checkpoint=save,
                           checkpoint_dir=w.dir / "ck", compute_every=100, record_interval=0,
                           clock=w.clock, check_interval=1e9)


def test_honest_supervisor_recording_every_100_steps_is_clean(world: World) -> None:
    """The real supervisor, a compute statement every 100 steps and the milestones in
    between: it records the step that reaches each one, evaluates, decides. Its final flush,
    past the milestone it evaluated at but short of the next, is clean; so is the run
    trained on to the next milestone, where the trigger is met and it pauses."""
    sup = _supervisor(world, _Probe(world.clock))
    evals = len(world.state().evals)
    for _ in range(1000):  # 800 steps to the next milestone (1.5x), 200 more
        assert sup.step(tokens=1000, flop=STEP_FLOP / 10).verdict == "alert"
    sup.flush()
    state = world.state()
    assert len(state.evals) == evals + 1 and len(state.compute) > 10
    audit = world.audit()
    assert audit.report.exit_code == EXIT_OK, violations(audit)
    for _ in range(2000):
        if sup.step(tokens=1000, flop=STEP_FLOP / 10).verdict == "pause":
            break
    state = world.state()
    assert state.active_pause is not None and len(state.evals) == evals + 2
    audit = world.audit()
    assert audit.report.exit_code == EXIT_OK, violations(audit)


def test_honest_supervisor_stopped_while_evaluating_is_clean(world: World) -> None:
    """The run's last statement is the supervisor's at the milestone, 50 steps after its
    previous one, with no evaluation or decision after it (stopped, or audited, while the
    evaluation runs): not past the milestone."""
    m = Milestone(world)
    sup = _supervisor(world, _Interrupted(world.clock))
    with pytest.raises(KeyboardInterrupt):
        for _ in range(1000):
            sup.step(tokens=1000, flop=m.per_step)
    state = world.state()
    last = state.latest_compute
    assert last is not None and last.predicate.effective_flop >= m.line
    assert world.ledger.size == last.ref.index + 1  # nothing after it
    assert len(state.compute) >= 3  # statements every 100 steps before it
    audit = world.audit()
    assert audit.report.exit_code == EXIT_OK, violations(audit)
