"""The ``Evaluation`` protocol every evaluation backend implements."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from scalegate.evals._result import EvalContext, EvalResult


@runtime_checkable
class Evaluation(Protocol):
    """A capability evaluation the supervisor runs at compute milestones.

    ``id`` is what the policy's evaluation triggers name; ``capability`` the domain it
    measures; ``metric`` the name of the value it reports. ``run`` evaluates ``model``
    (for the built-in backends: the ``torch.nn.Module`` under training) and returns one
    or more results. Implementations may raise; ``Suite`` turns any exception into a
    failed result. An implementation may also offer ``async def run_async(model,
    context)``, which ``Suite.run_async`` prefers inside a running event loop.
    """

    @property
    def id(self) -> str: ...

    @property
    def capability(self) -> str: ...

    @property
    def metric(self) -> str: ...

    def run(self, model: Any, context: EvalContext) -> list[EvalResult]: ...
