"""scalegate: responsible scaling policies as running software.

The public API is re-exported here. Names are resolved lazily, so ``import scalegate``
is fast and never imports torch, inspect-ai or transformers.

>>> from scalegate import Ledger, SigningKey, Supervisor, load_policy
"""

from __future__ import annotations

import importlib
from typing import Any

from scalegate.errors import (
    AppendRefused,
    ComputeError,
    EvaluationError,
    LedgerError,
    LedgerUnavailable,
    PolicyError,
    ProofError,
    RunError,
    RunPaused,
    ScalegateError,
    VerificationError,
)

__version__ = "0.1.0"

_LAZY = {
    "Supervisor": "scalegate.supervisor",
    "Ledger": "scalegate.ledger.log",
    "SigningKey": "scalegate.ledger.keys",
    "VerifierKey": "scalegate.ledger.keys",
    "Policy": "scalegate.policy",
    "load_policy": "scalegate.policy",
    "bundled_policies": "scalegate.policy",
    "decide": "scalegate.gate",
    "resumption": "scalegate.gate",
    "Decision": "scalegate.gate",
    "RunState": "scalegate.state",
    "fold": "scalegate.state",
    "ComputeAccount": "scalegate.compute",
    "StepCounter": "scalegate.compute",
    "Probe": "scalegate.evals",
    "Suite": "scalegate.evals",
    "InspectEvaluation": "scalegate.evals",
    "publish_policy": "scalegate.governance",
    "attest": "scalegate.governance",
    "approve": "scalegate.governance",
    "resume": "scalegate.governance",
    "audit_ledger": "scalegate.audit",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scalegate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "AppendRefused",
    "ComputeError",
    "EvaluationError",
    "LedgerError",
    "LedgerUnavailable",
    "PolicyError",
    "ProofError",
    "RunError",
    "RunPaused",
    "ScalegateError",
    "VerificationError",
    "__version__",
    *_LAZY,
]
