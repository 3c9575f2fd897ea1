"""Run evaluations without disturbing training: train/eval mode and random number streams.

Evaluating must not change what training does next: dropout must be off while
evaluating and back on afterwards, each submodule in the mode it was in (a frozen
batch-norm stays in eval mode), and sampling during an evaluation must not advance
the random streams the training loop draws from. torch and numpy are touched only if
the process has already imported them.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _module_modes(model: Any) -> list[tuple[Any, bool]]:
    modules = getattr(model, "modules", None)
    if callable(modules) and hasattr(model, "training"):
        return [(m, bool(m.training)) for m in modules()]
    return []


@contextmanager
def preserved_mode(model: Any, *, training: bool | None = False) -> Iterator[None]:
    """Put ``model`` (a ``torch.nn.Module``; anything else is left alone) in eval mode
    (or ``training``'s mode; ``None`` leaves it) and restore every submodule's own mode after.
    """
    modes = _module_modes(model)
    try:
        if modes and training is not None:
            model.train(training)
        yield
    finally:
        # Set the flag module by module: model.train(x) would overwrite children
        # that were deliberately in another mode.
        for module, was_training in modes:
            module.training = was_training


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore Python's, numpy's and torch's (CPU and initialised CUDA) global RNG states."""
    py_state = random.getstate()
    np = sys.modules.get("numpy")
    np_state = np.random.get_state() if np is not None else None
    torch = sys.modules.get("torch")
    torch_state = torch.random.get_rng_state() if torch is not None else None
    cuda_states = None
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_states = torch.cuda.get_rng_state_all()
    try:
        yield
    finally:
        random.setstate(py_state)
        if np is not None and np_state is not None:
            np.random.set_state(np_state)
        if torch is not None and torch_state is not None:
            torch.random.set_rng_state(torch_state)
        if torch is not None and cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


@contextmanager
def isolated(model: Any) -> Iterator[None]:
    """Evaluate ``model`` in eval mode, then restore its modes and all global RNG states."""
    with preserved_rng(), preserved_mode(model, training=False):
        yield
