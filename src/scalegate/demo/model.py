"""A tiny GPT-style decoder for the demo: small enough to train on one CPU core in seconds.

Token and learned position embeddings, ``n_layer`` pre-LayerNorm blocks (causal self-attention
and a GELU MLP), a final LayerNorm and a linear head that may share the token embedding's
weights. No dropout: training and decoding are deterministic for a given seed and thread count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn


class TinyGPTConfig(BaseModel):
    """Shape of a :class:`TinyGPT`."""

    model_config = ConfigDict(frozen=True)

    vocab_size: int = Field(gt=0)
    block_size: int = Field(gt=0, description="longest sequence the model reads")
    d_model: int = Field(default=64, gt=0)
    n_layer: int = Field(default=2, gt=0)
    n_head: int = Field(default=4, gt=0)
    mlp_ratio: int = Field(default=4, gt=0)
    tie_weights: bool = True

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TinyGPTConfig:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        return self


class _Block(nn.Module):
    def __init__(self, cfg: TinyGPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model),
            nn.GELU(),
            nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """A decoder-only transformer; ``forward(ids) -> logits`` of shape ``[batch, seq, vocab]``."""

    def __init__(self, config: TinyGPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.block_size, config.d_model)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer) so depth keeps the
        # residual stream's variance in check.
        for block in cast(Iterable[_Block], self.blocks):
            for p in (block.proj.weight, cast(nn.Linear, block.mlp[2]).weight):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self, *, non_embedding: bool = True) -> int:
        """Parameter count N (the 6·N·D convention leaves out position embeddings)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.pos_emb.weight.numel() if non_embedding else n

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.config.block_size:
            raise ValueError(f"sequence of {t} tokens exceeds block_size={self.config.block_size}")
        pos = torch.arange(t, device=ids.device)
        x = self.tok_emb(ids) + self.pos_emb(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def generate_greedy(
        self, prompt_ids: Sequence[int], max_new_tokens: int, *, stop_id: int | None = None
    ) -> list[int]:
        """Greedy continuation of ``prompt_ids``: up to ``max_new_tokens`` new ids.

        Stops before ``stop_id`` (which is not returned) or when the context is full.
        """
        return generate_batch(self, [prompt_ids], max_new_tokens, stop_id=stop_id)[0]


def generate_batch(
    module: nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    stop_id: int | None = None,
) -> list[list[int]]:
    """Greedy continuations of many prompts of different lengths in one batch.

    Prompts are right-padded and each row's next token is read at its own last position: in a
    causal model a position never attends to the padding after it, so the result equals decoding
    each prompt alone. Continuations stop before ``stop_id`` or at the model's ``block_size``.
    """
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("cannot continue an empty prompt")
    block_size = cast(TinyGPTConfig, module.config).block_size
    if any(len(p) > block_size for p in prompts):
        raise ValueError(f"a prompt is longer than the model's block_size={block_size}")
    lengths = [len(p) for p in prompts]
    width = min(block_size, max(lengths) + max_new_tokens)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, : len(p)] = torch.tensor(list(p), dtype=torch.long)
    cur = torch.tensor(lengths)
    active = torch.ones(len(prompts), dtype=torch.bool)
    out: list[list[int]] = [[] for _ in prompts]
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                active &= cur < width
                if not active.any():
                    break
                rows = active.nonzero().squeeze(1)
                end = int(cur[rows].max())
                logits = module(ids[rows, :end])
                nxt = logits[torch.arange(len(rows)), cur[rows] - 1].argmax(-1)
                for r, tok in zip(rows.tolist(), nxt.tolist(), strict=True):
                    if tok == stop_id:
                        active[r] = False
                        continue
                    ids[r, cur[r]] = tok
                    out[r].append(tok)
                    cur[r] += 1
    finally:
        module.train(was_training)
    return out


def generate_fn(module: nn.Module, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
    """Greedy answer ids for one prompt, stopping before the demo vocabulary's end mark.

    The signature an evaluation backend needs (module, prompt ids, budget) -> new ids.
    """
    from scalegate.demo.tasks import EOS_ID

    return generate_batch(module, [prompt_ids], max_new_tokens, stop_id=EOS_ID)[0]
