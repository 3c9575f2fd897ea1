"""Table-driven scenarios: each file in scenarios/ is a policy, a timeline and expectations."""

from __future__ import annotations

from pathlib import Path

import pytest
from timeline_runner import load_scenario, run_scenario

from scalegate.gate import OBLIGATION_KINDS, RULE_KINDS, rule_kind
from scalegate.policy import bundled_policies

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))


def test_there_are_at_least_forty_scenarios() -> None:
    assert len(SCENARIOS) >= 40


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.get("name"), f"{path.name}: give the scenario a name saying what it shows"
    checks = sum(1 for e in scenario["timeline"] if "expect" in e or "expect_resumption" in e)
    assert checks, f"{path.name} checks nothing"
    run_scenario(scenario, path.stem)


def test_scenarios_cover_every_rule_and_every_bundled_policy() -> None:
    rules: set[str] = set()
    obligations: set[str] = set()
    policies: set[str] = set()
    for path in SCENARIOS:
        scenario = load_scenario(path)
        if isinstance(scenario["policy"], str):
            policies.add(scenario["policy"])
        timeline = run_scenario(scenario, path.stem)
        for d in timeline.decisions:
            rules.update(rule_kind(r) for r in d.rules)
            obligations.update(rule_kind(o.rule) for o in d.obligations)
    assert set(RULE_KINDS) <= rules, f"no scenario exercises {set(RULE_KINDS) - rules}"
    assert set(OBLIGATION_KINDS) <= obligations, f"uncovered: {set(OBLIGATION_KINDS) - obligations}"
    assert set(bundled_policies()) <= policies, f"untested: {set(bundled_policies()) - policies}"
