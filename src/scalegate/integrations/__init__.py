"""Framework integrations: one object added to the trainer a lab already has.

- ``scalegate.integrations.hf.ScalegateCallback``: Hugging Face ``Trainer``;
- ``scalegate.integrations.lightning.ScalegateCallback``: PyTorch Lightning;
- :class:`DistributedSupervisor`: a hand-written ``torch.distributed`` loop (every rank
  stops at the same step; rank 0 writes the ledger);
- :mod:`scalegate.integrations.trackers`: MLflow, W&B and TensorBoard reports;
- :func:`resume_checkpoint`: the checkpoint a resumed run must start from.

Importing this package imports neither torch nor any framework; each name is loaded on
first access.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalegate.integrations._restart import resume_checkpoint
    from scalegate.integrations.distributed import (
        DistributedSupervisor,
        SoloCollective,
        TorchCollective,
    )
    from scalegate.integrations.trackers import Report, Trackers

_LAZY = {
    "DistributedSupervisor": "scalegate.integrations.distributed",
    "SoloCollective": "scalegate.integrations.distributed",
    "TorchCollective": "scalegate.integrations.distributed",
    "Report": "scalegate.integrations.trackers",
    "Trackers": "scalegate.integrations.trackers",
    "resume_checkpoint": "scalegate.integrations._restart",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scalegate.integrations' has no attribute {name!r}")


__all__ = [
    "DistributedSupervisor",
    "Report",
    "SoloCollective",
    "TorchCollective",
    "Trackers",
    "resume_checkpoint",
]
