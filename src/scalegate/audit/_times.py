"""Time from outside the lab: when each entry was logged, as the witnesses bound it.

Every time a statement carries (its ``at``) and every ``appended_at`` the log stores is
the lab's own claim. A witness's cosignature (C2SP ``tlog-cosignature``) carries the
witness's clock: a checkpoint of size n cosigned at T shows that entries below n existed
by T, and that entries from n on were not yet in the tree the witness was shown at T.
So each entry i gets an interval of when it was logged:

- ``latest``: the earliest time a witnessed checkpoint larger than i was cosigned;
- ``earliest``: the latest time a witnessed checkpoint not larger than i was cosigned.

With several trusted witnesses a checkpoint counts at the time ``quorum`` of them agree
on: the quorum-th earliest cosignature for "existed by", the quorum-th latest for "not
yet logged" (one witness's clock alone does not move a bound against the lab).

**Stale checkpoints.** "Not yet logged at T" holds only as far as the witness saw the
log: a log that shows a witness an old checkpoint while it already holds later entries
makes those entries look logged later than they were. That can only make the log look
late (a deadline missed, a statement flagged as backdated) — never earlier — so a lab
gains nothing by it; to backdate, it would need a witness to cosign, at an earlier time,
a checkpoint that contains the entry, which the witness's own clock and its consistency
checks refuse.

**Time-stamping authorities.** An RFC 3161 token over a checkpoint of size n, from an
authority the auditor trusts, shows that entries below n existed by the token's time: it
counts as a checkpoint with an "existed by" time and no "not before" (a TSA is not shown
the log, so it proves existence, never absence). It can make a deadline met by outside
time; it can never show an entry logged late, nor a statement backdated.

The auditor judges by these intervals: a statement that claims a time before its entry's
``earliest`` (beyond the clock skew) is ``backdated``; a deadline is met when a witness
shows the entry was logged by it, missed when a witness shows it was not, and otherwise
met only on the log operator's word (``appended_at``), which the report says apart.
A statement may also never claim a time before a statement it cites (``time-order``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from scalegate.ledger import (
    CLOCK_SKEW,
    ApprovalPredicate,
    AttestationPredicate,
    CheckpointPredicate,
    ComputePredicate,
    DecisionPredicate,
    EvalPredicate,
    PausePredicate,
    Predicate,
    Ref,
    ResumePredicate,
    RunPredicate,
)


class _HasRef(Protocol):
    @property
    def ref(self) -> Ref: ...

    @property
    def predicate(self) -> Predicate: ...


@dataclass(frozen=True)
class WitnessedCheckpoint:
    """A checkpoint a quorum of trusted witnesses cosigned: its size, the time they agree
    the entries below it existed by, and the time they agree it was the whole log
    (``None`` for a time-stamp, which shows existence only)."""

    size: int
    existed_by: datetime
    not_before: datetime | None = None


def witnessed(size: int, timestamps: Sequence[int], quorum: int) -> WitnessedCheckpoint | None:
    """The checkpoint of ``size`` cosigned at ``timestamps`` (seconds), if a quorum did."""
    k = max(1, quorum)
    if len(timestamps) < k:
        return None
    ts = sorted(timestamps)
    return WitnessedCheckpoint(size, _utc(ts[k - 1]), _utc(ts[-k]))


class WitnessedTimes:
    """Per entry index, the interval in which the witnesses say it was logged."""

    def __init__(self, checkpoints: Iterable[WitnessedCheckpoint]) -> None:
        by_size: dict[int, WitnessedCheckpoint] = {}
        for c in checkpoints:  # one checkpoint per size: the tightest times
            old = by_size.get(c.size)
            by_size[c.size] = c if old is None else WitnessedCheckpoint(
                c.size, min(old.existed_by, c.existed_by), _latest(old.not_before, c.not_before))
        ordered = sorted(by_size.values(), key=lambda c: c.size)
        self.checkpoints = ordered
        self._sizes = [c.size for c in ordered]
        # latest(i): the earliest existed_by among checkpoints larger than i (suffix minima)
        self._by: list[datetime] = []
        low: datetime | None = None
        for c in reversed(ordered):
            low = c.existed_by if low is None or c.existed_by < low else low
            self._by.append(low)
        self._by.reverse()
        # earliest(i): the latest not_before among checkpoints of size <= i (prefix maxima)
        self._after: list[datetime | None] = []
        high: datetime | None = None
        for c in ordered:
            high = _latest(high, c.not_before)
            self._after.append(high)

    def __bool__(self) -> bool:
        return bool(self.checkpoints)

    def segments(self) -> list[tuple[int, datetime]]:
        """``(size, limit)`` per witnessed size, ascending: entries from that size on (to the
        next) may claim no time before ``limit`` (their earliest log time less the skew)."""
        return [(c.size, after - CLOCK_SKEW) for c, after in zip(self.checkpoints,
                                                                   self._after, strict=True)
                if after is not None]

    def bounds(self, index: int) -> tuple[datetime | None, datetime | None]:
        """``(earliest, latest)`` time entry ``index`` was logged (``None``: unbounded)."""
        j = bisect.bisect_right(self._sizes, index)  # checkpoints[j:] are larger than index
        earliest = self._after[j - 1] if j > 0 else None
        latest = self._by[j] if j < len(self._by) else None
        return earliest, latest


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def claimed_time(p: Predicate) -> datetime | None:
    """The time a statement says it was made at (the one the gate judges it by)."""
    if isinstance(p, ComputePredicate | CheckpointPredicate | EvalPredicate | DecisionPredicate
                  | PausePredicate | ApprovalPredicate | ResumePredicate):
        return p.at
    if isinstance(p, AttestationPredicate):
        return p.valid_from
    if isinstance(p, RunPredicate):
        return p.started_at
    return None


def cited(p: Predicate) -> list[Ref]:
    """The statements ``p`` cites directly (its own fields, not its reasons' evidence)."""
    if isinstance(p, PausePredicate):
        return [p.decision, p.checkpoint]
    if isinstance(p, ResumePredicate):
        return [p.pause, *p.approvals, p.decision, p.checkpoint]
    if isinstance(p, ApprovalPredicate):
        return [p.pause]
    if isinstance(p, EvalPredicate):
        return [p.checkpoint] if p.checkpoint is not None else []
    return []




_CLAIMED: dict[type, str] = {
    ComputePredicate: "at", CheckpointPredicate: "at", EvalPredicate: "at",
    DecisionPredicate: "at", PausePredicate: "at", ApprovalPredicate: "at",
    ResumePredicate: "at", AttestationPredicate: "valid_from", RunPredicate: "started_at",
}
_CITING = (PausePredicate, ResumePredicate, ApprovalPredicate, EvalPredicate)
_CITED = (DecisionPredicate, CheckpointPredicate, PausePredicate, ApprovalPredicate)

Finding = tuple[str, str, list[Ref]]


def time_findings(entries: Iterable[_HasRef], times: WitnessedTimes | None) -> list[Finding]:
    """``backdated`` statements (a claimed time before the witnesses allow) and ``time-order``
    ones (a claimed time before a statement cited), as ``(kind, message, refs)``. Entries
    come in log order."""
    return TimeCheck().findings(list(entries), times)


class TimeCheck:
    """:func:`time_findings` of a list of entries that only grows (a run's, audit after
    audit): an entry is judged once, again only if the witnessed limits that apply to it
    changed. This runs once per entry of the log, so compute statements (most of a log)
    take a short path."""

    def __init__(self) -> None:
        self.n = 0
        self.limits: list[tuple[int, datetime]] = []
        self.backdated: list[Finding] = []
        self.targets: dict[int, tuple[datetime, str]] = {}
        self.citing: list[tuple[_HasRef, datetime]] = []

    def findings(self, entries: Sequence[_HasRef], times: WitnessedTimes | None
                 ) -> list[Finding]:
        """The findings over ``entries`` (which extend those of the last call)."""
        limits = times.segments() if times else []
        if self.n > len(entries) or (self.n and not self._same(
                limits, entries[self.n - 1].ref.index)):
            self.__init__()  # type: ignore[misc]
        self._take(entries[self.n:], limits)
        self.n, self.limits = len(entries), limits
        out = list(self.backdated)
        for e, claimed in self.citing:
            for ref in cited(e.predicate):
                target = self.targets.get(ref.index)
                if target is not None and claimed < target[0] - CLOCK_SKEW:
                    out.append(("time-order", f"entry #{e.ref.index} ({e.predicate.KIND}) is "
                                f"dated {_iso(claimed)}, before the {target[1]} #{ref.index} "
                                f"it cites ({_iso(target[0])})", [e.ref, ref]))
        return out

    def _same(self, limits: list[tuple[int, datetime]], last: int) -> bool:
        """Whether the limits that apply up to entry ``last`` are those judged by."""
        return [x for x in limits if x[0] <= last] == [x for x in self.limits if x[0] <= last]

    def _take(self, entries: Sequence[_HasRef], limits: list[tuple[int, datetime]]) -> None:
        out, targets, citing = self.backdated, self.targets, self.citing
        start, end, limit = 0, -1, None  # entries in [start, end) may claim no time before it
        claimed_of = _CLAIMED.get
        for e in entries:
            p, index = e.predicate, e.ref.index
            if not start <= index < end:
                start, end, limit = _segment(limits, index)
            if type(p) is ComputePredicate:
                if limit is not None and p.at < limit:
                    out.append(_backdated(e, p.at, limit))
                continue
            attr = claimed_of(type(p))
            if attr is None:
                continue
            claimed: datetime = getattr(p, attr)
            if limit is not None and claimed < limit:
                out.append(_backdated(e, claimed, limit))
            if isinstance(p, _CITED):
                targets[index] = (claimed, p.KIND)
            if isinstance(p, _CITING):
                citing.append((e, claimed))


def _segment(limits: list[tuple[int, datetime]], index: int
             ) -> tuple[int, int, datetime | None]:
    """The stretch ``[start, end)`` of indices holding ``index``, and its limit."""
    j = bisect.bisect_right(limits, index, key=lambda x: x[0])
    end = limits[j][0] if j < len(limits) else 1 << 62
    if j == 0:
        return 0, end, None
    return limits[j - 1][0], end, limits[j - 1][1]


def _backdated(e: _HasRef, claimed: datetime, limit: datetime) -> Finding:
    earliest = limit + CLOCK_SKEW
    return ("backdated", f"entry #{e.ref.index} ({e.predicate.KIND}) says it was made at "
            f"{_iso(claimed)}, but a witness cosigned at {_iso(earliest)} a checkpoint that "
            "did not yet contain it: it was logged after that", [e.ref])


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


__all__ = [
    "CLOCK_SKEW",
    "TimeCheck",
    "WitnessedCheckpoint",
    "WitnessedTimes",
    "cited",
    "claimed_time",
    "time_findings",
    "witnessed",
]
