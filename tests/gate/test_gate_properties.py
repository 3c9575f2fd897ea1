"""Properties of the gate: total (never raises), deterministic, verdict = strongest reason,
and the fold/decision is the same whether replayed at once or step by step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from timeline_runner import run_scenario

from scalegate.gate import RULE_KINDS, decide, resumption, rule_kind
from scalegate.state import fold

KEYS = {"k/rso": ["rso", "ceo"], "k/ciso": ["ciso"], "k/board": ["board"], "k/x": ["researcher"]}
SAFEGUARDS = [
    "security-level-demo",
    "asl3-security",
    "asl3-deployment",
    "high-security-controls",
    "critical-standard-specified",
    "security-level-2",
]
EVALS = [
    "cyber-demo-task",
    "cbrn-uplift",
    "swe-2-8h-tasks",
    "cyber-zero-day",
    "bio-threat-creation",
    "autonomy-early-warning",
    "anything",
]

flops = st.sampled_from([0, 5e11, 1e12, 2e12, 1e13, 1e24, 1e25, 2.1e25, 4e25, 1e26, 1e27])
event = st.one_of(
    st.builds(
        lambda f, p: {"compute": {p: f}},
        flops,
        st.sampled_from(["pretraining", "fine-tuning", "rl", "evaluation"]),
    ),
    st.builds(
        lambda e, v, s: {"eval": {"id": e, "value": v, "status": s}},
        st.sampled_from(EVALS),
        st.floats(0, 2.5),
        st.sampled_from(["success", "success", "failed"]),
    ),
    st.builds(
        lambda s, k, d: {"attestation": {"safeguard": s, "by": k, **d}},
        st.sampled_from(SAFEGUARDS),
        st.sampled_from(list(KEYS)),
        st.sampled_from([{}, {"valid_until": "2026-01-02T00:00:00Z"}, {"scope": "run"}]),
    ),
    st.just({"decide": {}}),
    st.just({"pause": {}}),
    st.builds(
        lambda k, r, c: {"approval": {"by": k, "role": r, **c}},
        st.sampled_from(list(KEYS)),
        st.sampled_from(["rso", "board", "ceo", "ciso", "sag-chair"]),
        st.sampled_from([{}, {"ceiling_x": 2}, {"ceiling_x": 0.5}]),
    ),
    st.just({"resume": {"force": True}}),
    st.builds(lambda w: {"wait": w}, st.sampled_from(["1d", "40d", "200d", "400d"])),
)
POLICIES = ["demo", "anthropic-rsp-2.2", "openai-pf-2", "gdm-fsf-1", "eu-ai-act", "fli-pause-2023"]


def _play(policy: str, events: list[dict[str, Any]], start: str) -> Any:
    timeline: list[dict[str, Any]] = []
    paused = False
    for e in events:
        # The runner's pause/approval/resume need a pause to act on; keep the sequence meaningful.
        if ("approval" in e or "resume" in e) and not paused:
            continue
        if "pause" in e:
            paused = True
        if "resume" in e:
            paused = False
        timeline.append(e)
    scenario = {
        "policy": policy,
        "keys": KEYS,
        "start": start,
        "timeline": timeline,
        "run": {"planned_flop": 2e25},
    }
    return run_scenario(scenario, "property")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(POLICIES),
    events=st.lists(event, max_size=14),
    start=st.sampled_from(["2023-04-01T00:00:00Z", "2026-01-01T00:00:00Z"]),
    later=st.integers(0, 800),
)
def test_decide_is_total_deterministic_and_replayable(
    policy: str, events: list[dict[str, Any]], start: str, later: int
) -> None:
    t = _play(policy, events, start)
    now = t.now + timedelta(days=later)
    state = t.state()
    d1 = decide(t.policy, state, now)
    d2 = decide(t.policy, fold(list(t.entries), run_id=t.run_id), now)
    assert d1 == d2
    # Replaying entry by entry gives the same state as folding them all at once.
    step = None
    for entry in t.entries:
        step = fold([entry], run_id=t.run_id, into=step)
    assert step == state
    assert (d1.verdict == "continue") == (not d1.reasons)
    assert all(rule_kind(r) in RULE_KINDS for r in d1.rules)
    if d1.verdict == "pause":
        assert any(
            rule_kind(r)
            in {
                "paused",
                "ceiling",
                "compute-threshold",
                "evaluation-missing",
                "safeguard-missing",
                "safeguard-expired",
            }
            for r in d1.rules
        )
    assert d1.to_predicate().verdict == d1.verdict
    res = resumption(t.policy, state, now=now)
    assert res.may_resume == (not res.missing)
    if state.active_pause is not None:
        assert d1.verdict == "pause" and "paused" in d1.rules
        assert res.checkpoint == state.active_pause.predicate.checkpoint


@pytest.mark.parametrize("naive", [True, False])
def test_now_without_timezone_is_utc(naive: bool) -> None:
    t = run_scenario({"policy": "demo", "timeline": [{"compute": {"pretraining": 1e12}}]})
    now = datetime(2026, 3, 1) if naive else datetime(2026, 3, 1, tzinfo=UTC)
    assert decide(t.policy, t.state(), now).at == datetime(2026, 3, 1, tzinfo=UTC)


def test_far_future_does_not_overflow() -> None:
    t = run_scenario(
        {"policy": "anthropic-rsp-2.2", "timeline": [{"compute": {"pretraining": 1e25}}]}
    )
    d = decide(t.policy, t.state(), datetime(9999, 12, 31, 23, 0, tzinfo=UTC))
    assert d.verdict == "evaluate"
