"""The gate's compute measures: kept with the state's record list and extended as a run
is folded piece by piece, they must answer exactly as measuring the state afresh does
(the straightforward scans written out here), whatever the compute statements say:
going backwards, steps out of order, times out of order."""

from __future__ import annotations

import copy
import gc
import pickle
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gate_properties import POLICIES, _play, event

from scalegate.gate import decide, effective_counter, resumption
from scalegate.gate._measure import Measures, beyond, reached
from scalegate.ledger.statements import ComputePredicate, Ref, make_statement
from scalegate.policy import load_policy
from scalegate.state import LoggedStatement, Records, RunState, fold

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PHASES = ["pretraining", "fine-tuning", "rl", "evaluation", "synthetic-data"]


def _compute(index: int, step: int, flop: dict[str, float], hours: int) -> LoggedStatement:
    return LoggedStatement(
        ref=Ref(index=index, leaf_hash=f"{index:064x}"),
        statement=make_statement(ComputePredicate(
            run_id="r", step=step, tokens=1.0, flop_by_phase=flop,
            effective_flop=sum(flop.values()), method="test",
            at=T0 + timedelta(hours=hours))),
    )


class Naive:
    """The measures as the gate computed them before they were kept: every value from
    every statement at every call, every lookup a scan."""

    def __init__(self, policy: Any, state: RunState) -> None:
        self.records = state.compute
        self.totals = [policy.compute.totals(r.predicate.flop_by_phase) for r in self.records]
        regime, mult = policy.compute.effective.regime, policy.compute.effective.multiplier
        self.effective = [t.get(regime, 0.0) * mult for t in self.totals]
        self.steps = [r.predicate.step for r in self.records]

    def effective_at_step(self, step: int, fallback: float) -> float:
        if not self.records:
            return fallback
        best = [e for s, e in zip(self.steps, self.effective, strict=True) if s <= step]
        return best[-1] if best else 0.0

    def first_effective(self, line: float) -> int | None:
        return next((i for i, e in enumerate(self.effective) if reached(e, line)), None)

    def first_total(self, regime: str, line: float) -> int | None:
        return next((i for i, t in enumerate(self.totals) if reached(t.get(regime, 0.0), line)),
                    None)

    def max_total(self, regime: str) -> float:
        return max((t.get(regime, 0.0) for t in self.totals), default=0.0)

    def first_at_or_after(self, when: datetime) -> int | None:
        return next((i for i, r in enumerate(self.records) if r.predicate.at >= when), None)

    def trained_past(self, index: int, bound: float) -> int | None:
        return next((j for j in range(index + 1, len(self.effective))
                     if beyond(self.effective[j], bound)), None)


def _same(policy: Any, m: Measures, state: RunState, probes: list[float]) -> None:
    ref = Naive(policy, state)
    n = len(ref.records)
    assert len(m) == n
    assert [m.effective_of(i) for i in range(n)] == ref.effective
    assert m.current == (ref.effective[-1] if n else 0.0)
    assert m.current_totals() == (dict(ref.totals[-1]) if n else
                                  {r: 0.0 for r in policy.compute.regimes})
    for x in probes:
        assert m.first_effective(x) == ref.first_effective(x), x
        for regime in [*policy.compute.regimes, "no-such-regime"]:
            assert m.first_total(regime, x) == ref.first_total(regime, x), (regime, x)
        assert m.effective_at_step(int(x) % 40, -1.0) == ref.effective_at_step(int(x) % 40, -1.0)
        for i in range(n):
            assert m.trained_past(i, x) == ref.trained_past(i, x), (i, x)
    for regime in policy.compute.regimes:
        assert m.max_total(regime) == ref.max_total(regime)
    for h in range(-1, 42, 3):
        when = T0 + timedelta(hours=h)
        assert m.first_at_or_after(when) == ref.first_at_or_after(when)


# Values on both sides of, and exactly at, the tolerances the gate compares with.
flop_values = st.sampled_from([0.0, 1.0, 5e11, 1e12, 1e12 * (1 + 1e-9), 2e12, 2e12 * (1 - 1e-10),
                               4e12 * (1 - 1e-9), 4e12 * (1 - 2e-9), 4e12, 1e25, 1e300])
statement = st.tuples(
    st.integers(0, 40),  # step: may go back
    st.dictionaries(st.sampled_from(PHASES), flop_values, max_size=3),  # may go back
    st.integers(0, 40),  # hours: may go back
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy_name=st.sampled_from(["demo", "eu-ai-act", "anthropic-rsp-2.2", "ca-sb53"]),
    statements=st.lists(statement, max_size=12),
    cuts=st.lists(st.integers(0, 12), max_size=4),
    probes=st.lists(flop_values, min_size=1, max_size=4),
)
def test_kept_measures_answer_as_a_fresh_scan(
    policy_name: str, statements: list[tuple[int, dict[str, float], int]], cuts: list[int],
    probes: list[float],
) -> None:
    policy = load_policy(policy_name)
    entries = [_compute(i, s, f, h) for i, (s, f, h) in enumerate(statements)]
    state = fold([], run_id="r")
    earlier: list[tuple[Measures, RunState]] = []
    done = 0
    for cut in [*sorted(c for c in cuts if c <= len(entries)), len(entries)]:
        if cut < done:
            continue
        state = fold(entries[done:cut], run_id="r", into=state, extend=True)
        done = cut
        m = Measures(policy, state)
        _same(policy, m, state, probes)
        # Asked about the same list grown since, an earlier answer stays what it was.
        snapshot = fold(entries[:cut], run_id="r")
        earlier.append((m, snapshot))
    for m, snapshot in earlier:
        _same(policy, m, snapshot, probes)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(POLICIES),
    events=st.lists(event, max_size=14),
    start=st.sampled_from(["2023-04-01T00:00:00Z", "2026-01-01T00:00:00Z"]),
)
def test_deciding_on_a_run_folded_in_place_equals_deciding_afresh(
    policy: str, events: list[dict[str, Any]], start: str
) -> None:
    t = _play(policy, events, start)
    state = None
    for k, entry in enumerate(t.entries):
        state = fold([entry], run_id=t.run_id, into=state, extend=True)
        fresh = fold(t.entries[: k + 1], run_id=t.run_id)
        assert state == fresh
        now = entry.statement.predicate.at if hasattr(entry.statement.predicate, "at") else t.now
        assert decide(t.policy, state, now) == decide(t.policy, fresh, now)
        assert resumption(t.policy, state, now=now) == resumption(t.policy, fresh, now=now)


def test_effective_counter_counts_as_the_policy_does() -> None:
    values = [0.0, 1.0, 3.3e24, 1e25 / 3, 7e11, 1.7976931348623157e308]
    for name in ["demo", "eu-ai-act", "anthropic-rsp-2.2", "openai-pf-2", "gdm-fsf-1",
                 "ca-sb53", "fli-pause-2023"]:
        policy = load_policy(name)
        count = effective_counter(policy)
        for i in range(200):
            flop = {p: values[(i * 7 + j * 3) % len(values)] for j, p in enumerate(PHASES)
                    if (i >> j) & 1}
            assert count(flop) == policy.compute.effective_flop(flop), (name, flop)


def test_the_kept_measures_live_and_die_with_the_list() -> None:
    policy = load_policy("demo")
    entries = [_compute(i, i, {"pretraining": 1e12 * (i + 1)}, i) for i in range(5)]
    state = fold(entries[:3], run_id="r")
    assert type(state.compute) is Records and state.compute.derived is None
    decide(policy, state, T0)
    kept = state.compute.derived
    assert kept is not None
    grown = fold(entries[3:], run_id="r", into=state, extend=True)
    assert grown.compute is state.compute  # taken over, extended in place
    decide(policy, grown, T0)
    assert grown.compute.derived is kept  # the same values, extended
    copied = fold(entries[3:], run_id="r", into=state)  # into is used up: folded again
    assert copied.compute is not grown.compute and copied.compute.derived is None
    for other in (copy.copy(grown.compute), copy.deepcopy(grown.compute)):
        assert other == grown.compute and other.derived is None
    plain = Records([1, 2])
    plain.derived = kept
    again = pickle.loads(pickle.dumps(plain))
    assert again == [1, 2] and type(again) is Records and again.derived is None
    # No reference cycle: dropping the state frees the records at once.
    probe = weakref.ref(grown.compute[0])
    was = gc.isenabled()
    gc.disable()
    try:
        del state, grown, copied, other, kept, plain
        assert probe() is None
    finally:
        if was:
            gc.enable()


def test_a_state_built_by_hand_is_measured_afresh_each_time() -> None:
    policy = load_policy("demo")
    entries = [_compute(i, i, {"pretraining": 1e12 * (i + 1)}, i) for i in range(4)]
    folded = fold(entries, run_id="r")
    by_hand = RunState(run_id="r", compute=list(folded.compute), size=4)
    assert type(by_hand.compute) is list
    assert decide(policy, by_hand, T0) == decide(policy, folded, T0)
    wrong = RunState(run_id="r", compute=list(reversed(folded.compute)), size=4)
    _same(policy, Measures(policy, wrong), wrong, [1e12, 3e12])


@pytest.mark.parametrize("policy_name", ["demo", "eu-ai-act"])
def test_another_policy_on_the_same_list_is_measured_afresh(policy_name: str) -> None:
    demo, other = load_policy("demo"), load_policy(policy_name)
    entries = [_compute(i, i, {"pretraining": 1e24 * (i + 1), "rl": 1e23}, i) for i in range(4)]
    state = fold(entries, run_id="r")
    Measures(demo, state)
    _same(other, Measures(other, state), state, [1e24, 3e24, 4.5e24])
