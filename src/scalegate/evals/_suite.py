"""``Suite``: run a policy's evaluations, never raising, never disturbing training."""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from scalegate.errors import EvaluationError
from scalegate.evals._isolation import isolated
from scalegate.evals._log import context_record, write_record
from scalegate.evals._protocol import Evaluation
from scalegate.evals._result import EvalContext, EvalResult, utc_now


def _describe(evaluation: Any) -> str:
    return getattr(evaluation, "id", None) or type(evaluation).__name__


class Suite:
    """An ordered set of evaluations with distinct ids.

    ``run`` runs every evaluation and returns all their results. An evaluation that
    raises, returns nothing, or returns something that is not a valid ``EvalResult`` for
    itself yields a *failed* result (value ``None``, the error, a digest of an error log
    with the traceback); ``run`` itself never raises for what an evaluation does. While
    evaluating, the model is in eval mode; afterwards each submodule is back in the mode
    it was in and Python's, numpy's and torch's global RNG states are as they were.
    """

    def __init__(self, evaluations: Iterable[Evaluation]) -> None:
        evs = tuple(evaluations)
        seen: set[str] = set()
        for ev in evs:
            missing = [a for a in ("id", "capability", "metric", "run") if not hasattr(ev, a)]
            if missing or not callable(ev.run):
                lacks = ", ".join(missing) or "a callable run()"
                raise EvaluationError(
                    f"{_describe(ev)!r} is not an evaluation: it lacks {lacks}.",
                    hint="An evaluation has id, capability, metric and run(model, context).",
                )
            if not isinstance(ev.id, str) or not ev.id:
                raise EvaluationError(f"evaluation {ev!r} has no id; give it the policy's id.")
            if ev.id in seen:
                raise EvaluationError(
                    f"two evaluations in the suite share the id {ev.id!r}.",
                    hint="Evaluation ids must be unique: the policy's triggers refer to them.",
                )
            seen.add(ev.id)
        self._evaluations = evs

    @property
    def evaluations(self) -> tuple[Evaluation, ...]:
        """The evaluations, in run order."""
        return self._evaluations

    @property
    def ids(self) -> tuple[str, ...]:
        """The evaluation ids, in run order."""
        return tuple(ev.id for ev in self._evaluations)

    def __len__(self) -> int:
        return len(self._evaluations)

    def __iter__(self) -> Iterator[Evaluation]:
        return iter(self._evaluations)

    def __repr__(self) -> str:
        return f"Suite({list(self.ids)!r})"

    def run(self, model: Any, context: EvalContext) -> list[EvalResult]:
        """Run every evaluation on ``model``; see the class docstring. Safe from any thread.

        Called inside a running event loop, evaluations that need one (Inspect) run on a
        fresh loop in a worker thread; prefer ``await suite.run_async(...)`` there.
        """
        results: list[EvalResult] = []
        with isolated(model):
            for ev in self._evaluations:
                started = utc_now()
                try:
                    out = ev.run(model, context)
                except Exception as ex:
                    results.append(self._failure(ev, context, started, ex))
                    continue
                results.extend(self._checked(ev, context, started, out))
        return results

    async def run_async(self, model: Any, context: EvalContext) -> list[EvalResult]:
        """Like ``run``, for callers inside an event loop: evaluations with an async
        ``run_async`` are awaited on the current loop, the others are called directly.
        """
        results: list[EvalResult] = []
        with isolated(model):
            for ev in self._evaluations:
                started = utc_now()
                try:
                    run_async = getattr(ev, "run_async", None)
                    if run_async is not None and inspect.iscoroutinefunction(run_async):
                        out = await run_async(model, context)
                    else:
                        out = ev.run(model, context)
                except Exception as ex:
                    results.append(self._failure(ev, context, started, ex))
                    continue
                results.extend(self._checked(ev, context, started, out))
        return results

    # --- failures ---------------------------------------------------------------------

    @staticmethod
    def _failure(
        ev: Evaluation,
        context: EvalContext,
        started: datetime,
        ex: BaseException | None,
        *,
        error: str | None = None,
    ) -> EvalResult:
        message = error or f"{type(ex).__name__}: {ex}"
        record = {
            "evaluation_id": ev.id,
            "capability": getattr(ev, "capability", ""),
            "metric": getattr(ev, "metric", ""),
            "context": context_record(context),
            "status": "failed",
            "error": message,
            "traceback": "".join(traceback.format_exception(ex)) if ex is not None else None,
            "started_at": started.isoformat(),
        }
        return EvalResult.failed_for(
            ev, context, error=message, log_digest=write_record(context, ev.id, record),
            started_at=started,
        )

    def _checked(
        self, ev: Evaluation, context: EvalContext, started: datetime, out: Any
    ) -> list[EvalResult]:
        """The results ``ev`` returned, or one failed result saying why they are unusable."""
        if not isinstance(out, list | tuple) or not out:
            return [
                self._failure(
                    ev,
                    context,
                    started,
                    None,
                    error=f"evaluation {ev.id!r} returned {type(out).__name__} {out!r:.80}; "
                    "expected a non-empty list of EvalResult",
                )
            ]
        checked: list[EvalResult] = []
        for item in out:
            try:
                if isinstance(item, EvalResult):
                    result = item
                elif isinstance(item, Mapping):
                    result = EvalResult.model_validate(item)
                else:
                    raise TypeError(f"expected EvalResult, got {type(item).__name__}")
            except (ValidationError, TypeError) as ex:
                return [self._failure(ev, context, started, ex)]
            if result.evaluation_id != ev.id:
                return [
                    self._failure(
                        ev,
                        context,
                        started,
                        None,
                        error=f"evaluation {ev.id!r} returned a result for "
                        f"{result.evaluation_id!r}",
                    )
                ]
            checked.append(result)
        return checked
