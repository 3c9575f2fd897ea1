"""The tiny GPT: shapes, causality, weight tying and greedy decoding."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from scalegate.demo.model import TinyGPT, TinyGPTConfig, generate_batch, generate_fn
from scalegate.demo.tasks import EOS_ID, VOCAB, encode


def _model(seed: int = 0, **kw: object) -> TinyGPT:
    torch.manual_seed(seed)
    cfg = {"vocab_size": len(VOCAB), "block_size": 16, "d_model": 32, "n_layer": 2, "n_head": 4}
    cfg.update(kw)
    return TinyGPT(TinyGPTConfig(**cfg))


def test_config_rejects_heads_that_do_not_divide_the_width() -> None:
    with pytest.raises(ValidationError, match="not divisible by n_head=5"):
        TinyGPTConfig(vocab_size=10, block_size=8, d_model=32, n_head=5)


def test_forward_shape_and_block_limit() -> None:
    model = _model()
    ids = torch.randint(0, len(VOCAB), (3, 16))
    assert model(ids).shape == (3, 16, len(VOCAB))
    with pytest.raises(ValueError, match="exceeds block_size=16"):
        model(torch.zeros((1, 17), dtype=torch.long))


def test_attention_is_causal() -> None:
    model = _model().eval()
    ids = torch.randint(0, len(VOCAB), (1, 12))
    changed = ids.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % len(VOCAB)
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.equal(a[0, :8], b[0, :8])
    assert not torch.allclose(a[0, 8:], b[0, 8:])


def test_weight_tying_and_parameter_count() -> None:
    tied, untied = _model(), _model(tie_weights=False)
    assert tied.head.weight is tied.tok_emb.weight
    assert untied.head.weight is not untied.tok_emb.weight
    extra = len(VOCAB) * 32
    assert untied.num_parameters() - tied.num_parameters() == extra
    assert tied.num_parameters(non_embedding=False) - tied.num_parameters() == 16 * 32


def _reference_greedy(model: TinyGPT, prompt: list[int], n: int, stop: int | None) -> list[int]:
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            if len(ids) >= model.config.block_size:
                break
            tok = int(model(torch.tensor([ids]))[0, -1].argmax())
            if tok == stop:
                break
            ids.append(tok)
            out.append(tok)
    return out


def test_batched_greedy_equals_one_prompt_at_a_time() -> None:
    prompts = [encode(p) for p in ("Cab=", "Xhello=", "S123456=", "A1+2=", "R=")]
    for seed in range(3):
        model = _model(seed=seed).eval()
        free = generate_batch(model, prompts, 7)
        for prompt, got in zip(prompts, free, strict=True):
            assert got == _reference_greedy(model, prompt, 7, None)
        # a stop token the model does emit, so that rows stop at different times
        stop = free[1][2]
        batch = generate_batch(model, prompts, 7, stop_id=stop)
        assert len(batch[1]) == free[1].index(stop) < 7
        for prompt, got in zip(prompts, batch, strict=True):
            want = _reference_greedy(model, prompt, 7, stop)
            assert got == want
            assert model.generate_greedy(prompt, 7, stop_id=stop) == want
    model = _model(seed=1)
    assert generate_fn(model, prompts[0], 5) == _reference_greedy(model, prompts[0], 5, EOS_ID)
    assert model.training  # decoding leaves a model in the mode it found it in


def test_generation_stops_at_the_context_limit() -> None:
    model = _model()
    out = generate_batch(model, [encode("C" * 14)], 10)
    assert len(out[0]) <= 2
    with pytest.raises(ValueError, match="longer than the model's block_size"):
        generate_batch(model, [encode("C" * 17)], 1)
    with pytest.raises(ValueError, match="empty prompt"):
        generate_batch(model, [[]], 1)
    assert generate_batch(model, [], 3) == []
