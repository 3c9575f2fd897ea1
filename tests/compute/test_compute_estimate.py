"""Every method a run description allows, reconciled, and checked against policies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scalegate.compute import (
    HardwarePeriod,
    RunDescription,
    Transformer,
    check_thresholds,
    estimate,
    six_nd,
)
from scalegate.errors import ComputeError

MOE = Transformer(n_layers=32, d_model=4096, n_heads=32, n_kv_heads=8, d_ff=14336,
                  gated_mlp=True, n_experts=8, experts_per_token=2, seq_len=4096,
                  vocab_size=32000)


def figures(run: RunDescription) -> dict[str, float]:
    return {f.method: f.flop for f in estimate(run).figures}


def test_moe_uses_active_parameters_and_says_so() -> None:
    # Mixtral-8x7B-like: ~47B parameters in all, ~13B active per token.
    assert MOE.params() == pytest.approx(46.7e9, rel=0.01)
    assert MOE.active_params() == pytest.approx(12.9e9, rel=0.01)
    est = estimate(RunDescription(params=MOE.params(), tokens=1e12, arch=MOE))
    got = {f.method: f for f in est.figures}
    assert got["6ND"].flop == pytest.approx(six_nd(MOE.active_params(), 1e12))
    assert "active" in got["6ND"].formula
    assert any("mixture of experts" in n for n in est.notes)
    assert any("Megatron" in n and "not applicable" in n for n in est.notes)
    assert "megatron" not in got
    assert est.reconciliation.method == "per-layer" and not est.reconciliation.flagged


def test_explicit_active_params_win() -> None:
    got = figures(RunDescription(params=47e9, active_params=13e9, tokens=1e12))
    assert got == {"6ND": pytest.approx(six_nd(13e9, 1e12))}


def test_params_that_contradict_the_architecture_are_noted() -> None:
    arch = Transformer(n_layers=2, d_model=64, n_heads=4, seq_len=16, vocab_size=100)
    est = estimate(RunDescription(params=1e9, tokens=1e9, arch=arch))
    assert any("check both" in n for n in est.notes)


def test_missing_inputs_are_errors_not_skips() -> None:
    with pytest.raises(ComputeError, match="without --tokens"):
        estimate(RunDescription(params=7e9))
    with pytest.raises(ComputeError, match="without a model size"):
        estimate(RunDescription(tokens=1e12))
    with pytest.raises(ComputeError, match="nothing to estimate"):
        estimate(RunDescription())


policy = pytest.importorskip("scalegate.policy")


def test_a_run_straddling_the_line_is_marked_uncertain() -> None:
    eu = policy.load_policy("eu-ai-act")
    # 6ND says 1.05e25; the hardware (default utilisation) says 0.89e25.
    hw = HardwarePeriod.of_hours(4096, 2048, "H100-SXM")
    run = RunDescription(params=70e9, tokens=25e12, hardware=[hw])
    est = estimate(run)
    assert est.figures[0].flop > 1e25 > est.figures[-1].flop
    checks = check_thresholds(est, [eu], now=datetime(2025, 9, 1, tzinfo=UTC))
    assert checks and all(c.crossed and c.uncertain for c in checks)
    assert all(c.by_method == {"6ND": True, "hardware": False} for c in checks)


def test_phase_outside_the_regime_is_not_counted() -> None:
    eu = policy.load_policy("eu-ai-act")
    est = estimate(RunDescription(params=405e9, tokens=15.6e12, phase="evaluation"))
    checks = check_thresholds(est, [eu])
    assert checks and not any(c.counted or c.crossed for c in checks)
