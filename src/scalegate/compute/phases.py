"""The canonical names of training-compute phases.

Policies define their regimes (EU AI Act, California SB 53, lab frameworks) as
sets of these phases; compute statements report FLOP by phase. One list, used
everywhere, so a regime can never name a phase the accounts do not know.
"""

from __future__ import annotations

from typing import Literal, get_args

Phase = Literal[
    "pretraining",
    "fine-tuning",
    "rl",
    "synthetic-data",
    "synthetic-data-public",
    "merged-weights",
    "recomputation",
    "evaluation",
    "reward-model",
    "distillation-teacher",
    "exploratory",
]

PHASES: tuple[str, ...] = (
    "pretraining",
    "fine-tuning",
    "rl",
    "synthetic-data",
    "synthetic-data-public",
    "merged-weights",
    "recomputation",
    "evaluation",
    "reward-model",
    "distillation-teacher",
    "exploratory",
)

# Keep the Literal and the tuple identical: a typo in one would silently split them.
assert get_args(Phase) == PHASES, "PHASES and Phase disagree"

__all__ = ["PHASES", "Phase"]
