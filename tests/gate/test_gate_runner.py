"""The scenario runner itself can fail: a wrong expectation is reported, not ignored."""

from __future__ import annotations

import pytest
from timeline_runner import run_scenario

BASE = [{"compute": {"pretraining": 1e12}}]


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        ({"expect": {"verdict": "continue"}}, "verdict evaluate"),
        ({"expect": {"rules": ["ceiling"]}}, "missing rule 'ceiling'"),
        ({"expect": {"no_rules": ["evaluation-due"]}}, "unexpected 'evaluation-due'"),
        ({"expect": {"next_eval_at_flop": 2e12}}, "next_eval_at_flop"),
        ({"expect": {"obligations": [{"id": "demo-notify"}]}}, "missing obligation"),
        ({"expect_resumption": {"may_resume": True}}, "may_resume False"),
    ],
)
def test_wrong_expectations_fail(expect: dict, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        run_scenario({"policy": "demo", "timeline": [*BASE, expect]})


def test_resume_without_quorum_is_refused_by_the_runner() -> None:
    timeline = [
        *BASE,
        {"eval": {"id": "cyber-demo-task", "value": 0.9}},
        {"pause": {}},
        {"resume": {}},
    ]
    with pytest.raises(AssertionError, match="resume refused"):
        run_scenario({"policy": "demo", "timeline": timeline})
