"""Training compute from a model's size, shape and data, and from the hardware it ran on.

Pure Python, no torch. Every function returns FLOP (floating-point operations, a multiply-add
counting as two) as a float. Conventions, stated once:

- a training step costs forward + backward, the backward being twice the forward (one
  matmul for the gradient of the input, one for the gradient of the weight); the optimizer
  update (~10 operations per parameter, per step, not per token) is negligible and not counted;
- activation recomputation is *not* model compute (the EU guidelines let it be left out);
  only Megatron's ``recompute=True`` variant includes it, to reproduce the paper's figure;
- ``causal="full"`` counts every query-key pair, as dense kernels and
  ``torch.utils.flop_counter`` do; ``causal="halved"`` counts the half a causal mask keeps.

Sources: Kaplan et al. 2020 (arXiv:2001.08361) Table 1; Hoffmann et al. 2022
(arXiv:2203.15556) Appendix F; Chowdhery et al. 2022 (PaLM, arXiv:2204.02311) Appendix B;
Narayanan et al. 2021 (arXiv:2104.04473) §5.1 and Korthikanti et al. 2022
(arXiv:2205.05198) §6; EU Commission guidelines C(2025) 5045, annex (hardware method).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scalegate.compute.chips import Chip, get_chip
from scalegate.errors import ComputeError

Causal = Literal["full", "halved"]
ModelKind = Literal["language", "other"]

# EU guidelines' default utilisation when it is not measured: 0.3 for language models,
# 0.4 otherwise (C(2025) 5045, annex).
DEFAULT_UTILISATION: dict[str, float] = {"language": 0.3, "other": 0.4}


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ComputeError(f"{name} must be a number, got {value!r}.")
    if not math.isfinite(value) or value <= 0:
        raise ComputeError(f"{name} must be a positive finite number, got {value!r}.")
    return float(value)


def _attention_factor(causal: Causal) -> float:
    if causal not in ("full", "halved"):
        raise ComputeError(f"causal must be 'full' or 'halved', got {causal!r}.")
    return 1.0 if causal == "full" else 0.5


# --- parameter-count rules -------------------------------------------------------------------


def six_nd(params: float, tokens: float) -> float:
    """C ≈ 6·N·D: training FLOP of a dense model with ``params`` parameters on ``tokens`` tokens.

    For a mixture of experts pass the *active* parameters per token.
    """
    return 6.0 * _positive("params", params) * _positive("tokens", tokens)


def kaplan_forward_per_token(
    non_embedding_params: float, n_layers: int, n_ctx: int, d_attn: int
) -> float:
    """Kaplan et al. 2020, Table 1: C_forward ≈ 2N + 2·n_layer·n_ctx·d_attn per token.

    ``N`` is the non-embedding parameter count. The published attention term is used as
    printed (it equals the causal-halved count of both attention matmuls).
    """
    n = _positive("non_embedding_params", non_embedding_params)
    return 2.0 * n + 2.0 * _positive("n_layers", n_layers) * _positive(
        "n_ctx", n_ctx
    ) * _positive("d_attn", d_attn)


def kaplan(
    non_embedding_params: float, n_layers: int, n_ctx: int, d_attn: int, tokens: float
) -> float:
    """Kaplan et al. 2020 training FLOP: 3 × forward per token × tokens."""
    fwd = kaplan_forward_per_token(non_embedding_params, n_layers, n_ctx, d_attn)
    return 3.0 * fwd * _positive("tokens", tokens)


def palm(
    params: float,
    n_layers: int,
    n_heads: int,
    d_head: int,
    seq_len: int,
    tokens: float,
    *,
    causal: Causal = "full",
) -> float:
    """PaLM (Chowdhery et al. 2022, App. B): (6N + 12·L·H·Q·T) FLOP per training token."""
    attn = (
        12.0
        * _positive("n_layers", n_layers)
        * _positive("n_heads", n_heads)
        * _positive("d_head", d_head)
        * _positive("seq_len", seq_len)
        * _attention_factor(causal)
    )
    return (6.0 * _positive("params", params) + attn) * _positive("tokens", tokens)


def megatron(
    tokens: float,
    n_layers: int,
    d_model: int,
    seq_len: int,
    vocab_size: int,
    *,
    recompute: bool = False,
    causal: Causal = "full",
) -> float:
    """Megatron-LM (Narayanan et al. 2021; Korthikanti et al. 2022) for a GPT with d_ff = 4h.

    Without recomputation: 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)); with full activation
    recomputation (one extra forward of every layer): 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)).
    ``B·s`` is the number of tokens.
    """
    d = _positive("tokens", tokens)
    l_ = _positive("n_layers", n_layers)
    h = _positive("d_model", d_model)
    s = _positive("seq_len", seq_len) * _attention_factor(causal)
    v = _positive("vocab_size", vocab_size)
    if recompute:
        return 96.0 * d * l_ * h * h * (1.0 + s / (6.0 * h) + v / (16.0 * l_ * h))
    return 72.0 * d * l_ * h * h * (1.0 + s / (6.0 * h) + v / (12.0 * l_ * h))


# --- a transformer's shape and its per-layer count -------------------------------------------


class Transformer(BaseModel):
    """The shape of a decoder-only transformer: enough to count its parameters and FLOP.

    ``d_ff`` defaults to 4·d_model; ``n_kv_heads`` (grouped-query attention) to ``n_heads``;
    ``d_head`` to d_model / n_heads. ``gated_mlp`` means three d_model×d_ff matrices (SwiGLU).
    ``n_experts`` > 1 makes the MLP a mixture of experts with ``experts_per_token`` active.
    Parameter counts cover weight matrices only; biases and norm gains (< 0.1 % at scale)
    are left out.
    """

    model_config = ConfigDict(frozen=True)

    n_layers: int = Field(gt=0)
    d_model: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    d_ff: int | None = Field(default=None, gt=0)
    n_kv_heads: int | None = Field(default=None, gt=0)
    d_head: int | None = Field(default=None, gt=0)
    gated_mlp: bool = False
    n_experts: int = Field(default=1, gt=0)
    experts_per_token: int = Field(default=1, gt=0)
    tied_embeddings: bool = False
    learned_positions: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Transformer:
        if self.d_head is None and self.d_model % self.n_heads:
            raise ValueError(
                f"heads ({self.n_heads}) must divide d_model ({self.d_model}) "
                "unless d_head is given"
            )
        if self.n_heads % self.kv_heads:
            raise ValueError(
                f"kv heads ({self.kv_heads}) must divide heads ({self.n_heads})"
            )
        if self.experts_per_token > self.n_experts:
            raise ValueError(
                f"experts per token ({self.experts_per_token}) cannot exceed "
                f"experts ({self.n_experts})"
            )
        return self

    @property
    def ffn(self) -> int:
        return self.d_ff if self.d_ff is not None else 4 * self.d_model

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads

    @property
    def d_attn(self) -> int:
        """Width of the attention (query heads × head dim)."""
        return self.n_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 1

    def _attention_params(self) -> int:
        d, dh = self.d_model, self.head_dim
        return d * self.d_attn + 2 * d * self.kv_heads * dh + self.d_attn * d

    def _expert_params(self) -> int:
        return (3 if self.gated_mlp else 2) * self.d_model * self.ffn

    def _router_params(self) -> int:
        return self.d_model * self.n_experts if self.is_moe else 0

    def non_embedding_params(self, *, active: bool = False) -> int:
        """Weights of the transformer layers (all experts, or the active ones per token)."""
        experts = self.experts_per_token if active else self.n_experts
        per_layer = self._attention_params() + experts * self._expert_params()
        return self.n_layers * (per_layer + self._router_params())

    def embedding_params(self) -> int:
        """Token embedding, positional embedding if learned, and the output matrix if untied."""
        n = self.vocab_size * self.d_model
        if self.learned_positions:
            n += self.seq_len * self.d_model
        if not self.tied_embeddings:
            n += self.vocab_size * self.d_model
        return n

    def params(self) -> int:
        """All parameters (the headline size, e.g. '70B')."""
        return self.non_embedding_params() + self.embedding_params()

    def active_params(self) -> int:
        """Parameters used per token: all of them for a dense model, top-k experts for MoE."""
        return self.non_embedding_params(active=True) + self.embedding_params()


def _problems(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def make_transformer(**fields: Any) -> Transformer:
    """A ``Transformer``, raising ``ComputeError`` (not a pydantic error) when inconsistent."""
    try:
        return Transformer(**fields)
    except ValidationError as exc:
        raise ComputeError(
            f"inconsistent architecture: {_problems(exc)}.",
            hint="Check layers, d-model, heads (and kv-heads, experts) against each other.",
        ) from None


class FlopBreakdown(BaseModel):
    """Forward FLOP per token by component, and the training total for ``tokens`` tokens."""

    model_config = ConfigDict(frozen=True)

    per_token_forward: dict[str, float]
    tokens: float
    causal: Causal
    training: bool

    @property
    def forward_per_token(self) -> float:
        return sum(self.per_token_forward.values())

    @property
    def per_token(self) -> float:
        """FLOP per token of one step: forward, plus backward (2×) when training."""
        return self.forward_per_token * (3.0 if self.training else 1.0)

    @property
    def total(self) -> float:
        return self.per_token * self.tokens


def transformer_flop(
    arch: Transformer,
    tokens: float,
    *,
    causal: Causal = "full",
    embeddings: Literal["lookup", "matmul"] = "lookup",
    softmax: bool = False,
    training: bool = True,
) -> FlopBreakdown:
    """The full per-layer count (Hoffmann et al. 2022, App. F) for ``tokens`` tokens.

    Components per token of the forward pass: embeddings, QKV projections, attention logits
    (QKᵀ), softmax (optional, 3 per score: Chinchilla's convention), attention over values,
    output projection, MLP (gated or not; top-k experts plus router for MoE), final logits.
    ``embeddings="lookup"`` counts the embedding as the gather it is (0 FLOP, as a FLOP
    counter sees it); ``"matmul"`` counts it as a one-hot matmul as Chinchilla does.
    Training = 3 × forward.
    """
    n_tokens = _positive("tokens", tokens)
    factor = _attention_factor(causal)
    if embeddings not in ("lookup", "matmul"):
        raise ComputeError(f"embeddings must be 'lookup' or 'matmul', got {embeddings!r}.")
    d, t, v = arch.d_model, arch.seq_len, arch.vocab_size
    d_attn, d_kv = arch.d_attn, arch.kv_heads * arch.head_dim
    ctx = t * factor  # keys each query attends to, on average
    layers = arch.n_layers
    mlp = 2.0 * arch.experts_per_token * arch._expert_params()
    if arch.is_moe:
        mlp += 2.0 * d * arch.n_experts
    parts = {
        "embeddings": 2.0 * v * d if embeddings == "matmul" else 0.0,
        "qkv": layers * 2.0 * d * (d_attn + 2 * d_kv),
        "attention_logits": layers * 2.0 * ctx * d_attn,
        "attention_softmax": layers * 3.0 * arch.n_heads * ctx if softmax else 0.0,
        "attention_values": layers * 2.0 * ctx * d_attn,
        "attention_output": layers * 2.0 * d_attn * d,
        "mlp": layers * mlp,
        "logits": 2.0 * d * v,
    }
    return FlopBreakdown(per_token_forward=parts, tokens=n_tokens, causal=causal, training=training)


# --- hardware -------------------------------------------------------------------------------


class HardwarePeriod(BaseModel):
    """A stretch of training with a constant number of chips of one kind.

    ``utilisation`` is the measured model-FLOP utilisation (MFU, 0–1); when absent the EU
    default for ``model_kind`` applies. ``peak_flops`` overrides the chip table (a chip it
    lacks, or a measured sustained peak).
    """

    model_config = ConfigDict(frozen=True)

    chips: int = Field(gt=0)
    seconds: float = Field(gt=0)
    chip: str | None = None
    dtype: str = "bf16"
    utilisation: float | None = Field(default=None, gt=0, le=1)
    peak_flops: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _has_peak(self) -> HardwarePeriod:
        if self.chip is None and self.peak_flops is None:
            raise ValueError("a period needs a chip from the table or its peak_flops")
        if self.chip is not None and self.peak_flops is None:
            # ComputeError passes through pydantic unchanged, listing the known chips.
            get_chip(self.chip).peak_flops(self.dtype)
        return self

    @classmethod
    def of_hours(
        cls, chips: int, hours: float, chip: str | None = None, **kw: Any
    ) -> HardwarePeriod:
        """A period given in wall-clock hours; ``ComputeError`` when a value is out of range."""
        seconds = _positive("hours", hours) * 3600.0
        if not math.isfinite(seconds):
            raise ComputeError(f"hours {hours!r} is too large to be a training time.")
        try:
            return cls(chips=chips, seconds=seconds, chip=chip, **kw)
        except ValidationError as exc:
            raise ComputeError(f"invalid hardware period: {_problems(exc)}.") from None

    def peak(self) -> float:
        """Dense peak FLOP/s of one chip in this period's format."""
        if self.peak_flops is not None:
            return self.peak_flops
        assert self.chip is not None
        chip: Chip = get_chip(self.chip)
        return chip.peak_flops(self.dtype)

    def flop(self, model_kind: ModelKind = "language") -> float:
        """chips × seconds × peak × utilisation."""
        if self.utilisation is not None:
            u = self.utilisation
        elif model_kind in DEFAULT_UTILISATION:
            u = DEFAULT_UTILISATION[model_kind]
        else:
            raise ComputeError(f"model_kind must be 'language' or 'other', got {model_kind!r}.")
        return self.chips * self.seconds * self.peak() * u


def hardware(periods: Iterable[HardwarePeriod], model_kind: ModelKind = "language") -> float:
    """Σ chips × seconds × peak FLOP/s × utilisation over periods of constant chip count."""
    items = list(periods)
    if not items:
        raise ComputeError("the hardware method needs at least one period of training.")
    return sum(p.flop(model_kind) for p in items)


__all__ = [
    "DEFAULT_UTILISATION",
    "Causal",
    "FlopBreakdown",
    "HardwarePeriod",
    "ModelKind",
    "Transformer",
    "hardware",
    "kaplan",
    "kaplan_forward_per_token",
    "make_transformer",
    "megatron",
    "palm",
    "six_nd",
    "transformer_flop",
]
