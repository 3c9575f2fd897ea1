"""Compute as the policy counts it, derived once per decision from the folded statements.

Regime totals and effective compute are recomputed from each ``compute`` statement's
FLOP by phase with the policy's own regimes and multiplier, so that a policy (not the
trainer) decides what counts. Milestones compare with a relative tolerance so that a
value written as "exactly 4x" in decimal counts as reached.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scalegate.ledger.statements import EvalPredicate, Reason, Ref
from scalegate.policy import Policy
from scalegate.state import Recorded, RunState

TOLERANCE = 1e-9
_FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


def reached(value: float, line: float) -> bool:
    """``value >= line`` up to a relative tolerance; any positive value reaches a line of 0."""
    if line <= 0:
        return value > 0
    return value >= line * (1 - TOLERANCE)


def beyond(value: float, line: float) -> bool:
    """``value > line`` by more than the tolerance."""
    return value > line * (1 + TOLERANCE)


def plus(when: datetime, delta: timedelta) -> datetime:
    """``when + delta``, saturating at the far future instead of overflowing."""
    try:
        return when + delta
    except OverflowError:
        return _FAR_FUTURE


def flop(value: float) -> str:
    """A FLOP figure for messages: two significant figures."""
    return f"{value:.2g}" if value < 1e4 else f"{value:.2e}".replace("e+", "e")


@dataclass
class Finding:
    """A rule's conclusion: the verdict it asks for, why, and what would clear it."""

    verdict: str
    reason: Reason
    missing_kind: str = "other"
    missing_items: list[str] = field(default_factory=list)
    missing_message: str = ""


class Measures:
    """Regime totals and effective compute per ``compute`` statement, and lookups on them."""

    def __init__(self, policy: Policy, state: RunState) -> None:
        self.policy = policy
        self.state = state
        self.records = state.compute
        self.totals = [policy.compute.totals(r.predicate.flop_by_phase) for r in self.records]
        mult = policy.compute.effective.multiplier
        regime = policy.compute.effective.regime
        self.effective = [t.get(regime, 0.0) * mult for t in self.totals]
        self.steps = [r.predicate.step for r in self.records]
        self._sorted = all(a <= b for a, b in zip(self.steps, self.steps[1:], strict=False))

    @property
    def current(self) -> float:
        """Effective compute of the latest ``compute`` statement (0 before any)."""
        return self.effective[-1] if self.effective else 0.0

    def current_totals(self) -> dict[str, float]:
        """Each regime's latest total."""
        if self.totals:
            return dict(self.totals[-1])
        return {name: 0.0 for name in self.policy.compute.regimes}

    def effective_at_step(self, step: int, fallback: float) -> float:
        """Effective compute of the latest ``compute`` statement at or before ``step``."""
        if not self.records:
            return fallback
        if self._sorted:
            i = bisect.bisect_right(self.steps, step) - 1
            return self.effective[i] if i >= 0 else 0.0
        best = [e for s, e in zip(self.steps, self.effective, strict=True) if s <= step]
        return best[-1] if best else 0.0

    def eval_level(self, record: Recorded[EvalPredicate]) -> float:
        """The effective compute of the checkpoint an evaluation measured."""
        return self.effective_at_step(record.predicate.step, record.predicate.effective_flop)

    def first_effective(self, line: float) -> int | None:
        """Index of the first ``compute`` statement whose effective compute reaches ``line``."""
        return next((i for i, e in enumerate(self.effective) if reached(e, line)), None)

    def first_total(self, regime: str, line: float) -> int | None:
        """Index of the first statement whose ``regime`` total reaches ``line``."""
        return next(
            (i for i, t in enumerate(self.totals) if reached(t.get(regime, 0.0), line)), None
        )

    def first_at_or_after(self, when: datetime) -> int | None:
        """Index of the first statement recorded at or after ``when``."""
        return next((i for i, r in enumerate(self.records) if r.predicate.at >= when), None)

    def trained_past(self, index: int, bound: float) -> int | None:
        """Index of the first statement after ``index`` with effective compute above ``bound``."""
        return next(
            (j for j in range(index + 1, len(self.effective)) if beyond(self.effective[j], bound)),
            None,
        )

    def ref(self, index: int) -> Ref:
        """The ref of the ``compute`` statement at ``index``."""
        return self.records[index].ref
