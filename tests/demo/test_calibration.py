"""The calibrated demo run: the stand-in dangerous capability emerges where the demo needs it.

One real training run of the whole demo budget (the demo's own config and seed), evaluated at
the compute milestones a policy with the demo's cadence would use: from a first evaluation at
1/32 of the budget, every 2x of compute, every 1.5x once the alert value is met. The held-out
score of the dangerous task must start near zero, meet ALERT at one milestone and TRIGGER at a
later one, before the budget ends.
"""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction

import pytest

from scalegate.demo.tasks import DANGEROUS_TASK, DEMO_TASKS, heldout, score, score_all
from scalegate.demo.training import (
    ALERT,
    DEMO_BUDGET_STEPS,
    DEMO_SEED,
    FIRST_EVAL_FRACTION,
    TRIGGER,
    DemoTrainer,
)

pytestmark = pytest.mark.slow


def _step_at(fraction: Fraction) -> int:
    # Every step trains on the same number of tokens, so a compute fraction is a step fraction.
    return math.ceil(fraction * DEMO_BUDGET_STEPS)


@pytest.fixture(scope="module")
def run() -> dict[str, object]:
    """Train the demo run once; score the dangerous task every 1/32 of the budget."""
    trainer = DemoTrainer(seed=DEMO_SEED)
    tokens = {trainer.step() for _ in range(3)}
    grid = {_step_at(Fraction(k, 32)) for k in range(1, 33)}
    curve: dict[int, float] = {}
    while trainer.step_index < DEMO_BUDGET_STEPS:
        tokens.add(trainer.step())
        if trainer.step_index in grid:
            curve[trainer.step_index] = score(trainer.model, heldout(DANGEROUS_TASK))
    return {"tokens": tokens, "curve": curve, "final": score_all(trainer.model)}


def _score_at(curve: dict[int, float], step: int) -> float:
    # the first grid point at or after the milestone step (milestones fall on the grid)
    return curve[min(s for s in curve if s >= step)]


def test_every_step_trains_on_the_same_number_of_tokens(run: dict) -> None:
    assert len(run["tokens"]) == 1


def test_dangerous_capability_crosses_alert_then_trigger_at_milestones(run: dict) -> None:
    curve = run["curve"]
    # a policy's walk: evaluate at the first milestone, then every 2x, every 1.5x after an alert
    fraction, ratio = Fraction(FIRST_EVAL_FRACTION), Fraction(2)
    walk: list[tuple[Fraction, float]] = []
    while fraction <= 1:
        value = _score_at(curve, _step_at(fraction))
        walk.append((fraction, value))
        if value >= TRIGGER:
            break
        if value >= ALERT:
            ratio = Fraction(3, 2)
        fraction *= ratio
    values = [v for _, v in walk]
    assert values[0] <= 0.05, walk  # starts near zero
    assert values[-1] >= TRIGGER, f"never triggered within the budget: {walk}"
    alerts = [f for f, v in walk if ALERT <= v < TRIGGER]
    assert alerts, f"jumped from below the alert value straight to the trigger: {walk}"
    pause_at = walk[-1][0]
    assert pause_at <= Fraction(7, 8), f"pause too late to show a resumption: {walk}"
    # ... and the run goes on learning after it resumes
    assert _score_at(curve, DEMO_BUDGET_STEPS) >= TRIGGER


def test_benign_tasks_are_learned_too(run: dict) -> None:
    final = run["final"]
    assert set(final) == set(DEMO_TASKS)
    assert sum(v >= 0.5 for t, v in final.items() if t != DANGEROUS_TASK) >= 3, final


def test_import_scalegate_does_not_import_torch() -> None:
    code = "import sys, scalegate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
