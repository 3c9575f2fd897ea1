"""Replay a run: fold its statements, re-run the gate where the trainer decided, and find
what the trainer did wrong.

A decision is verifiable because it is a pure function of the policy and the
statements before it: the trainer records the log size its decision rested on
(``basis_size``); the auditor folds exactly those entries, calls the same gate at the
recorded time, and must get the same verdict and rules. A decision cited by a
``resume`` statement is the gate's resumption decision and is replayed through
:func:`~scalegate.gate.resumption`.

The trainer may also *not* decide where it had to. So the auditor consults the gate
itself where an honest supervisor must have: at the run's first compute, whenever
compute reaches the line the last answer named (next evaluation milestone, resumption
ceiling, a compute threshold; or trains past a due evaluation), after a resumption, and
when the clock passes a point where a calendar rule can change the answer (an
attestation expiring, a threshold window opening or closing, the evaluation interval).
Every verdict comes from the gate: the auditor only schedules when to ask.

One finding is the auditor's own, on the gate's answer: the gate counts an evaluation as
missing only when a statement *after* the one that first reached its milestone trained
further, so a single statement that went far past the milestone (a final flush, or a jump
evaluated only at its far end) would pass unjudged. The auditor reports it as
``evaluation-skipped`` when that statement is beyond the policy's ``grace`` and more than
a step or two past the milestone at its own average rate (the honest supervisor's
statement at a milestone is less than one step past it); see
``RunWalk._trained_past_in_one`` in :mod:`scalegate.audit._run_walk`.

:func:`replay_run` is pure (no I/O): the policy (from the ledger, checked by the
caller), the run's entries, and the audit time ``now`` in; the replayed decisions and
the :class:`~scalegate.audit.report.Violation` list (each with its kind from
:data:`RUN_VIOLATION_KINDS` and the statements involved) out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from scalegate.audit._times import WitnessedTimes
from scalegate.audit.report import Violation
from scalegate.gate import Decision
from scalegate.ledger import (
    Ref,
    Verdict,
)
from scalegate.policy import Policy
from scalegate.state import RunState, StatementOrRecord

__all__ = [
    "RUN_VIOLATION_KINDS",
    "TIME_GRACE",
    "ReplayedDecision",
    "RunReplay",
    "replay_decisions",
    "replay_run",
]

#: Every kind of violation the run replay reports, with what it means.
RUN_VIOLATION_KINDS: dict[str, str] = {
    "training-during-pause": "compute or a checkpoint advanced between a pause and a valid "
    "resumption",
    "pause-not-declared": "the gate required a pause and the run trained on without declaring "
    "one (or its log ends without one)",
    "ceiling-exceeded": "the run trained past the compute ceiling its resumption was approved "
    "for",
    "evaluation-skipped": "an evaluation the policy required was not run before the run "
    "trained on past its milestone (in later statements, or in the one that reached it)",
    "decision-mismatch": "a recorded decision differs from the gate's decision on replay (or "
    "rests on entries it cannot rest on)",
    "resume-without-quorum": "a resumption without approvals from the policy's quorum",
    "resume-premature": "a resumption before the gate allows it (safeguard, evaluation, "
    "threshold or ceiling missing; no such pause)",
    "resume-wrong-checkpoint": "a resumption from another checkpoint than the pause recorded",
    "approval-wrong-pause": "a resumption cites an approval bound to a different pause",
    "notification-missed": "an obligation past its deadline with no notification (or one "
    "sent after it)",
    "compute-backwards": "cumulative compute (steps, tokens or FLOP of a phase) went down",
    "attestation-wrong-role": "a safeguard attested by a key without a role the safeguard "
    "allows",
    "attestation-expired": "the run relied on a safeguard attestation after it expired",
    "bad-reference": "a statement cites an entry that is not what it must be",
    "statement-out-of-place": "a run's statement is not at the place its trainer signed it "
    "for (a replay), or statements the trainer signed before it are missing from the log",
}

#: How long after a *calendar* rule starts requiring a pause (an attestation expires, a
#: window opens) the trainer may go on before it is a violation: a supervisor checks the
#: clock every ``check_interval`` seconds, not at every step.
TIME_GRACE = timedelta(minutes=5)


class ReplayedDecision(BaseModel):
    """One recorded decision next to the gate's answer on replay."""

    model_config = ConfigDict(frozen=True)

    ref: Ref
    recorded: Verdict
    replayed: Verdict
    recorded_rules: list[str]
    replayed_rules: list[str]
    at: datetime | None = None
    effective_flop: float | None = None

    @property
    def matches(self) -> bool:
        """Same verdict and the same rules."""
        return self.recorded == self.replayed and self.recorded_rules == self.replayed_rules


class RunReplay(BaseModel):
    """The replay of one run: its decisions, the auditor's own gate calls, the violations."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    run_id: str
    decisions: list[ReplayedDecision] = Field(default_factory=list)
    consults: int = Field(0, description="gate calls the auditor made beyond recorded decisions")
    resumes: int = 0
    violations: list[Violation] = Field(default_factory=list)
    final: Decision | None = Field(None, description="the gate's answer at the audit time")
    operator_word: list[Violation] = Field(
        default_factory=list, description="deadlines met only on the log operator's word")
    now: datetime | None = None
    state: RunState | None = Field(None, exclude=True, description="the run folded to its end")

    @property
    def mismatches(self) -> list[ReplayedDecision]:
        """Recorded decisions the replay does not reproduce."""
        return [d for d in self.decisions if not d.matches]

    @property
    def ok(self) -> bool:
        """True when the replay found nothing wrong."""
        return not self.violations


def replay_run(
    policy: Policy,
    entries: Sequence[StatementOrRecord],
    run_id: str,
    *,
    now: datetime | None = None,
    time_grace: timedelta = TIME_GRACE,
    times: WitnessedTimes | None = None,
) -> RunReplay:
    """Replay run ``run_id`` under ``policy`` and report every violation.

    ``entries`` are the run's entries plus organisation-wide attestations (any order;
    each with its signer's key name and the roles that key held), as
    :class:`~scalegate.state.Entry` objects or as the records a state keeps (see
    :data:`~scalegate.state.StatementOrRecord`). ``now`` is the audit
    time, against which notification deadlines are judged (default: the latest time
    the run's statements record). ``time_grace`` is :data:`TIME_GRACE`. ``times`` are the
    witnessed bounds on when each entry was logged, by which notifications are judged
    (without them, and where they do not decide, by the log's ``appended_at``: the
    operator's word, which the replay lists apart).
    """
    from scalegate.audit._run_walk import RunWalk

    return RunWalk(policy, entries, run_id, now, time_grace, times).run()


def replay_decisions(
    policy: Policy, entries: Sequence[StatementOrRecord], run_id: str
) -> list[ReplayedDecision]:
    """Replay every ``decision`` of ``run_id`` in ``entries`` (all of the run's entries and
    organisation-wide attestations, any order): :func:`replay_run`'s decisions only."""
    return replay_run(policy, entries, run_id).decisions
