"""A small GPT in plain torch, for counting real training steps in tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from scalegate.compute.formulas import Transformer


class Block(nn.Module):
    def __init__(self, cfg: Transformer, attention: str, dropout: float) -> None:
        super().__init__()
        d, dh = cfg.d_model, cfg.head_dim
        self.cfg, self.attention = cfg, attention
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q = nn.Linear(d, cfg.d_attn, bias=False)
        self.k = nn.Linear(d, cfg.kv_heads * dh, bias=False)
        self.v = nn.Linear(d, cfg.kv_heads * dh, bias=False)
        self.o = nn.Linear(cfg.d_attn, d, bias=False)
        self.up = nn.Linear(d, cfg.ffn, bias=False)
        self.gate = nn.Linear(d, cfg.ffn, bias=False) if cfg.gated_mlp else None
        self.down = nn.Linear(cfg.ffn, d, bias=False)
        self.drop = nn.Dropout(dropout)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        c = self.cfg
        q = self.q(x).view(b, t, c.n_heads, c.head_dim).transpose(1, 2)
        k = self.k(x).view(b, t, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.v(x).view(b, t, c.kv_heads, c.head_dim).transpose(1, 2)
        if c.kv_heads != c.n_heads:
            rep = c.n_heads // c.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / c.head_dim**0.5
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            y = self.drop(att) @ v
        return self.o(y.transpose(1, 2).reshape(b, t, c.d_attn))

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        h = F.silu(self.gate(x)) * h if self.gate is not None else F.gelu(h)
        return self.drop(self.down(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._attend(self.ln1(x))
        return x + self._mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """GPT-2-like decoder. ``checkpointing`` wraps each block in activation checkpointing."""

    def __init__(
        self,
        cfg: Transformer,
        *,
        attention: str = "sdpa",
        dropout: float = 0.0,
        checkpointing: str | None = None,
    ) -> None:
        super().__init__()
        self.cfg, self.checkpointing = cfg, checkpointing
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, attention, dropout) for _ in range(cfg.n_layers))
        self.ln = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tied_embeddings:
            self.head.weight = self.tok.weight

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for block in self.blocks:
            if self.checkpointing is not None:
                x = checkpoint(block, x, use_reentrant=self.checkpointing == "reentrant")
            else:
                x = block(x)
        logits = self.head(self.ln(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def config(**kw: object) -> Transformer:
    base: dict[str, object] = {
        "n_layers": 2, "d_model": 64, "n_heads": 4, "seq_len": 16, "vocab_size": 128,
        "learned_positions": True,
    }
    base.update(kw)
    return Transformer(**base)  # type: ignore[arg-type]


def batch(cfg: Transformer, size: int = 2, seq_len: int | None = None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t = seq_len or cfg.seq_len
    idx = torch.randint(0, cfg.vocab_size, (size, t + 1), generator=g)
    return idx[:, :-1], idx[:, 1:]
