"""The measured cost of one training step (torch-free, so accounts and statements can use it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StepFlop(BaseModel):
    """FLOP of one step of one input signature, as counted by ``torch.utils.flop_counter``.

    ``total`` is everything counted: ``forward + backward + recomputation``.
    ``recomputation`` is forward work redone during the backward pass (activation
    checkpointing, and the attention scores a fused attention backward recomputes); the EU
    guidelines let it be left out, so accounts file it under the ``recomputation`` phase.
    ``uncounted_ops`` maps each operator that ran but has no FLOP formula, and is not a
    known linear-cost operator (elementwise, view, norm, reduction...), to its call count:
    if it is not empty the count is a lower bound.
    """

    model_config = ConfigDict(frozen=True)

    total: float = Field(ge=0)
    forward: float = Field(ge=0)
    backward: float = Field(ge=0)
    recomputation: float = Field(default=0.0, ge=0)
    by_op: dict[str, float] = Field(default_factory=dict)
    uncounted_ops: dict[str, int] = Field(default_factory=dict)
    signature: str = ""

    @property
    def model_flop(self) -> float:
        """FLOP excluding recomputation: what the EU total counts."""
        return self.total - self.recomputation

    @property
    def by_kind(self) -> dict[str, float]:
        """``{"forward", "backward", "recomputation"}`` → FLOP."""
        return {
            "forward": self.forward,
            "backward": self.backward,
            "recomputation": self.recomputation,
        }

    @property
    def complete(self) -> bool:
        """True when every operator that ran was counted or is known to be negligible."""
        return not self.uncounted_ops

    def by_phase(self, phase: str = "pretraining") -> dict[str, float]:
        """How an account should file this step: model FLOP under ``phase``, the rest
        under ``recomputation``."""
        out = {phase: self.model_flop}
        if self.recomputation:
            out["recomputation"] = self.recomputation
        return out


__all__ = ["StepFlop"]
