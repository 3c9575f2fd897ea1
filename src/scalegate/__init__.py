"""scalegate: responsible scaling policies as running software.

The public API is re-exported here; heavy dependencies (torch, inspect-ai,
transformers) are imported lazily by the modules that need them, so
``import scalegate`` is fast and works without them.
"""

from scalegate.errors import (
    AppendRefused,
    ComputeError,
    EvaluationError,
    LedgerError,
    PolicyError,
    ProofError,
    RunPaused,
    ScalegateError,
)

__version__ = "0.1.0"

__all__ = [
    "AppendRefused",
    "ComputeError",
    "EvaluationError",
    "LedgerError",
    "PolicyError",
    "ProofError",
    "RunPaused",
    "ScalegateError",
    "__version__",
]
