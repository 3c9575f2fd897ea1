"""Witnessed time: the interval in which each entry was logged, against a brute-force
reading of the same cosigned checkpoints, and the backdating check's short path against
the plain rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from scalegate.audit._times import (
    CLOCK_SKEW,
    WitnessedCheckpoint,
    WitnessedTimes,
    time_findings,
    witnessed,
)
from scalegate.ledger.statements import ComputePredicate, Ref
from scalegate.state import Recorded

T0 = datetime(2026, 1, 1, tzinfo=UTC)
checkpoints = st.lists(
    st.builds(lambda size, a, b: WitnessedCheckpoint(size, T0 + timedelta(hours=a),
                                                      T0 + timedelta(hours=b)),
              st.integers(1, 60), st.integers(0, 500), st.integers(0, 500)),
    max_size=8)


@given(checkpoints, st.integers(0, 70))
def test_bounds_are_what_the_checkpoints_say(cps: list[WitnessedCheckpoint], index: int) -> None:
    earliest, latest = WitnessedTimes(cps).bounds(index)
    larger = [c.existed_by for c in cps if c.size > index]
    covering = [c.not_before for c in cps if c.size <= index]
    assert latest == (min(larger) if larger else None)
    assert earliest == (max(covering) if covering else None)


def test_a_quorum_of_witnesses_moves_a_bound() -> None:
    ts = [int((T0 + timedelta(hours=h)).timestamp()) for h in (5, 1, 9)]
    one = witnessed(10, ts, 1)
    two = witnessed(10, ts, 2)
    assert one is not None and two is not None
    assert (one.existed_by, one.not_before) == (T0 + timedelta(hours=1), T0 + timedelta(hours=9))
    assert (two.existed_by, two.not_before) == (T0 + timedelta(hours=5), T0 + timedelta(hours=5))
    assert witnessed(10, ts, 4) is None


def _compute(index: int, at: datetime) -> Recorded[ComputePredicate]:
    p = ComputePredicate(run_id="r", step=index, tokens=0.0, flop_by_phase={}, effective_flop=0.0,
                         method="declared", at=at)
    return Recorded(ref=Ref(index=index, leaf_hash="0" * 64), predicate=p)


@settings(max_examples=60)
@given(checkpoints, st.lists(st.tuples(st.integers(0, 70), st.integers(0, 500)), max_size=30))
def test_backdated_is_the_plain_rule(cps: list[WitnessedCheckpoint],
                                     stamps: list[tuple[int, int]]) -> None:
    times = WitnessedTimes(cps)
    entries = [_compute(i, T0 + timedelta(hours=h)) for i, h in sorted(set(stamps))]
    flagged = {f[2][0].index for f in time_findings(entries, times) if f[0] == "backdated"}
    expected = set()
    for e in entries:
        earliest, _ = times.bounds(e.ref.index)
        if earliest is not None and e.predicate.at < earliest - CLOCK_SKEW:
            expected.add(e.ref.index)
    assert flagged == expected


# Time-stamps: checkpoints with an "existed by" time and no "not before".
mixed = st.lists(
    st.builds(lambda size, a, b: WitnessedCheckpoint(
        size, T0 + timedelta(hours=a), None if b is None else T0 + timedelta(hours=b)),
        st.integers(1, 60), st.integers(0, 500), st.none() | st.integers(0, 500)),
    max_size=8)


@given(mixed, st.integers(0, 70))
def test_time_stamps_bound_entries_from_above_only(cps: list[WitnessedCheckpoint],
                                                   index: int) -> None:
    earliest, latest = WitnessedTimes(cps).bounds(index)
    larger = [c.existed_by for c in cps if c.size > index]
    covering = [c.not_before for c in cps if c.size <= index and c.not_before is not None]
    assert latest == (min(larger) if larger else None)
    assert earliest == (max(covering) if covering else None)


@settings(max_examples=60)
@given(mixed, st.lists(st.tuples(st.integers(0, 70), st.integers(0, 500)), max_size=30))
def test_backdated_ignores_time_stamps(cps: list[WitnessedCheckpoint],
                                       stamps: list[tuple[int, int]]) -> None:
    entries = [_compute(i, T0 + timedelta(hours=h)) for i, h in sorted(set(stamps))]
    witnessed_only = WitnessedTimes(c for c in cps if c.not_before is not None)
    assert time_findings(entries, WitnessedTimes(cps)) == time_findings(entries, witnessed_only)
