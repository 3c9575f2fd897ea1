"""Policies as code: the schema, the YAML loader, and the bundled library.

>>> from scalegate.policy import load_policy
>>> policy = load_policy("anthropic-rsp-2.2")
>>> policy.evaluation.every
4.0
"""

from scalegate.errors import PolicyError
from scalegate.policy.library import bundled_policies, bundled_text, load_policy
from scalegate.policy.loader import load_policy_file, parse_policy, policy_from_data
from scalegate.policy.quorum import (
    QuorumClause,
    Seating,
    describe_quorum,
    quorum_roles,
    seat_quorum,
)
from scalegate.policy.schema import (
    SCHEMA_VERSION,
    Capability,
    Compute,
    ComputeThreshold,
    Disclosure,
    EffectiveCompute,
    EvaluationCadence,
    EvaluationTrigger,
    Governance,
    Level,
    Notify,
    OnAlert,
    OnTrigger,
    Policy,
    Regime,
    ResumptionRule,
    Safeguard,
    Source,
    Window,
)

__all__ = [
    "SCHEMA_VERSION",
    "Capability",
    "Compute",
    "ComputeThreshold",
    "Disclosure",
    "EffectiveCompute",
    "EvaluationCadence",
    "EvaluationTrigger",
    "Governance",
    "Level",
    "Notify",
    "OnAlert",
    "OnTrigger",
    "Policy",
    "PolicyError",
    "QuorumClause",
    "Regime",
    "ResumptionRule",
    "Safeguard",
    "Seating",
    "Source",
    "Window",
    "bundled_policies",
    "bundled_text",
    "describe_quorum",
    "load_policy",
    "load_policy_file",
    "parse_policy",
    "policy_from_data",
    "quorum_roles",
    "seat_quorum",
]
