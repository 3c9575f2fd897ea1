"""``Probe``: an evaluation that is a plain Python callable."""

from __future__ import annotations

import math
import numbers
import traceback
from collections.abc import Callable
from typing import Any

from scalegate.errors import EvaluationError
from scalegate.evals._log import context_record, write_record
from scalegate.evals._result import EvalContext, EvalResult, utc_now

ProbeOutput = float | tuple[float, float | None, int]
"""What a probe function returns: a value, or ``(value, stderr, n)``."""


def _parse_output(out: Any, probe_id: str) -> tuple[float, float | None, int]:
    def number(x: Any, what: str) -> float:
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            raise EvaluationError(
                f"probe {probe_id!r} returned {what} {x!r} ({type(x).__name__}); "
                "expected a number.",
                hint="Return a float, or a tuple (value, stderr, n).",
            )
        v = float(x)
        if not math.isfinite(v):
            raise EvaluationError(
                f"probe {probe_id!r} returned a non-finite {what} ({v}).",
                hint="Raise an exception if the probe could not measure anything.",
            )
        return v

    if isinstance(out, tuple):
        if len(out) != 3:
            raise EvaluationError(
                f"probe {probe_id!r} returned a tuple of {len(out)} items; expected "
                "(value, stderr, n)."
            )
        value, stderr, n = out
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise EvaluationError(
                f"probe {probe_id!r} returned n={n!r}; expected a non-negative integer count."
            )
        return (
            number(value, "value"),
            None if stderr is None else number(stderr, "stderr"),
            int(n),
        )
    return number(out, "value"), None, 1


class Probe:
    """An evaluation computed by ``fn(model, context)``.

    ``fn`` returns the value, or ``(value, stderr, n)`` (a bare value counts as ``n=1``).
    If ``fn`` raises or returns something unusable, the result is a failed evaluation
    (never an exception). A JSON log of the run (inputs, outcome, traceback on failure)
    is written under ``context.log_dir`` and its digest recorded.
    """

    def __init__(
        self,
        id: str,
        capability: str,
        metric: str,
        fn: Callable[[Any, EvalContext], ProbeOutput],
        *,
        elicitation: str = "direct call",
        harness: str = "probe",
    ) -> None:
        if not id:
            raise EvaluationError("a probe needs a non-empty id (the policy's evaluation id).")
        if not callable(fn):
            raise EvaluationError(f"probe {id!r}: fn must be callable, got {type(fn).__name__}.")
        self.id = id
        self.capability = capability
        self.metric = metric
        self.fn = fn
        self.elicitation = elicitation
        self.harness = harness

    def __repr__(self) -> str:
        return f"Probe(id={self.id!r}, capability={self.capability!r}, metric={self.metric!r})"

    def run(self, model: Any, context: EvalContext) -> list[EvalResult]:
        """Call ``fn`` and record its value (or its failure) as one result."""
        started = utc_now()
        record: dict[str, Any] = {
            "evaluation_id": self.id,
            "capability": self.capability,
            "metric": self.metric,
            "harness": self.harness,
            "elicitation": self.elicitation,
            "fn": getattr(self.fn, "__qualname__", repr(self.fn)),
            "context": context_record(context),
            "started_at": started.isoformat(),
        }
        try:
            value, stderr, n = _parse_output(self.fn(model, context), self.id)
        except Exception as ex:
            error = f"{type(ex).__name__}: {ex}"
            record.update(
                status="failed",
                error=error,
                traceback=traceback.format_exc(),
                completed_at=utc_now().isoformat(),
            )
            return [
                EvalResult.failed_for(
                    self, context, error=error,
                    log_digest=write_record(context, self.id, record), started_at=started,
                )
            ]
        completed = max(utc_now(), started)
        record.update(
            status="success",
            value=value,
            stderr=stderr,
            n=n,
            completed_at=completed.isoformat(),
        )
        return [
            EvalResult(
                evaluation_id=self.id,
                capability=self.capability,
                metric=self.metric,
                value=value,
                stderr=stderr,
                n=n,
                elicitation=self.elicitation,
                harness=self.harness,
                checkpoint=context.checkpoint,
                log_digest=write_record(context, self.id, record),
                status="success",
                started_at=started,
                completed_at=completed,
            )
        ]
