"""The gate: a pure function from policy and run state to a decision.

``decide(policy, state, now)`` returns a :class:`Decision` (verdict ``pause`` >
``evaluate`` > ``alert`` > ``continue``, reasons, obligations, next milestone);
``resumption(policy, state, pause)`` says whether a paused run may resume and what is
missing. Both are deterministic and never read the clock: the auditor replays them.
"""

from scalegate.gate._decide import decide
from scalegate.gate._measure import beyond, effective_counter, plus, reached
from scalegate.gate._model import (
    OBLIGATION_KINDS,
    RULE_KINDS,
    Decision,
    Missing,
    Resumption,
    rule_kind,
)
from scalegate.gate._resume import match_quorum, resumption

__all__ = [
    "OBLIGATION_KINDS",
    "RULE_KINDS",
    "Decision",
    "Missing",
    "Resumption",
    "beyond",
    "decide",
    "effective_counter",
    "match_quorum",
    "plus",
    "reached",
    "resumption",
    "rule_kind",
]
