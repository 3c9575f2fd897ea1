"""Training compute: formulas, the chip table, measured steps, accounts and projections.

Importing this package does not import torch. ``StepCounter``, ``count`` and
``Measurement`` (which need torch) are loaded on first access.

>>> from scalegate.compute import six_nd, format_flop
>>> format_flop(six_nd(175e9, 300e9), "6ND")
'3.2e23 FLOP (6ND)'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scalegate.compute.account import (
    EU_TOLERANCE,
    METHOD_PREFERENCE,
    AccountSnapshot,
    ComputeAccount,
    Reconciliation,
    RunAccount,
    format_flop,
    reconcile,
)
from scalegate.compute.chips import CHIPS, DTYPES, Chip, get_chip, known_chips
from scalegate.compute.estimate import (
    Estimate,
    MethodFigure,
    RunDescription,
    ThresholdCheck,
    check_thresholds,
    estimate,
)
from scalegate.compute.formulas import (
    DEFAULT_UTILISATION,
    FlopBreakdown,
    HardwarePeriod,
    Transformer,
    hardware,
    kaplan,
    kaplan_forward_per_token,
    make_transformer,
    megatron,
    palm,
    six_nd,
    transformer_flop,
)
from scalegate.compute.phases import PHASES, Phase
from scalegate.compute.projection import Crossing, PlanSegment, Projection, Threshold, project
from scalegate.compute.step import StepFlop

if TYPE_CHECKING:
    from scalegate.compute.counter import LossFn, Measurement, StepCounter, count

_LAZY = {"StepCounter", "Measurement", "LossFn", "count"}


def __getattr__(name: str) -> Any:
    # torch is imported only when the counter is actually used.
    if name in _LAZY:
        from scalegate.compute import counter

        return getattr(counter, name)
    raise AttributeError(f"module 'scalegate.compute' has no attribute {name!r}")


__all__ = [
    "CHIPS",
    "DEFAULT_UTILISATION",
    "DTYPES",
    "EU_TOLERANCE",
    "METHOD_PREFERENCE",
    "PHASES",
    "AccountSnapshot",
    "Chip",
    "ComputeAccount",
    "Crossing",
    "Estimate",
    "FlopBreakdown",
    "HardwarePeriod",
    "LossFn",
    "Measurement",
    "MethodFigure",
    "Phase",
    "PlanSegment",
    "Projection",
    "Reconciliation",
    "RunAccount",
    "RunDescription",
    "StepCounter",
    "StepFlop",
    "Threshold",
    "ThresholdCheck",
    "Transformer",
    "check_thresholds",
    "count",
    "estimate",
    "format_flop",
    "get_chip",
    "hardware",
    "kaplan",
    "kaplan_forward_per_token",
    "known_chips",
    "make_transformer",
    "megatron",
    "palm",
    "project",
    "reconcile",
    "six_nd",
    "transformer_flop",
]
