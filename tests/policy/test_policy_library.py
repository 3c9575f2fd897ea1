"""The bundled policies: they load by name, cite their sources, and encode the published numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scalegate.policy import Policy, bundled_policies, load_policy

EXPECTED = {
    "fli-pause-2023",
    "eu-ai-act",
    "ca-sb53",
    "anthropic-rsp-2.2",
    "openai-pf-2",
    "gdm-fsf-1",
    "demo",
}


def test_the_library_holds_the_expected_policies() -> None:
    assert set(bundled_policies()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_policy_loads_by_name_and_cites_its_source(name: str) -> None:
    p = load_policy(name)
    assert p.id == name
    assert p.source is not None and p.source.title
    if p.kind != "demo":
        assert p.source.url.startswith("https://")
    # Every number-bearing element either says where it comes from or is marked illustrative.
    items: list = [
        *p.compute.regimes.values(),
        p.compute.effective,
        *p.compute.thresholds,
        *p.safeguards,
        p.governance,
    ]
    if p.evaluation:
        items.append(p.evaluation)
    for cap in p.capabilities:
        for level in cap.levels:
            items += level.evaluations
    for item in items:
        assert item.cite or item.illustrative, f"{name}: {item!r} neither cites nor is illustrative"


@pytest.mark.parametrize("name", ["anthropic-rsp-2.2", "openai-pf-2", "gdm-fsf-1", "demo"])
def test_lab_trigger_values_are_marked_illustrative(name: str) -> None:
    for cap in load_policy(name).capabilities:
        for level in cap.levels:
            for trig in level.evaluations:
                assert trig.illustrative, f"{cap.id}/{level.id}/{trig.evaluation}"


def test_eu_counts_capability_compute_only() -> None:
    p = load_policy("eu-ai-act")
    regime = p.compute.regimes["eu-cumulative"]
    assert set(regime.include) == {
        "pretraining",
        "fine-tuning",
        "rl",
        "synthetic-data",
        "merged-weights",
    }
    for excluded in (
        "recomputation",
        "evaluation",
        "reward-model",
        "distillation-teacher",
        "exploratory",
        "synthetic-data-public",
    ):
        assert excluded in regime.exclude
    notify = {t.basis: t for t in p.compute.thresholds}
    assert set(notify) == {"planned", "reached"}
    for t in notify.values():
        assert t.flop == 1e25 and t.action == "notify" and t.deadline == timedelta(days=14)
        assert t.obligation_id == "art52-notification" and "Art. 52" in t.cite


def test_sb53_counts_fine_tuning_and_rl_at_1e26() -> None:
    p = load_policy("ca-sb53")
    assert {"pretraining", "fine-tuning", "rl"} <= set(p.compute.regimes["sb53"].include)
    assert all(t.flop == 1e26 for t in p.compute.thresholds)
    assert "22757.11" in p.compute.regimes["sb53"].cite


def test_letter_states_its_gpt4_proxy_and_window() -> None:
    p = load_policy("fli-pause-2023")
    (t,) = p.compute.thresholds
    assert t.flop == 2.1e25 and t.action == "pause" and t.illustrative
    assert t.window is not None and t.window.start == datetime(2023, 3, 29, tzinfo=UTC)
    assert t.window.end == datetime(2023, 9, 29, tzinfo=UTC)
    assert "Epoch" in t.description and "assumption" in p.description


def test_lab_cadences_match_the_frameworks() -> None:
    rsp, fsf, pf = (
        load_policy("anthropic-rsp-2.2"),
        load_policy("gdm-fsf-1"),
        load_policy("openai-pf-2"),
    )
    assert rsp.evaluation and rsp.evaluation.every == 4 and rsp.evaluation.max_interval
    assert abs(rsp.evaluation.max_interval.days - 182) <= 1 and "§3.1" in rsp.evaluation.cite
    assert fsf.evaluation and fsf.evaluation.every == 6
    assert fsf.evaluation.max_interval and abs(fsf.evaluation.max_interval.days - 91) <= 1
    assert pf.evaluation and pf.evaluation.every == 2 and pf.evaluation.illustrative
    assert rsp.governance.resumption.max_ceiling == 4
    assert [c.any_of for c in rsp.governance.resumption.quorum] == [["ceo"], ["rso"]]


def test_pf_critical_levels_halt_development_until_specified() -> None:
    p = load_policy("openai-pf-2")
    for cap in p.capabilities:
        levels = {lv.id: lv for lv in cap.levels}
        assert levels["critical"].requires == ["critical-standard-specified"]
        assert levels["high"].requires == ["high-security-controls"]


def test_rsp_cbrn3_requires_asl3() -> None:
    p = load_policy("anthropic-rsp-2.2")
    cbrn = next(c for c in p.capabilities if c.id == "cbrn")
    assert cbrn.levels[0].id == "CBRN-3"
    assert set(cbrn.levels[0].requires) == {"asl3-deployment", "asl3-security"}
    assert all(s.max_age == timedelta(days=365.2425) for s in p.safeguards)


def test_demo_policy_shape() -> None:
    p: Policy = load_policy("demo")
    assert p.kind == "demo" and p.evaluation is not None
    assert p.evaluation.every == 2 and p.evaluation.on_missing == "pause"
    assert p.evaluation.first_at == 1.7e10 and p.evaluation.max_interval == timedelta(days=30)
    (notify,) = p.compute.thresholds
    assert (notify.id, notify.flop, notify.action) == ("demo-notify", 1e11, "notify")
    (cap,) = p.capabilities
    (level,) = cap.levels
    (trig,) = level.evaluations
    assert (trig.alert, trig.trigger) == (0.3, 0.6) and trig.metric == "accuracy"
    assert level.on_alert.every == 1.5 and level.requires == ["security-level-demo"]
    assert p.safeguards[0].attested_by == ["ciso"]
    quorum = [c.any_of for c in p.governance.resumption.quorum]
    assert quorum == [["rso"], ["board"]]


def test_loading_is_cached_and_frozen() -> None:
    p = load_policy("demo")
    assert load_policy("demo") is p
    with pytest.raises(Exception, match="frozen"):
        p.id = "x"  # type: ignore[misc]
