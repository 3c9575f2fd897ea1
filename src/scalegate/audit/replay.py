"""Replay a run's decisions: re-fold the log up to each decision and re-decide.

A decision is verifiable because it is a pure function of the policy and the
statements before it: the trainer records the log size its decision rested on
(``basis_size``); the auditor folds exactly those entries, calls the same gate at the
recorded time, and must get the same verdict. A decision cited by a ``resume``
statement is the gate's resumption decision and is replayed through
:func:`~scalegate.gate.resumption`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from scalegate.gate import decide, resumption
from scalegate.ledger.statements import DecisionPredicate, Ref, ResumePredicate, Verdict
from scalegate.policy import Policy
from scalegate.state import Entry, RunState, fold, same_ref


class ReplayedDecision(BaseModel):
    """One recorded decision next to the gate's answer on replay."""

    model_config = ConfigDict(frozen=True)

    ref: Ref
    recorded: Verdict
    replayed: Verdict
    recorded_rules: list[str]
    replayed_rules: list[str]

    @property
    def matches(self) -> bool:
        """Same verdict and the same rules."""
        return self.recorded == self.replayed and self.recorded_rules == self.replayed_rules


def replay_decisions(
    policy: Policy, entries: Sequence[Entry], run_id: str
) -> list[ReplayedDecision]:
    """Replay every ``decision`` of ``run_id`` in ``entries`` (all of the run's entries and
    organisation-wide attestations, any order)."""
    ordered = sorted(entries, key=lambda e: e.ref.index)
    resume_decisions = [
        (e.statement.predicate.decision, e.statement.predicate.pause)
        for e in ordered
        if isinstance(e.statement.predicate, ResumePredicate)
        and e.statement.predicate.run_id == run_id
    ]
    out: list[ReplayedDecision] = []
    state = RunState(run_id=run_id)
    folded = 0
    for entry in ordered:
        pred = entry.statement.predicate
        if not isinstance(pred, DecisionPredicate) or pred.run_id != run_id:
            continue
        basis = [e for e in ordered[folded:] if e.ref.index < pred.basis_size]
        state = fold(basis, run_id=run_id, into=state)
        folded += len(basis)
        pause = next((p for d, p in resume_decisions if same_ref(d, entry.ref)), None)
        if pause is not None:
            replayed = resumption(policy, state, pause, now=pred.at).decision
        else:
            replayed = decide(policy, state, pred.at)
        out.append(
            ReplayedDecision(
                ref=entry.ref,
                recorded=pred.verdict,
                replayed=replayed.verdict if replayed else "pause",
                recorded_rules=[r.rule for r in pred.reasons],
                replayed_rules=[r.rule for r in replayed.reasons] if replayed else ["paused"],
            )
        )
    return out
