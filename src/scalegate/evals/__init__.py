"""Capability evaluations run at compute milestones.

- ``Evaluation``: the protocol (``id``, ``capability``, ``metric``, ``run(model, context)``).
- ``EvalContext`` / ``EvalResult``: what an evaluation is given and what it reports; a
  failed evaluation is a result with ``status="failed"``, which the gate treats as missing.
- ``Suite``: runs evaluations, turning any exception into a failed result, restoring the
  model's train/eval modes and the global RNG states.
- ``Probe``: an evaluation that is a plain Python callable.
- ``InspectEvaluation``: an Inspect AI ``Task`` run in-process against the current weights,
  through the model provider ``local_torch_model`` / ``TorchModelAPI`` (``scalegate/...``).

Importing this package does not import torch or inspect_ai; ``TorchModelAPI`` is loaded
(and registered with Inspect) on first access.
"""

from typing import Any

from scalegate.evals._inspect import InspectEvaluation, local_torch_model
from scalegate.evals._isolation import isolated
from scalegate.evals._probe import Probe
from scalegate.evals._protocol import Evaluation
from scalegate.evals._result import EvalContext, EvalResult
from scalegate.evals._suite import Suite

__all__ = [
    "EvalContext",
    "EvalResult",
    "Evaluation",
    "InspectEvaluation",
    "Probe",
    "Suite",
    "TorchModelAPI",
    "isolated",
    "local_torch_model",
]


def __getattr__(name: str) -> Any:
    # TorchModelAPI subclasses inspect_ai's ModelAPI: importing it imports inspect_ai and torch.
    if name == "TorchModelAPI":
        from scalegate.evals._torch_model import TorchModelAPI

        return TorchModelAPI
    raise AttributeError(f"module 'scalegate.evals' has no attribute {name!r}")
