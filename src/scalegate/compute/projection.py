"""Projecting a planned run against a policy's compute thresholds.

From what a run has spent so far and its plan (a sequence of segments, each a phase with a
FLOP budget given directly, as tokens × FLOP per token, or as steps × FLOP per step), compute
each regime's planned total and, for every threshold, whether and where it will be crossed:
the step, the tokens, the time into the plan, and when the duty it carries falls due.

A ``planned`` threshold's duty starts when it *becomes known* that the threshold will be met
(EU AI Act Art. 52(1): notify within two weeks of that), which is the moment of this
projection; a ``reached`` threshold's duty starts when the run gets there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scalegate.compute.account import check_regimes
from scalegate.compute.phases import PHASES
from scalegate.errors import ComputeError


class Threshold(BaseModel):
    """A FLOP line on a regime (the plain-data form of a policy's ``ComputeThreshold``)."""

    model_config = ConfigDict(frozen=True)

    id: str
    regime: str
    flop: float = Field(gt=0)
    basis: Literal["planned", "reached"] = "reached"
    action: Literal["notify", "evaluate", "pause"]
    recipient: str | None = None
    deadline: timedelta | None = None
    description: str = ""
    policy: str = ""
    obligation: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None

    def in_window(self, when: datetime) -> bool:
        """Whether the threshold applies at ``when`` (always, when it has no window)."""
        if self.window_start is not None and when < self.window_start:
            return False
        return not (self.window_end is not None and when >= self.window_end)

    @classmethod
    def from_policy(cls, policy: Any) -> list[Threshold]:
        """The compute thresholds of a loaded ``scalegate.policy.Policy``."""
        return [
            cls(
                id=t.id,
                regime=t.regime,
                flop=t.flop,
                basis=t.basis,
                action=t.action,
                recipient=t.recipient,
                deadline=t.deadline,
                description=t.description,
                policy=policy.id,
                obligation=getattr(t, "obligation", None),
                window_start=getattr(getattr(t, "window", None), "start", None),
                window_end=getattr(getattr(t, "window", None), "end", None),
            )
            for t in policy.compute.thresholds
        ]


class PlanSegment(BaseModel):
    """One stretch of a plan in one phase. Give ``flop``, or ``tokens`` × ``flop_per_token``,
    or ``steps`` × ``flop_per_step``; ``steps``, ``tokens`` and ``seconds`` (wall-clock
    duration) let a crossing be placed at a step, a token count and a time."""

    model_config = ConfigDict(frozen=True)

    phase: str = "pretraining"
    flop: float | None = Field(default=None, ge=0)
    tokens: float | None = Field(default=None, ge=0)
    flop_per_token: float | None = Field(default=None, gt=0)
    steps: int | None = Field(default=None, ge=0)
    flop_per_step: float | None = Field(default=None, gt=0)
    seconds: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _budget(self) -> PlanSegment:
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}; phases are: {', '.join(PHASES)}")
        if self.total is None:
            raise ValueError(
                "a plan segment needs flop, or tokens and flop_per_token, or steps and "
                "flop_per_step"
            )
        return self

    @property
    def total(self) -> float | None:
        """The segment's FLOP."""
        if self.flop is not None:
            return self.flop
        if self.tokens is not None and self.flop_per_token is not None:
            return self.tokens * self.flop_per_token
        if self.steps is not None and self.flop_per_step is not None:
            return self.steps * self.flop_per_step
        return None


class Crossing(BaseModel):
    """Where a threshold is met in a projection, and when its duty falls due."""

    model_config = ConfigDict(frozen=True)

    threshold: Threshold
    crossed: bool
    already: bool = False
    segment: int | None = None
    step: int | None = None
    tokens: float | None = None
    seconds: float | None = None
    known_at: datetime | None = None
    due: datetime | None = None
    in_window: bool = True


class Projection(BaseModel):
    """Regime totals now and at the end of the plan, and every threshold's crossing."""

    model_config = ConfigDict(frozen=True)

    now: datetime
    spent: dict[str, float]
    planned: dict[str, float]
    crossings: list[Crossing]

    def crossing(self, threshold_id: str) -> Crossing:
        for c in self.crossings:
            if c.threshold.id == threshold_id:
                return c
        raise KeyError(threshold_id)


def _regime_total(by_phase: Mapping[str, float], phases: Iterable[str]) -> float:
    return float(sum(by_phase.get(p, 0.0) for p in phases))


def _cross(
    t: Threshold,
    phases: tuple[str, ...],
    plan: Sequence[PlanSegment],
    spent: Mapping[str, float],
    start_step: int | None,
    now: datetime,
    start: datetime,
) -> Crossing:
    total = _regime_total(spent, phases)

    def due_from(at: datetime | None) -> datetime | None:
        return _later(at, t.deadline) if at is not None and t.deadline is not None else None

    if total >= t.flop:
        return Crossing(
            threshold=t, crossed=True, already=True, step=start_step, known_at=now,
            due=due_from(now), in_window=t.in_window(now),
        )
    steps: int | None = start_step
    tokens: float | None = 0.0
    seconds: float | None = 0.0
    for i, seg in enumerate(plan):
        inc = (seg.total or 0.0) if seg.phase in phases else 0.0
        if inc > 0 and total + inc >= t.flop:
            frac = (t.flop - total) / inc
            step = None
            if steps is not None and seg.steps is not None:
                # The threshold is met at the end of the step that carries the total over it.
                step = steps + max(1, math.ceil(frac * seg.steps - 1e-9))
            at_tokens = tokens + frac * seg.tokens if tokens is not None and seg.tokens else None
            at_secs = seconds + frac * seg.seconds if seconds is not None and seg.seconds else None
            known: datetime | None
            if t.basis == "planned":
                known = now
            else:
                known = _later(start, at_secs) if at_secs is not None else None
            return Crossing(
                threshold=t, crossed=True, segment=i, step=step, tokens=at_tokens,
                seconds=at_secs, known_at=known, due=due_from(known),
                in_window=t.in_window(known or now),
            )
        total += inc
        steps = steps + seg.steps if steps is not None and seg.steps is not None else None
        tokens = tokens + seg.tokens if tokens is not None and seg.tokens is not None else None
        seconds = seconds + seg.seconds if seconds is not None and seg.seconds is not None else None
    return Crossing(threshold=t, crossed=False)


def _later(at: datetime, after: timedelta | float) -> datetime:
    """``at`` plus a duration (seconds), or ``ComputeError`` past what a date can hold."""
    try:
        return at + (after if isinstance(after, timedelta) else timedelta(seconds=after))
    except OverflowError:
        span = after.total_seconds() if isinstance(after, timedelta) else after
        raise ComputeError(
            f"{span / 3600:.3g} hours after {at:%Y-%m-%d} lies past the year 9999: no date "
            "can say when.", hint="Check the start time and the training hours.") from None


def project(
    plan: Sequence[PlanSegment],
    thresholds: Iterable[Threshold],
    regimes: Mapping[str, Iterable[str]],
    *,
    spent: Mapping[str, float] | None = None,
    step: int | None = 0,
    now: datetime | None = None,
    start: datetime | None = None,
) -> Projection:
    """Project ``plan`` (after ``spent`` FLOP by phase, at ``step``) against ``thresholds``.

    ``now`` is when the projection is made (a ``planned`` duty starts then); ``start`` is
    when the plan starts running (default ``now``), from which segment ``seconds`` place a
    ``reached`` crossing in time.

    ``regimes`` maps each regime name to its phases. A threshold on a regime that is not
    defined is an error, not a silent "never crossed".
    """
    checked = check_regimes(regimes)
    spent = dict(spent or {})
    moment = now or datetime.now(UTC)
    crossings = []
    for t in thresholds:
        if t.regime not in checked:
            raise ComputeError(
                f"threshold {t.id!r} is on unknown regime {t.regime!r}.",
                hint=f"Regimes are: {', '.join(checked) or '(none)'}.",
            )
        crossings.append(_cross(t, checked[t.regime], plan, spent, step, moment, start or moment))
    end = dict(spent)
    for seg in plan:
        end[seg.phase] = end.get(seg.phase, 0.0) + (seg.total or 0.0)
    return Projection(
        now=moment,
        spent={name: _regime_total(spent, phases) for name, phases in checked.items()},
        planned={name: _regime_total(end, phases) for name, phases in checked.items()},
        crossings=crossings,
    )


__all__ = ["Crossing", "PlanSegment", "Projection", "Threshold", "project"]
