"""Compute as the policy counts it, derived from the folded statements.

Regime totals and effective compute are recomputed from each ``compute`` statement's
FLOP by phase with the policy's own regimes and multiplier, so that a policy (not the
trainer) decides what counts. Milestones compare with a relative tolerance so that a
value written as "exactly 4x" in decimal counts as reached.

The per-statement values are kept with the state's list of ``compute`` records (see
:class:`~scalegate.state.Records`) and reused by the next gate call on it, which for a
run folded piece by piece with ``fold(..., extend=True)`` is the same list, grown: each
call then costs only the statements added since the last one, and "the first statement
past x" is a binary search over running maxima. A state's lists only ever grow that
way (states are immutable otherwise), which is what makes reusing them sound; anything
else (another list, another policy) is measured afresh.
"""

from __future__ import annotations

import bisect
import threading
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scalegate.ledger import (
    ComputePredicate,
    EvalPredicate,
    Reason,
    Ref,
)
from scalegate.policy import Policy
from scalegate.state import Recorded, Records, RunState

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


class _Series:
    """Derived values of one list of ``compute`` records under one policy, per record:
    effective compute, steps, times and (for the regimes asked about) regime totals, with
    running maxima so that "the first record reaching x" is a binary search. Kept on the
    list (:class:`~scalegate.state.Records`) and extended as it grows; never changed for
    the records it covers, so a :class:`Measures` made earlier stays valid."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.n = 0  # records covered
        self.last: Recorded[ComputePredicate] | None = None  # the n-th, to know the list
        self.effective = array("d")
        self.peak_effective = array("d")
        self.totals: dict[str, tuple[array[float], array[float]]] = {}  # values, maxima
        self.steps: list[int] = []
        self.peak_times: list[datetime] = []
        self.steps_sorted = True
        self.rising = True  # effective compute never goes down: trained_past can bisect
        self.irregular = False  # a NaN: maxima and bisection do not apply, scan instead

    def covers(self, policy: Policy, records: list[Recorded[ComputePredicate]]) -> bool:
        """Whether this series is of ``records`` as they were, grown at most."""
        return (self.policy is policy and len(records) >= self.n
                and (self.n == 0 or records[self.n - 1] is self.last))

    def extend(self, records: list[Recorded[ComputePredicate]]) -> None:
        n = self.n
        if len(records) == n:
            return
        effective_of = effective_counter(self.policy)
        totals_of = self.policy.compute.totals
        effective, steps, times = self.effective, self.steps, self.peak_times
        for r in records[n:]:
            p = r.predicate
            step, at = p.step, p.at
            e = effective_of(p.flop_by_phase)
            if effective and not e >= effective[-1]:
                self.rising = False
            self._push(effective, self.peak_effective, e)
            if steps and step < steps[-1]:
                self.steps_sorted = False
            steps.append(step)
            times.append(at if not times or at > times[-1] else times[-1])
            if self.totals:
                t = totals_of(p.flop_by_phase)
                for name, (values, peaks) in self.totals.items():
                    self._push(values, peaks, t[name])
        self.n, self.last = len(records), records[-1]

    def regime(self, records: list[Recorded[ComputePredicate]], name: str
               ) -> tuple[array[float], array[float]] | None:
        """The totals of regime ``name`` and their running maxima (``None``: no such regime)."""
        got = self.totals.get(name)
        if got is None and name in self.policy.compute.regimes:
            got = self.totals[name] = (array("d"), array("d"))
            totals_of = self.policy.compute.totals
            for r in records[: self.n]:
                self._push(*got, totals_of(r.predicate.flop_by_phase)[name])
        return got

    def _push(self, values: array[float], peaks: array[float], v: float) -> None:
        if v != v:  # NaN
            self.irregular = True
        values.append(v)
        # The running maximum as max() keeps it: a later value replaces it only if greater.
        peaks.append(v if not peaks or v > peaks[-1] else peaks[-1])


def effective_counter(policy: Policy) -> Callable[[Mapping[str, float]], float]:
    """``policy.compute.effective_flop`` as a function of FLOP by phase, with the regime
    looked up once: the same sum of the same values in the same order (so the same
    float) at a third of the cost, for callers that count every ``compute`` statement."""
    regime = policy.compute.regimes.get(policy.compute.effective.regime)
    if regime is None:  # unreachable for a validated policy
        return lambda flop_by_phase: 0.0
    include, zeros = tuple(regime.include), (0.0,) * len(regime.include)
    multiplier = policy.compute.effective.multiplier

    def effective(flop_by_phase: Mapping[str, float]) -> float:
        return float(sum(map(flop_by_phase.get, include, zeros))) * multiplier

    return effective


_LOCK = threading.Lock()  # decide() may run in several threads on one state


def _series(policy: Policy, records: list[Recorded[ComputePredicate]]) -> _Series:
    """The series of ``records``, extended to cover all of them: the one the list carries
    if it is still of this list and policy (a fold's :class:`~scalegate.state.Records`;
    a state folded with ``extend=True`` keeps it), else a new one."""
    with _LOCK:
        series = getattr(records, "derived", None)
        if not isinstance(series, _Series) or not series.covers(policy, records):
            series = _Series(policy)
            if isinstance(records, Records):
                records.derived = series
        series.extend(records)
        return series


def _first(peaks: array[float], n: int, line: float) -> int | None:
    """Index of the first of ``n`` values that reaches ``line`` (see :func:`reached`), by
    bisecting their running maxima ``peaks``: a value reaches the line exactly when the
    maximum so far first does, as ``reached`` only grows with the value."""
    i = bisect.bisect_right(peaks, 0.0, 0, n) if line <= 0 else bisect.bisect_left(
        peaks, line * (1 - TOLERANCE), 0, n)
    return i if i < n else None


class Measures:
    """Regime totals and effective compute per ``compute`` statement, and lookups on them.

    The per-record values are computed once per list of records (see :class:`_Series`):
    a gate asked again and again about a growing run costs only the new records.
    """

    def __init__(self, policy: Policy, state: RunState) -> None:
        self.policy = policy
        self.state = state
        self.records = state.compute
        self.n = len(self.records)
        self._s = _series(policy, self.records) if self.n else None

    def __len__(self) -> int:
        return self.n

    def effective_of(self, index: int) -> float:
        """Effective compute of the ``compute`` statement at ``index``."""
        if not 0 <= index < self.n or self._s is None:
            raise IndexError(index)
        return self._s.effective[index]

    @property
    def current(self) -> float:
        """Effective compute of the latest ``compute`` statement (0 before any)."""
        return self._s.effective[self.n - 1] if self._s is not None else 0.0

    def current_totals(self) -> dict[str, float]:
        """Each regime's latest total."""
        if self.n:
            return self.policy.compute.totals(self.records[self.n - 1].predicate.flop_by_phase)
        return {name: 0.0 for name in self.policy.compute.regimes}

    def max_total(self, regime: str) -> float:
        """The highest ``regime`` total any ``compute`` statement recorded (0 before any)."""
        got = self._regime(regime)
        if got is None:
            return 0.0
        values, peaks = got
        if self._s is not None and self._s.irregular:  # max() over a NaN: its own order
            return max(values[: self.n])
        return peaks[self.n - 1]

    def _regime(self, name: str) -> tuple[array[float], array[float]] | None:
        if self._s is None:
            return None
        with _LOCK:
            return self._s.regime(self.records, name)

    def effective_at_step(self, step: int, fallback: float) -> float:
        """Effective compute of the latest ``compute`` statement at or before ``step``."""
        s = self._s
        if s is None:
            return fallback
        if s.steps_sorted:
            i = bisect.bisect_right(s.steps, step, 0, self.n) - 1
            return s.effective[i] if i >= 0 else 0.0
        best = [e for s_, e in zip(s.steps[: self.n], s.effective, strict=False) if s_ <= step]
        return best[-1] if best else 0.0

    def eval_level(self, record: Recorded[EvalPredicate]) -> float:
        """The effective compute of the checkpoint an evaluation measured."""
        return self.effective_at_step(record.predicate.step, record.predicate.effective_flop)

    def first_effective(self, line: float) -> int | None:
        """Index of the first ``compute`` statement whose effective compute reaches ``line``."""
        s = self._s
        if s is None:
            return None
        if s.irregular:
            return next((i for i, e in enumerate(s.effective[: self.n]) if reached(e, line)),
                        None)
        return _first(s.peak_effective, self.n, line)

    def first_total(self, regime: str, line: float) -> int | None:
        """Index of the first statement whose ``regime`` total reaches ``line``."""
        got = self._regime(regime)
        if got is None:  # no statement yet, or a regime the policy does not define (0)
            return 0 if self.n and reached(0.0, line) else None
        values, peaks = got
        if self._s is not None and self._s.irregular:
            return next((i for i, v in enumerate(values[: self.n]) if reached(v, line)), None)
        return _first(peaks, self.n, line)

    def first_at_or_after(self, when: datetime) -> int | None:
        """Index of the first statement recorded at or after ``when``."""
        s = self._s
        if s is None:
            return None
        i = bisect.bisect_left(s.peak_times, when, 0, self.n)
        return i if i < self.n else None

    def trained_past(self, index: int, bound: float) -> int | None:
        """Index of the first statement after ``index`` with effective compute above ``bound``."""
        s = self._s
        if s is None:
            return None
        if s.rising and not s.irregular:
            j = max(index + 1, bisect.bisect_right(s.effective, bound * (1 + TOLERANCE), 0,
                                                   self.n))
            return j if j < self.n else None
        return next(
            (j for j in range(index + 1, self.n) if beyond(s.effective[j], bound)), None
        )

    def ref(self, index: int) -> Ref:
        """The ref of the ``compute`` statement at ``index``."""
        return self.records[index].ref
