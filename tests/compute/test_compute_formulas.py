"""Formulas and the chip table against published figures and against each other."""

from __future__ import annotations

import math
import re

import pytest

from scalegate.compute import (
    CHIPS,
    DEFAULT_UTILISATION,
    HardwarePeriod,
    Transformer,
    format_flop,
    get_chip,
    hardware,
    kaplan,
    kaplan_forward_per_token,
    make_transformer,
    megatron,
    palm,
    six_nd,
    transformer_flop,
)
from scalegate.errors import ComputeError

GPT3 = Transformer(
    n_layers=96, d_model=12288, n_heads=96, seq_len=2048, vocab_size=50257,
    tied_embeddings=True, learned_positions=True,
)
LLAMA31_405B = Transformer(
    n_layers=126, d_model=16384, n_heads=128, n_kv_heads=8, d_ff=53248, gated_mlp=True,
    seq_len=8192, vocab_size=128256,
)
CHINCHILLA = Transformer(
    n_layers=80, d_model=8192, n_heads=64, d_head=128, seq_len=2048, vocab_size=32000,
    tied_embeddings=True,
)


def rel(a: float, b: float) -> float:
    return abs(a / b - 1)


# --- published worked examples -----------------------------------------------------------


def test_eu_guidelines_hardware_example() -> None:
    # 370,000 H100-hours at 989 TFLOP/s and 50 % utilisation: published as ≈ 6.5e23.
    flop = hardware([HardwarePeriod.of_hours(1, 370_000, "H100-SXM", utilisation=0.5)])
    assert flop == pytest.approx(370_000 * 3600 * 989e12 * 0.5)
    assert rel(flop, 6.5e23) < 0.015
    # Exact arithmetic is 6.587e23, which rounds to 6.6e23 at two significant figures.
    assert format_flop(flop, "hardware") == "6.6e23 FLOP (hardware)"


def test_gpt3_6nd() -> None:
    flop = six_nd(175e9, 300e9)
    assert flop == pytest.approx(3.15e23)
    assert rel(flop, 3.14e23) < 0.005  # published (Brown et al. 2020, Table D.1)


def test_chinchilla_6nd() -> None:
    flop = six_nd(70e9, 1.4e12)
    assert flop == pytest.approx(5.88e23)
    assert rel(flop, 5.76e23) < 0.025  # published (Hoffmann et al. 2022, Table 3)


def test_llama31_405b_6nd() -> None:
    flop = six_nd(405e9, 15.6e12)
    assert format_flop(flop) == "3.8e25 FLOP"  # published: 3.8e25 (Llama 3 paper)


def test_parameter_counts_match_published_sizes() -> None:
    assert rel(GPT3.params(), 175e9) < 0.01
    assert rel(LLAMA31_405B.params(), 405e9) < 0.01


def test_chinchilla_full_count_matches_paper_convention() -> None:
    # Hoffmann et al. App. F count (embeddings as matmul, softmax) stays within a few %
    # of 6ND for the 70B model on 1.4T tokens, as their Table A4 shows for large models.
    full = transformer_flop(CHINCHILLA, 1.4e12, embeddings="matmul", softmax=True)
    assert rel(full.total, six_nd(CHINCHILLA.params(), 1.4e12)) < 0.05


# --- the formulas against each other -------------------------------------------------------


@pytest.mark.parametrize("arch", [GPT3, CHINCHILLA])
def test_kaplan_is_the_halved_per_layer_count_without_logits(arch: Transformer) -> None:
    per_layer = transformer_flop(arch, 1.0, causal="halved", training=False)
    no_logits = per_layer.forward_per_token - per_layer.per_token_forward["logits"]
    shape = (arch.non_embedding_params(), arch.n_layers, arch.seq_len, arch.d_attn)
    k = kaplan_forward_per_token(*shape)
    assert k == pytest.approx(no_logits)
    assert kaplan(*shape, 10.0) == pytest.approx(30.0 * k)


def test_palm_equals_per_layer_with_matmul_parameters() -> None:
    # 6N + 12·L·H·Q·T with N = parameters taking part in matmuls (layers + unembedding).
    arch = GPT3
    n = arch.non_embedding_params() + arch.vocab_size * arch.d_model
    full = transformer_flop(arch, 1e9)
    assert palm(n, arch.n_layers, arch.n_heads, arch.head_dim, arch.seq_len, 1e9) == (
        pytest.approx(full.total)
    )
    halved = transformer_flop(arch, 1e9, causal="halved")
    got = palm(n, arch.n_layers, arch.n_heads, arch.head_dim, arch.seq_len, 1e9, causal="halved")
    assert got == pytest.approx(halved.total)


def test_megatron_equals_per_layer_for_a_standard_gpt() -> None:
    arch = GPT3
    tokens = 3e11
    full = transformer_flop(arch, tokens)
    got = megatron(tokens, arch.n_layers, arch.d_model, arch.seq_len, arch.vocab_size)
    assert got == pytest.approx(full.total)
    # Recomputation adds one forward of every layer (not the logits).
    recompute = megatron(tokens, arch.n_layers, arch.d_model, arch.seq_len, arch.vocab_size,
                         recompute=True)
    layer_forward = full.forward_per_token - full.per_token_forward["logits"]
    assert recompute - got == pytest.approx(layer_forward * tokens)


def test_six_nd_is_close_to_full_count_when_context_is_short() -> None:
    arch = GPT3
    assert rel(six_nd(arch.params(), 3e11), transformer_flop(arch, 3e11).total) < 0.05


def test_causal_halving_only_touches_attention() -> None:
    full = transformer_flop(GPT3, 1.0).per_token_forward
    half = transformer_flop(GPT3, 1.0, causal="halved").per_token_forward
    for part in full:
        ratio = 0.5 if part.startswith("attention_") and part != "attention_output" else 1.0
        assert half[part] == pytest.approx(full[part] * ratio)


def test_moe_counts_active_parameters() -> None:
    dense = Transformer(n_layers=8, d_model=1024, n_heads=8, seq_len=512, vocab_size=1000)
    moe = dense.model_copy(update={"n_experts": 8, "experts_per_token": 2})
    assert moe.params() > 7 * dense.non_embedding_params() // 2
    assert moe.active_params() < moe.params()
    d, f = 1024, 4096
    expert = 2 * d * f
    assert moe.active_params() - dense.params() == 8 * (expert + d * 8)  # one more expert + router
    step_dense = transformer_flop(dense, 1.0).per_token_forward["mlp"]
    step_moe = transformer_flop(moe, 1.0).per_token_forward["mlp"]
    assert step_moe == pytest.approx(2 * step_dense + 8 * 2 * d * 8)


def test_gated_mlp_and_gqa_parameter_count() -> None:
    a = Transformer(n_layers=1, d_model=64, n_heads=8, n_kv_heads=2, d_ff=100, gated_mlp=True,
                    seq_len=16, vocab_size=10)
    attention = 64 * 64 + 2 * 64 * (2 * 8) + 64 * 64
    assert a.non_embedding_params() == attention + 3 * 64 * 100


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "7"])
def test_six_nd_rejects_non_positive(bad: object) -> None:
    with pytest.raises(ComputeError, match="params"):
        six_nd(bad, 1e9)  # type: ignore[arg-type]


def test_inconsistent_architecture_is_a_compute_error() -> None:
    with pytest.raises(ComputeError, match=r"heads \(5\) must divide d_model \(64\)"):
        make_transformer(n_layers=2, d_model=64, n_heads=5, seq_len=8, vocab_size=10)
    with pytest.raises(ComputeError, match=r"kv heads \(3\) must divide heads \(8\)"):
        make_transformer(n_layers=2, d_model=64, n_heads=8, n_kv_heads=3, seq_len=8, vocab_size=10)
    with pytest.raises(ComputeError, match="n_layers"):
        make_transformer(n_layers=0, d_model=64, n_heads=8, seq_len=8, vocab_size=10)
    with pytest.raises(ComputeError, match="experts per token"):
        make_transformer(n_layers=1, d_model=64, n_heads=8, seq_len=8, vocab_size=10,
                         n_experts=2, experts_per_token=3)


def test_causal_option_is_checked() -> None:
    with pytest.raises(ComputeError, match="causal"):
        transformer_flop(GPT3, 1.0, causal="quarter")  # type: ignore[arg-type]


# --- hardware and chips ----------------------------------------------------------------------


def test_hardware_sums_periods_and_defaults_utilisation() -> None:
    periods = [
        HardwarePeriod.of_hours(1000, 10, "A100"),
        HardwarePeriod.of_hours(2000, 5, "A100-SXM", utilisation=0.5),
    ]
    expected = 1000 * 36000 * 312e12 * 0.3 + 2000 * 18000 * 312e12 * 0.5
    assert hardware(periods) == pytest.approx(expected)
    other = 1000 * 36000 * 312e12 * 0.4 + 2000 * 18000 * 312e12 * 0.5
    assert hardware(periods, "other") == pytest.approx(other)
    assert DEFAULT_UTILISATION == {"language": 0.3, "other": 0.4}


def test_hardware_needs_periods_and_valid_values() -> None:
    with pytest.raises(ComputeError, match="at least one period"):
        hardware([])
    with pytest.raises(ComputeError, match="chips"):
        HardwarePeriod.of_hours(0, 10, "H100-SXM")
    with pytest.raises(ComputeError, match="hours"):
        HardwarePeriod.of_hours(8, -1, "H100-SXM")
    with pytest.raises(ComputeError, match="utilisation"):
        HardwarePeriod.of_hours(8, 1, "H100-SXM", utilisation=1.5)


def test_unknown_chip_lists_known_ones() -> None:
    with pytest.raises(ComputeError) as info:
        get_chip("V100")
    for name in CHIPS:
        assert name in str(info.value)
    with pytest.raises(ComputeError, match="H100-SXM or H100-PCIe"):
        get_chip("H100")
    with pytest.raises(ComputeError, match="TPU-v4"):
        HardwarePeriod.of_hours(8, 1, "TPU-v9")


def test_chip_lookup_is_forgiving_about_spelling() -> None:
    assert get_chip("h100_sxm").name == "H100-SXM"
    assert get_chip("tpu v5p").name == "TPU-v5p"
    assert get_chip("mi300x").peak_flops("bf16") == pytest.approx(1307.4e12)
    with pytest.raises(ComputeError, match="no published dense peak for 'fp8'"):
        get_chip("TPU-v4").peak_flops("fp8")


def test_required_chips_are_present() -> None:
    for name in ("A100-SXM", "H100-SXM", "H100-PCIe", "H200", "B200", "MI300X",
                 "TPU-v4", "TPU-v5e", "TPU-v5p"):
        assert "bf16" in CHIPS[name].peak
    assert CHIPS["H100-SXM"].peak_flops() == 989e12
    assert CHIPS["A100-SXM"].peak_flops() == 312e12
    assert CHIPS["H200"].peak_flops() == 989e12


def _numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]


@pytest.mark.parametrize("name", list(CHIPS))
def test_every_value_cites_a_datasheet_that_states_it(name: str) -> None:
    # Each value must be the cited figure itself, or the cited sparse figure halved, or a
    # per-8-GPU platform figure divided out: catches typos between a value and its source.
    chip = CHIPS[name]
    assert set(chip.peak) == set(chip.sources)
    for dtype, value in chip.peak.items():
        source = chip.source(dtype)
        assert re.search(r"datasheet|data sheet|documentation|specifications|blog", source, re.I)
        tera = value / 1e12
        candidates = []
        for n in _numbers(source.split(":", 1)[1] if ":" in source else source):
            candidates += [n, n / 2, n / 8, n * 1000 / 8, n * 1000 / 16]
        assert any(math.isclose(c, tera, rel_tol=2e-3) for c in candidates), (name, dtype, source)
