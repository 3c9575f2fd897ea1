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

#: The phases in order, read from :data:`Phase` itself: one list, never two to keep in step.
PHASES: tuple[str, ...] = get_args(Phase)

__all__ = ["PHASES", "Phase"]
