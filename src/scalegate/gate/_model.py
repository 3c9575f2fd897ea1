"""What the gate returns: a :class:`Decision`, or for a paused run a :class:`Resumption`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from scalegate.errors import RunError
from scalegate.ledger import (
    DecisionPredicate,
    Obligation,
    Reason,
    Ref,
    Verdict,
)

#: The rule kinds a reason can name (``<kind>:<detail>``), in order of the design's rules.
RULE_KINDS: tuple[str, ...] = (
    "paused",  # the run is paused and not yet resumed
    "ceiling",  # a resumption's compute ceiling is reached
    "compute-threshold",  # rule 1: a pause threshold is reached inside its window
    "evaluation-due",  # rule 2: effective compute or time since the last evaluation
    "evaluation-missing",  # rule 2: due and the run went on without it (policy on_missing)
    "safeguard-missing",  # rule 3: a reached level's safeguard has no valid attestation
    "safeguard-expired",  # rule 6: a reached level's attestation has expired
    "capability-reached",  # rule 3: a level the policy trains no run past (on_reach: pause)
    "capability-alert",  # rule 4: an early-warning value is met
)
#: The rule kinds an obligation can name.
OBLIGATION_KINDS: tuple[str, ...] = ("notify-threshold", "notify-alert", "notify-trigger")


def rule_kind(rule: str) -> str:
    """``safeguard-missing:cbrn/CBRN-3/asl3-security`` -> ``safeguard-missing``."""
    return rule.split(":", 1)[0]


class Decision(BaseModel):
    """The gate's answer for a run at ``at``: verdict, reasons, obligations, next milestone."""

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    reasons: list[Reason] = Field(default_factory=list)
    obligations: list[Obligation] = Field(default_factory=list)
    next_eval_at_flop: float | None = Field(
        default=None, description="effective FLOP at which the next evaluation is due"
    )
    ceiling_flop: float | None = Field(
        default=None, description="effective FLOP the current resumption may not go beyond"
    )
    evaluations_due: list[str] = Field(
        default_factory=list, description="evaluation ids to run now ('*': any evaluation)"
    )
    milestones: dict[str, float] = Field(
        default_factory=dict,
        description="effective FLOP at which each evaluation id is next due (not recorded: "
        "the supervisor schedules its next look at the gate from it)",
    )
    run_id: str | None = None
    step: int = 0
    effective_flop: float = 0.0
    totals: dict[str, float] = Field(default_factory=dict, description="FLOP by policy regime")
    basis_size: int = 0
    at: datetime

    @property
    def rules(self) -> list[str]:
        """The rule of every reason, in order."""
        return [r.rule for r in self.reasons]

    def to_predicate(self) -> DecisionPredicate:
        """The ``decision`` statement predicate recording this decision verbatim."""
        if not self.run_id:
            raise RunError("a decision can only be recorded for a registered run (no run_id)")
        return DecisionPredicate(
            run_id=self.run_id,
            step=self.step,
            effective_flop=self.effective_flop,
            verdict=self.verdict,
            reasons=self.reasons,
            obligations=self.obligations,
            next_eval_at_flop=self.next_eval_at_flop,
            ceiling_flop=self.ceiling_flop,
            basis_size=self.basis_size,
            at=self.at,
        )


MissingKind = Literal[
    "pause", "approval", "attestation", "evaluation", "ceiling", "compute-threshold", "policy",
    "other",
]


class Missing(BaseModel):
    """One thing a resumption still lacks."""

    model_config = ConfigDict(frozen=True)

    kind: MissingKind
    item: str = Field(
        description="the role, safeguard, evaluation, threshold or capability level concerned"
    )
    message: str


class Resumption(BaseModel):
    """Whether a paused run may resume, and if not exactly what is missing."""

    model_config = ConfigDict(frozen=True)

    may_resume: bool
    pause: Ref | None = None
    checkpoint: Ref | None = Field(default=None, description="the run must resume from this")
    approvals: list[Ref] = Field(default_factory=list, description="approvals forming the quorum")
    ceiling_flop: float | None = Field(
        default=None, description="effective FLOP the resumed run may not go beyond"
    )
    missing: list[Missing] = Field(default_factory=list)
    decision: Decision | None = Field(
        default=None, description="the gate's decision for the run as if the pause were lifted"
    )

    def missing_messages(self) -> list[str]:
        """One line per missing item (for ``RunPaused.missing``)."""
        return [m.message for m in self.missing]
