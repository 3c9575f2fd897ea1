"""The measured method on real torch models: counts, caching, recomputation, honesty."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from compute_tinygpt import TinyGPT, batch, config  # noqa: E402
from torch import nn  # noqa: E402

from scalegate.compute import (  # noqa: E402
    ComputeAccount,
    StepCounter,
    count,
    six_nd,
    transformer_flop,
)
from scalegate.errors import ComputeError  # noqa: E402

torch.set_num_threads(1)


def rel(a: float, b: float) -> float:
    return abs(a / b - 1)


SHAPES = [
    # (layers, d_model, heads, seq_len, batch, attention, extra)
    (1, 64, 4, 16, 2, "sdpa", {}),
    (2, 128, 4, 32, 3, "manual", {}),
    (3, 96, 6, 64, 2, "sdpa", {"gated_mlp": True, "d_ff": 160}),
    (2, 128, 8, 128, 1, "sdpa", {"n_kv_heads": 2}),
    (2, 64, 2, 24, 2, "manual", {"tied_embeddings": True}),
]


@pytest.mark.parametrize(("layers", "d", "heads", "t", "b", "attention", "extra"), SHAPES)
def test_measured_equals_per_layer_formula(layers, d, heads, t, b, attention, extra) -> None:
    cfg = config(n_layers=layers, d_model=d, n_heads=heads, seq_len=t, **extra)
    torch.manual_seed(0)
    model = TinyGPT(cfg, attention=attention)
    x, y = batch(cfg, size=b)
    step = count(model, (x, y))
    formula = transformer_flop(cfg, tokens=x.numel())
    assert rel(step.model_flop, formula.total) < 0.02
    assert rel(step.forward, formula.total / 3) < 0.02
    assert rel(step.backward, 2 * formula.total / 3) < 0.02
    assert step.complete, step.uncounted_ops
    assert step.total == pytest.approx(step.forward + step.backward + step.recomputation)


@pytest.mark.parametrize(("d", "t"), [(256, 8), (384, 16)])
def test_six_nd_when_width_dominates_context(d: int, t: int) -> None:
    cfg = config(n_layers=2, d_model=d, n_heads=4, seq_len=t, vocab_size=64)
    model = TinyGPT(cfg)
    x, y = batch(cfg, size=2)
    step = count(model, (x, y))
    n = sum(p.numel() for p in model.parameters())
    assert rel(step.model_flop, six_nd(n, x.numel())) < 0.10


def test_sequence_length_changes_are_separate_signatures() -> None:
    cfg = config(seq_len=64)
    model = TinyGPT(cfg)
    counter = StepCounter(model)
    a = counter.flop(batch(cfg, seq_len=16))
    b = counter.flop(batch(cfg, seq_len=64))
    assert len(counter.cache) == 2 and counter.misses == 2
    for seq, step in ((16, a), (64, b)):
        formula = transformer_flop(cfg.model_copy(update={"seq_len": seq}), tokens=2 * seq)
        assert rel(step.model_flop, formula.total) < 0.02


def test_later_steps_are_lookups_not_forward_passes() -> None:
    cfg = config()
    model = TinyGPT(cfg)
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    counter = StepCounter(model)
    first = counter.flop(batch(cfg, seed=1))
    assert len(calls) == 1
    for seed in range(2, 20):  # new data, same signature
        assert counter.flop(batch(cfg, seed=seed)) is first
    assert len(calls) == 1 and counter.hits == 18 and counter.misses == 1


def test_eval_mode_is_its_own_signature_and_forward_only() -> None:
    cfg = config()
    model = TinyGPT(cfg)
    counter = StepCounter(model)
    data = batch(cfg)
    train = counter.flop(data)
    model.eval()
    evaluation = counter.flop(data)
    assert evaluation is not train and evaluation.backward == 0
    assert evaluation.total == pytest.approx(train.forward)


def test_measure_wraps_the_callers_real_step() -> None:
    cfg = config()
    torch.manual_seed(0)
    model = TinyGPT(cfg)
    opt = torch.optim.AdamW(model.parameters())
    counter = StepCounter(model)
    results = []
    for seed in range(4):
        x, y = batch(cfg, seed=seed)
        with counter.measure((x, y)) as m:
            if seed > 0:  # no dispatch mode may be active on a cached step
                assert torch._C._len_torch_dispatch_stack() == 0
            loss = model(x, y)
            loss.backward()
            opt.step()  # optimizer inside the measured block: elementwise, not counted
            opt.zero_grad()
        results.append((m.flop, m.counted))
    assert [c for _, c in results] == [True, False, False, False]
    assert all(f is results[0][0] for f, _ in results)
    expected = count(TinyGPT(cfg), batch(cfg))
    assert results[0][0].total == pytest.approx(expected.total)
    assert results[0][0].complete


def test_measure_with_an_explicit_key_and_a_failing_step() -> None:
    counter = StepCounter()
    lin = nn.Linear(8, 8)
    with pytest.raises(RuntimeError), counter.measure(key="seq-8"):
        lin(torch.randn(4, 8)).sum().backward()
        raise RuntimeError("step failed")
    assert not counter.cache  # nothing half-counted is kept
    with counter.measure(key="seq-8") as m:
        lin(torch.randn(4, 8)).sum().backward()
    # forward 2·4·8·8; backward only the weight's gradient (the input needs none).
    assert m.flop is not None and m.flop.total == 2 * 2 * 4 * 8 * 8
    with pytest.raises(ComputeError, match="batch or an explicit key"):
        counter.measure()
    with pytest.raises(ComputeError, match="no model"):
        counter.flop(torch.zeros(1))


@pytest.mark.parametrize("mode", ["reentrant", "non-reentrant"])
def test_activation_recomputation_is_reported_apart(mode: str) -> None:
    cfg = config(n_layers=3, d_model=64, seq_len=32)
    torch.manual_seed(0)
    plain = count(TinyGPT(cfg), batch(cfg))
    torch.manual_seed(0)
    checkpointed = count(TinyGPT(cfg, checkpointing=mode), batch(cfg))
    assert plain.recomputation == 0 or plain.recomputation < 0.02 * plain.total
    assert checkpointed.model_flop == pytest.approx(plain.model_flop)
    redone = checkpointed.recomputation - plain.recomputation
    block_forward = plain.forward - transformer_flop(cfg, 64).per_token_forward["logits"] * 64
    if mode == "reentrant":  # re-runs every block's forward
        assert redone == pytest.approx(block_forward)
    else:  # stops once the saved tensors are back: at most one forward
        assert 0.5 * block_forward < redone <= block_forward
    acc = ComputeAccount({"eu": ["pretraining"]})
    acc.add_step(checkpointed, steps=10)
    assert acc.total("eu") == pytest.approx(10 * plain.model_flop)
    assert acc.by_phase()["recomputation"] == pytest.approx(10 * checkpointed.recomputation)


def test_fused_attention_backward_recompute_is_not_model_flop() -> None:
    cfg = config(n_layers=1, d_model=64, n_heads=4, seq_len=64)
    step = count(TinyGPT(cfg, attention="sdpa"), batch(cfg, size=1))
    # The CPU flash backward recomputes Q·Kᵀ once per layer: 2·T·T·d_attn.
    assert step.recomputation == pytest.approx(2 * 64 * 64 * 64)
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in step.by_op


class _Distances(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        return torch.cdist(h, h).sum()


def test_operators_without_a_formula_are_reported() -> None:
    step = count(_Distances(), torch.randn(32, 16))
    assert not step.complete
    # cdist runs as aten._euclidean_dist: a matmul inside a kernel torch has no formula for.
    assert any("dist" in op for op in step.uncounted_ops)
    # Its forward is invisible to the counter; only the linear layer's forward is counted.
    assert step.forward == 2 * 32 * 16 * 16


def test_count_leaves_no_side_effects() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 1))
    model[0].weight.grad = torch.ones_like(model[0].weight)
    stats = model[1].running_mean.clone()
    data = torch.randn(16, 8)
    state = torch.get_rng_state()
    step = count(model, data)
    assert step.total > 0 and step.complete
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert model[3].weight.grad is None
    assert torch.equal(model[1].running_mean, stats)
    assert torch.equal(torch.get_rng_state(), state)


def test_count_on_the_meta_device_for_preflight() -> None:
    cfg = config(n_layers=4, d_model=1024, n_heads=16, seq_len=256, vocab_size=32000,
                 gated_mlp=True, d_ff=2816, n_kv_heads=4)
    with torch.device("meta"):
        model = TinyGPT(cfg)
        x = torch.zeros(2, 256, dtype=torch.long)
    step = count(model, (x, x))
    assert rel(step.model_flop, transformer_flop(cfg, tokens=512).total) < 0.02
    assert step.complete, step.uncounted_ops


def test_a_loss_without_grad_is_a_clear_error() -> None:
    model = nn.Linear(4, 1).requires_grad_(False)
    with pytest.raises(ComputeError, match="does not require grad"):
        count(model, torch.randn(2, 4))
    class Named(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"y": x}

    with pytest.raises(ComputeError, match="returned dict, not a tensor"):
        count(Named(), torch.randn(2, 2, requires_grad=True))


def test_import_scalegate_compute_does_not_import_torch() -> None:
    code = (
        "import sys, scalegate.compute as c, scalegate.compute.account, "
        "scalegate.compute.formulas, scalegate.compute.projection, scalegate.compute.estimate; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "c.StepCounter; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_batch_the_model_cannot_take_says_to_pass_a_loss_fn() -> None:
    """Inputs and targets in one batch are not the model's arguments: a clear message, not
    the model's TypeError."""
    model = torch.nn.Sequential(torch.nn.Linear(6, 3))
    with pytest.raises(ComputeError, match="loss_fn=") as caught:
        count(model, {"x": torch.randn(4, 6), "y": torch.zeros(4, dtype=torch.long)})
    assert "x: float32[4,6]@cpu" in str(caught.value)
