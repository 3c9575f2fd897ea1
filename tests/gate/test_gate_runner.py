"""The scenario runner itself can fail: a wrong expectation is reported, not ignored."""

from __future__ import annotations

import pytest
from timeline_runner import run_scenario

from scalegate.policy import load_policy

DEMO = load_policy("demo")
assert DEMO.evaluation is not None and DEMO.evaluation.first_at is not None
FIRST_AT = DEMO.evaluation.first_at
(NOTIFY,) = DEMO.compute.thresholds
# At the first milestone: an evaluation is due, and the notification line is not yet reached.
assert NOTIFY.flop > FIRST_AT
BASE = [{"compute": {"pretraining": FIRST_AT}}]


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        ({"expect": {"verdict": "continue"}}, "verdict evaluate"),
        ({"expect": {"rules": ["ceiling"]}}, "missing rule 'ceiling'"),
        ({"expect": {"no_rules": ["evaluation-due"]}}, "unexpected 'evaluation-due'"),
        ({"expect": {"next_eval_at_flop": 2 * FIRST_AT}}, "next_eval_at_flop"),
        ({"expect": {"obligations": [{"id": NOTIFY.id}]}}, "missing obligation"),
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
