"""ComputeAccount and projections, with plain regimes and with the bundled policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scalegate.compute import (
    PHASES,
    ComputeAccount,
    PlanSegment,
    StepFlop,
    Threshold,
    format_flop,
    project,
    reconcile,
)
from scalegate.compute.phases import Phase
from scalegate.errors import ComputeError

EU_LIKE = {"eu": ["pretraining", "fine-tuning", "rl", "synthetic-data", "merged-weights"]}
NOW = datetime(2025, 9, 1, tzinfo=UTC)


def test_phases_are_the_canonical_eleven() -> None:
    assert PHASES == (
        "pretraining", "fine-tuning", "rl", "synthetic-data", "synthetic-data-public",
        "merged-weights", "recomputation", "evaluation", "reward-model",
        "distillation-teacher", "exploratory",
    )
    assert Phase.__args__ == PHASES  # type: ignore[attr-defined]


def test_totals_by_regime_leave_out_excluded_phases() -> None:
    acc = ComputeAccount(EU_LIKE | {"all": list(PHASES)}, multiplier=2.0)
    acc.add(6e24, "pretraining", tokens=1e12, steps=1000)
    acc.add(1e24, "fine-tuning")
    acc.add(5e23, "evaluation")
    acc.add(2e23, "synthetic-data-public")
    acc.add(3e23, "recomputation")
    assert acc.total("eu") == pytest.approx(7e24)
    assert acc.total("all") == pytest.approx(7e24 + 1e24 * 0 + 5e23 + 2e23 + 3e23)
    assert acc.total() == acc.total("all")
    assert acc.totals() == {"eu": pytest.approx(7e24), "all": pytest.approx(8e24)}
    assert acc.effective() == pytest.approx(2 * 7e24)  # first regime by default
    assert acc.tokens == 1e12 and acc.steps == 1000
    assert acc.report("eu") == "7.0e24 FLOP (measured)"


def test_add_step_files_recomputation_apart() -> None:
    acc = ComputeAccount(EU_LIKE)
    step = StepFlop(total=130.0, forward=40.0, backward=80.0, recomputation=10.0)
    acc.add_step(step, steps=10, tokens=640)
    assert acc.by_phase() == {"pretraining": 1200.0, "recomputation": 100.0}
    assert acc.total("eu") == 1200.0
    assert acc.total() == 1300.0
    assert acc.steps == 10 and acc.tokens == 640
    assert step.by_phase("fine-tuning") == {"fine-tuning": 120.0, "recomputation": 10.0}


def test_bad_phases_regimes_and_values() -> None:
    with pytest.raises(ComputeError, match=r"unknown phase.*'pre-training'"):
        ComputeAccount({"x": ["pre-training"]})
    acc = ComputeAccount(EU_LIKE)
    with pytest.raises(ComputeError, match="unknown phase 'training'"):
        acc.add(1.0, "training")
    with pytest.raises(ComputeError, match="finite number"):
        acc.add(-1.0)
    with pytest.raises(ComputeError, match="finite number"):
        acc.add(float("nan"))
    with pytest.raises(ComputeError, match="unknown regime 'us'"):
        acc.total("us")
    with pytest.raises(ComputeError, match="multiplier"):
        ComputeAccount(EU_LIKE, multiplier=0)
    with pytest.raises(ComputeError, match="unknown regime"):
        ComputeAccount(EU_LIKE, effective_regime="nope")


def test_methods_are_kept_apart_and_reconciled() -> None:
    acc = ComputeAccount(EU_LIKE)
    acc.add(1.00e24, method="measured")
    acc.add(1.10e24, method="6ND")
    acc.add(0.95e24, method="hardware")
    assert acc.methods == ["measured", "6ND", "hardware"]
    assert acc.total("eu") == 1.00e24  # the most precise method
    assert acc.total("eu", method="6ND") == 1.10e24
    rec = acc.reconcile("eu")
    assert rec.method == "measured" and not rec.flagged
    assert rec.deviations == {"6ND": pytest.approx(0.10), "hardware": pytest.approx(-0.05)}
    assert rec.statement() == "1.0e24 FLOP (measured); 6ND, hardware agree within 10%"
    acc.add(0.5e24, method="hardware")  # now 1.45e24: 45 % off
    rec = acc.reconcile("eu")
    assert rec.flagged and set(rec.disagreements) == {"hardware"}
    assert "DISAGREEMENT above 30%: hardware +45%" in rec.statement()


def test_reconcile_boundary_and_preference() -> None:
    assert not reconcile({"6ND": 1.0, "hardware": 1.3}).flagged
    assert reconcile({"6ND": 1.0, "hardware": 1.31}).flagged
    assert reconcile({"hardware": 2.0, "kaplan": 1.0}).method == "kaplan"
    with pytest.raises(ComputeError, match="no method"):
        reconcile({})


def test_two_significant_figures() -> None:
    assert format_flop(3.15e23, "6ND") == "3.2e23 FLOP (6ND)"
    assert format_flop(5.88e23) == "5.9e23 FLOP"
    assert format_flop(9.96e24) == "1.0e25 FLOP"


def test_snapshot_is_plain_data() -> None:
    acc = ComputeAccount(EU_LIKE, multiplier=1.5)
    acc.add(1e20, steps=3, tokens=99)
    snap = acc.snapshot().model_dump(mode="json")
    assert snap["totals"] == {"eu": 1e20}
    assert snap["effective"] == 1.5e20
    assert snap["methods"] == {"measured": {"pretraining": 1e20}}


# --- projection --------------------------------------------------------------------------


def eu_thresholds() -> list[Threshold]:
    return [
        Threshold(id="planned", regime="eu", flop=1e25, basis="planned", action="notify",
                  recipient="AI Office", deadline=timedelta(days=14)),
        Threshold(id="reached", regime="eu", flop=1e25, basis="reached", action="notify",
                  recipient="AI Office", deadline=timedelta(days=14)),
        Threshold(id="pause", regime="eu", flop=5e25, action="pause"),
    ]


def test_projection_places_the_crossing_step_tokens_and_time() -> None:
    # 2e25 planned over 10,000 steps of 2e21, 4T tokens, 100 days: 1e25 after step 5,000.
    plan = [PlanSegment(steps=10_000, flop_per_step=2e21, tokens=4e12, seconds=100 * 86400)]
    proj = project(plan, eu_thresholds(), EU_LIKE, now=NOW)
    assert proj.planned == {"eu": pytest.approx(2e25)}
    planned, reached, pause = proj.crossings
    assert planned.crossed and planned.step == 5000 and planned.tokens == pytest.approx(2e12)
    assert planned.known_at == NOW  # known as soon as it is planned
    assert planned.due == NOW + timedelta(days=14)
    assert reached.known_at == NOW + timedelta(days=50)
    assert reached.due == NOW + timedelta(days=64)
    assert not pause.crossed and pause.due is None


def test_projection_from_an_account_counts_only_the_regime_phases() -> None:
    acc = ComputeAccount(EU_LIKE)
    acc.add(6e24, steps=300)
    acc.add(9e24, "evaluation")  # not in the regime: must not bring the crossing forward
    plan = [
        PlanSegment(phase="evaluation", flop=1e25, steps=10),
        PlanSegment(phase="fine-tuning", tokens=1e12, flop_per_token=8e12, steps=100),
    ]
    proj = acc.project(plan, eu_thresholds(), now=NOW)
    reached = proj.crossing("reached")
    # 4e24 still to go at 8e22 per fine-tuning step: step 300 + 10 + 50.
    assert reached.segment == 1 and reached.step == 360
    assert proj.spent == {"eu": 6e24} and proj.planned == {"eu": pytest.approx(1.4e25)}
    assert reached.known_at is None  # no time given for the segments


def test_projection_already_crossed_and_unknown_regime() -> None:
    proj = project([], eu_thresholds(), EU_LIKE, spent={"pretraining": 2e25}, step=7, now=NOW)
    c = proj.crossing("reached")
    assert c.crossed and c.already and c.step == 7 and c.due == NOW + timedelta(days=14)
    bad = [Threshold(id="x", regime="us", flop=1e26, action="pause")]
    with pytest.raises(ComputeError, match="unknown regime 'us'"):
        project([], bad, EU_LIKE)
    with pytest.raises(ValueError, match="needs flop"):
        PlanSegment(steps=10)
    with pytest.raises(ValueError, match="unknown phase"):
        PlanSegment(phase="training", flop=1.0)


def test_threshold_window() -> None:
    t = Threshold(id="w", regime="eu", flop=1.0, action="pause",
                  window_start=NOW, window_end=NOW + timedelta(days=10))
    assert t.in_window(NOW) and not t.in_window(NOW + timedelta(days=10))
    late = project([PlanSegment(flop=2.0)], [t], EU_LIKE, now=NOW + timedelta(days=30))
    assert late.crossings[0].crossed and not late.crossings[0].in_window


# --- with the bundled policies -----------------------------------------------------------


policy = pytest.importorskip("scalegate.policy")


def test_account_for_the_eu_ai_act() -> None:
    eu = policy.load_policy("eu-ai-act")
    acc = ComputeAccount.for_policy(eu)
    for phase in PHASES:
        acc.add(1.0, phase)
    (regime,) = acc.regimes
    counted = set(eu.compute.regimes[regime].include)
    assert acc.total(regime) == len(counted)
    # What the guidelines let providers leave out is left out.
    for excluded in ("evaluation", "recomputation", "reward-model", "distillation-teacher",
                     "exploratory", "synthetic-data-public"):
        assert excluded not in counted
    assert acc.effective() == pytest.approx(len(counted) * eu.compute.effective.multiplier)
    assert acc.totals() == eu.compute.totals(acc.by_phase())


@pytest.mark.parametrize("name", ["eu-ai-act", "ca-sb53", "fli-pause-2023"])
def test_thresholds_from_bundled_policies(name: str) -> None:
    p = policy.load_policy(name)
    thresholds = Threshold.from_policy(p)
    assert thresholds and all(t.policy == p.id for t in thresholds)
    acc = ComputeAccount.for_policy(p)
    top = max(t.flop for t in thresholds)
    proj = acc.project([PlanSegment(flop=2 * top, steps=1000)], thresholds, now=NOW)
    for c in proj.crossings:
        assert c.crossed and c.step == pytest.approx(1000 * c.threshold.flop / (2 * top), abs=1)


def test_eu_planned_notification_is_due_two_weeks_after_it_becomes_known() -> None:
    eu = policy.load_policy("eu-ai-act")
    acc = ComputeAccount.for_policy(eu)
    plan = [PlanSegment(flop=3.8e25, tokens=15.6e12, seconds=60 * 86400)]
    proj = acc.project(plan, Threshold.from_policy(eu), now=NOW)
    planned = [c for c in proj.crossings if c.threshold.basis == "planned"]
    assert planned and all(c.due == NOW + timedelta(days=14) for c in planned)
