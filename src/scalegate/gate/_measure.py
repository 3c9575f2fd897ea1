"""Compute as the policy counts it, derived from the folded statements.

Regime totals and effective compute are recomputed from each ``compute`` statement's
FLOP by phase with the policy's own regimes and multiplier, so that a policy (not the
trainer) decides what counts. Milestones compare with a relative tolerance so that a
value written as "exactly 4x" in decimal counts as reached.

The per-statement values are kept between gate calls for as long as the state's list
of ``compute`` records is the same list (a run folded piece by piece with
``fold(..., extend=True)``): each call then costs only the statements added since the
last one, and "the first statement past x" is a binary search over running maxima. A
state's lists are never changed otherwise (states are immutable), which is what makes
reusing them sound; anything else (another list, another policy) is measured afresh.
"""

from __future__ import annotations

import bisect
import threading
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scalegate.ledger.statements import ComputePredicate, EvalPredicate, Reason, Ref
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


class _Series:
    """Derived values of one list of ``compute`` records under one policy, per record:
    effective compute, steps, times and (for the regimes asked about) regime totals, with
    running maxima so that "the first record reaching x" is a binary search. Built once
    and extended as the list grows (a state folded with ``extend=True`` keeps its lists);
    never changed for the records it covers, so a :class:`Measures` made earlier stays
    valid."""

    def __init__(self, policy: Policy, records: list[Recorded[ComputePredicate]]) -> None:
        self.policy = policy
        self.records = records  # held, so that its id names it while cached
        self.n = 0
        self.last: Recorded[ComputePredicate] | None = None
        self.effective = array("d")
        self.peak_effective = array("d")
        self.totals: dict[str, tuple[array[float], array[float]]] = {}  # values, maxima
        self.steps: list[int] = []
        self.peak_times: list[datetime] = []
        self.steps_sorted = True
        self.rising = True  # effective compute never goes down: trained_past can bisect
        self.irregular = False  # a NaN: maxima and bisection do not apply, scan instead

    def covers(self, policy: Policy, records: list[Recorded[ComputePredicate]]) -> bool:
        """Whether this series belongs to ``records`` (the same list, grown at most)."""
        return (self.policy is policy and self.records is records and len(records) >= self.n
                and (self.n == 0 or records[self.n - 1] is self.last))

    def extend(self) -> None:
        records, n = self.records, self.n
        if len(records) == n:
            return
        effective_of = self.policy.compute.effective_flop  # = totals()[regime] * multiplier
        totals_of = self.policy.compute.totals
        effective, steps, times = self.effective, self.steps, self.peak_times
        for r in records[n:]:
            p = r.predicate
            e = effective_of(p.flop_by_phase)
            if effective and not e >= effective[-1]:
                self.rising = False
            self._push(effective, self.peak_effective, e)
            if steps and p.step < steps[-1]:
                self.steps_sorted = False
            steps.append(p.step)
            times.append(p.at if not times or p.at > times[-1] else times[-1])
            if self.totals:
                t = totals_of(p.flop_by_phase)
                for name, (values, peaks) in self.totals.items():
                    self._push(values, peaks, t[name])
        self.n, self.last = len(records), records[-1]

    def regime(self, name: str) -> tuple[array[float], array[float]] | None:
        """The totals of regime ``name`` and their running maxima (``None``: no such regime)."""
        got = self.totals.get(name)
        if got is None and name in self.policy.compute.regimes:
            got = self.totals[name] = (array("d"), array("d"))
            totals_of = self.policy.compute.totals
            for r in self.records[: self.n]:
                self._push(*got, totals_of(r.predicate.flop_by_phase)[name])
        return got

    def _push(self, values: array[float], peaks: array[float], v: float) -> None:
        if v != v:  # NaN
            self.irregular = True
        values.append(v)
        # The running maximum as max() keeps it: a later value replaces it only if greater.
        peaks.append(v if not peaks or v > peaks[-1] else peaks[-1])


_SERIES: dict[int, _Series] = {}  # by id of the records list (held by the series)
_SERIES_KEPT = 2
_LOCK = threading.Lock()


def _series(policy: Policy, records: list[Recorded[ComputePredicate]]) -> _Series:
    """The series for ``records``, extended to cover all of them: reused when the same list
    was measured before (the states of one run folded with ``extend=True`` share it)."""
    with _LOCK:
        series = _SERIES.get(id(records))
        if series is None or not series.covers(policy, records):
            series = _Series(policy, records)
            _SERIES.pop(id(records), None)
            while len(_SERIES) >= _SERIES_KEPT:
                del _SERIES[next(iter(_SERIES))]
            _SERIES[id(records)] = series
        series.extend()
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
            return self._s.regime(name)

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
