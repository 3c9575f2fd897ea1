"""Inspect AI backend: run any Inspect ``Task`` against the weights being trained.

``inspect_ai`` and ``torch`` are imported only inside the functions here, so importing
``scalegate.evals`` stays light. Tasks run in-process through ``eval_async`` with no
sandbox and no network; a task's score is read only from a log whose status is
``success``, anything else is a failed result.

Calling from inside a running event loop: ``await evaluation.run_async(model, ctx)``
(or ``await suite.run_async(...)``). The synchronous ``run`` also works there: it then
runs the evaluation on a fresh event loop in a worker thread and blocks until it ends.
Inspect allows one ``eval_async`` at a time per process; a second concurrent one fails
(and is recorded as a failed evaluation).
"""

from __future__ import annotations

import importlib.util
import math
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from scalegate.errors import EvaluationError
from scalegate.evals._async_bridge import run_blocking
from scalegate.evals._isolation import preserved_mode
from scalegate.evals._log import context_record, file_sha256, sha256_hex, write_record
from scalegate.evals._result import EvalContext, EvalResult, utc_now

if TYPE_CHECKING:
    import torch
    from inspect_ai import Task
    from inspect_ai.log import EvalLog
    from inspect_ai.model import Model

# Options scalegate sets itself; a caller may not override them through eval_options.
_RESERVED = frozenset(
    {"tasks", "model", "model_args", "log_dir", "log_format", "sandbox", "metadata", "ctl_server"}
)


def _require_inspect() -> None:
    if importlib.util.find_spec("inspect_ai") is None or importlib.util.find_spec("torch") is None:
        raise EvaluationError(
            "the Inspect backend needs inspect-ai and torch, which are not installed.",
            hint="Install them with: pip install 'scalegate[inspect,torch]'.",
        )


def _harness() -> str:
    try:
        import inspect_ai

        return f"inspect-ai {inspect_ai.__version__}"
    except Exception:
        return "inspect-ai"


def local_torch_model(
    module: torch.nn.Module,
    encode: Callable[[str], Sequence[int]],
    decode: Callable[[Sequence[int]], str],
    *,
    name: str | None = None,
    max_new_tokens: int = 32,
    generate_fn: Callable[[torch.nn.Module, list[int], int], Sequence[int]] | None = None,
    stop_seqs: Sequence[str] = (),
    context_length: int | None = None,
    format_prompt: Callable[[list[Any]], str] | None = None,
    config: Any = None,
) -> Model:
    """An Inspect ``Model`` that generates with the current weights of ``module``.

    Equivalent to ``get_model("scalegate/<name>", memoize=False, module=module, ...)``;
    ``name`` defaults to the module's class name. ``config`` is an optional Inspect
    ``GenerateConfig``. See ``TorchModelAPI`` for how generation works.
    """
    _require_inspect()
    from inspect_ai.model import GenerateConfig, get_model

    from scalegate.evals._torch_model import PROVIDER

    return get_model(
        f"{PROVIDER}/{name or type(module).__name__}",
        # Never memoize: the cache key renders the module as null, so a cached model
        # could answer with another module's weights.
        memoize=False,
        config=config or GenerateConfig(),
        module=module,
        encode=encode,
        decode=decode,
        max_new_tokens=max_new_tokens,
        generate_fn=generate_fn,
        stop_seqs=tuple(stop_seqs),
        context_length=context_length,
        format_prompt=format_prompt,
    )


@contextmanager
def _quiet_display() -> Iterator[None]:
    """Inspect's display set to "none" for the duration (eval_async would pick "plain").

    The display type is process-global state in a private module; if it moves, fall back
    to Inspect's default rather than fail the evaluation.
    """
    try:
        from inspect_ai.util import _display as display
    except ImportError:  # pragma: no cover - depends on inspect_ai internals
        yield
        return
    previous = getattr(display, "_display_type", None)
    display.init_display_type("none")
    try:
        yield
    finally:
        display._display_type = previous


class InspectEvaluation:
    """An evaluation defined by an Inspect AI ``Task``, run in-process on the model.

    ``task`` is a ``Task`` or a zero-argument callable returning one (called on every
    run, e.g. to reload a dataset). ``run(model, context)`` accepts the ``torch.nn.Module``
    under training (wrapped with ``local_torch_model`` using ``encode``/``decode`` and the
    generation options given here) or a ready Inspect ``Model``.

    The value is the metric ``scorer_metric`` of the score named ``score_name`` (default:
    the task's first scorer); ``stderr`` is Inspect's ``stderr`` metric when the scorer
    has one; ``n`` is the number of samples scored. ``eval_options`` are passed to
    ``inspect_ai.eval_async`` (e.g. ``epochs``, ``limit``, ``fail_on_error``,
    ``temperature``). ``context.seed`` becomes the generation seed. The Inspect log is
    written under ``context.log_dir`` (a temporary directory if none) and its file's
    SHA-256 is the result's ``log_digest``. With Inspect's default ``fail_on_error=True``
    one failing sample fails the whole evaluation, which is then recorded as failed.
    """

    def __init__(
        self,
        id: str,
        capability: str,
        metric: str,
        task: Task | Callable[[], Task],
        *,
        scorer_metric: str = "accuracy",
        score_name: str | None = None,
        encode: Callable[[str], Sequence[int]] | None = None,
        decode: Callable[[Sequence[int]], str] | None = None,
        max_new_tokens: int = 32,
        generate_fn: Callable[[Any, list[int], int], Sequence[int]] | None = None,
        stop_seqs: Sequence[str] = (),
        context_length: int | None = None,
        format_prompt: Callable[[list[Any]], str] | None = None,
        model_name: str | None = None,
        elicitation: str | None = None,
        eval_options: Mapping[str, Any] | None = None,
        log_format: str = "json",
    ) -> None:
        if not id:
            raise EvaluationError("an Inspect evaluation needs a non-empty id.")
        options = dict(eval_options or {})
        clash = sorted(_RESERVED & options.keys())
        if clash:
            raise EvaluationError(
                f"evaluation {id!r}: eval_options may not set {clash}; scalegate sets them.",
                hint="Pass the task and model to InspectEvaluation itself.",
            )
        if log_format not in ("json", "eval"):
            raise EvaluationError(f"log_format must be 'json' or 'eval', got {log_format!r}.")
        self.id = id
        self.capability = capability
        self.metric = metric
        self.task = task
        self.scorer_metric = scorer_metric
        self.score_name = score_name
        self.encode = encode
        self.decode = decode
        self.max_new_tokens = max_new_tokens
        self.generate_fn = generate_fn
        self.stop_seqs = tuple(stop_seqs)
        self.context_length = context_length
        self.format_prompt = format_prompt
        self.model_name = model_name
        self.eval_options = options
        self.log_format: Literal["json", "eval"] = "json" if log_format == "json" else "eval"
        self.elicitation = elicitation or self._default_elicitation()

    def __repr__(self) -> str:
        return (
            f"InspectEvaluation(id={self.id!r}, capability={self.capability!r}, "
            f"metric={self.metric!r})"
        )

    @property
    def harness(self) -> str:
        """``inspect-ai <version>``."""
        return _harness()

    def _default_elicitation(self) -> str:
        temperature = self.eval_options.get("temperature")
        parts = [f"temperature={temperature}" if temperature else "greedy"]
        if self.generate_fn is not None:
            parts = ["custom generate_fn"]
        parts.append(f"max_new_tokens={self.eval_options.get('max_tokens', self.max_new_tokens)}")
        epochs = self.eval_options.get("epochs")
        if epochs:
            parts.append(f"epochs={epochs}")
        return ", ".join(parts)

    # --- running ----------------------------------------------------------------------

    def run(self, model: Any, context: EvalContext) -> list[EvalResult]:
        """Run the task on ``model``; never raises for a failing evaluation (see module doc)."""
        return run_blocking(lambda: self.run_async(model, context))

    async def run_async(self, model: Any, context: EvalContext) -> list[EvalResult]:
        """``run`` for callers already inside an event loop."""
        started = utc_now()
        try:
            _require_inspect()
            with preserved_mode(model, training=None):
                log, digest = await self._eval(model, context)
        except Exception as ex:
            return [self._failed_before_log(context, started, ex)]
        return [self._result_from_log(log, digest, context, started)]

    def _inspect_model(self, model: Any) -> Model:
        from inspect_ai.model import Model

        if isinstance(model, Model):
            return model
        import torch

        if not isinstance(model, torch.nn.Module):
            raise EvaluationError(
                f"evaluation {self.id!r} was given a {type(model).__name__}; expected a "
                "torch.nn.Module or an inspect_ai Model."
            )
        if self.encode is None or self.decode is None:
            raise EvaluationError(
                f"evaluation {self.id!r} was given a torch module but no encode/decode.",
                hint="Pass encode= and decode= to InspectEvaluation.",
            )
        return local_torch_model(
            model,
            self.encode,
            self.decode,
            name=self.model_name,
            max_new_tokens=self.max_new_tokens,
            generate_fn=self.generate_fn,
            stop_seqs=self.stop_seqs,
            context_length=self.context_length,
            format_prompt=self.format_prompt,
        )

    def _resolve_task(self) -> Task:
        from inspect_ai import Task

        task = self.task if isinstance(self.task, Task) else self.task()
        if not isinstance(task, Task):
            raise EvaluationError(
                f"evaluation {self.id!r}: the task factory returned {type(task).__name__}, "
                "not an inspect_ai Task."
            )
        if task.sandbox is not None:
            raise EvaluationError(
                f"evaluation {self.id!r}: the task asks for a sandbox ({task.sandbox.type}); "
                "scalegate runs Inspect tasks in-process, without sandboxes or network.",
                hint="Use a task whose solvers and scorers need no sandbox.",
            )
        return task

    async def _eval(self, model: Any, context: EvalContext) -> tuple[EvalLog, str]:
        from inspect_ai import eval_async

        inspect_model = self._inspect_model(model)
        task = self._resolve_task()
        options: dict[str, Any] = {
            "log_realtime": False,
            "log_samples": True,
            # no control-channel socket for an in-process evaluation
            "ctl_server": False,
        }
        if context.seed is not None:
            options["seed"] = context.seed
        options.update(self.eval_options)
        metadata = {"scalegate": {"evaluation_id": self.id, **context_record(context)}}
        with tempfile.TemporaryDirectory(prefix="scalegate-inspect-") as tmp:
            log_dir = Path(context.log_dir) if context.log_dir is not None else Path(tmp)
            log_dir.mkdir(parents=True, exist_ok=True)
            with _quiet_display():
                logs = await eval_async(
                    task,
                    model=inspect_model,
                    log_dir=str(log_dir),
                    log_format=self.log_format,
                    metadata=metadata,
                    **options,
                )
            if len(logs) != 1:
                raise EvaluationError(f"Inspect returned {len(logs)} logs for one task.")
            # Hash the file while it exists (a temporary directory goes away below).
            return logs[0], _log_digest(logs[0])

    # --- results ----------------------------------------------------------------------

    def _failed(
        self, context: EvalContext, started: datetime, error: str, digest: str, n: int = 0
    ) -> EvalResult:
        return EvalResult.failed_for(
            self, context, error=error, log_digest=digest, started_at=started, n=n
        )

    def _failed_before_log(
        self, context: EvalContext, started: datetime, ex: Exception
    ) -> EvalResult:
        error = f"{type(ex).__name__}: {ex}"
        record = {
            "evaluation_id": self.id,
            "harness": self.harness,
            "context": context_record(context),
            "status": "failed",
            "error": error,
            "traceback": traceback.format_exc(),
            "started_at": started.isoformat(),
        }
        return self._failed(context, started, error, write_record(context, self.id, record))

    def _result_from_log(
        self, log: EvalLog, digest: str, context: EvalContext, started: datetime
    ) -> EvalResult:
        if log.status != "success":
            reason = log.error.message if log.error is not None else "no error recorded"
            return self._failed(
                context, started, f"Inspect log status is {log.status!r}: {reason}", digest
            )
        results = log.results
        if results is None or not results.scores:
            return self._failed(context, started, "the Inspect log has no scores", digest)
        scores = results.scores
        if self.score_name is None:
            score = scores[0]
        else:
            named = [s for s in scores if s.name == self.score_name]
            if not named:
                return self._failed(
                    context,
                    started,
                    f"no score named {self.score_name!r} in the Inspect log "
                    f"(scores: {[s.name for s in scores]})",
                    digest,
                )
            score = named[0]
        n = score.scored_samples if score.scored_samples is not None else results.completed_samples
        metric = score.metrics.get(self.scorer_metric)
        if metric is None:
            return self._failed(
                context,
                started,
                f"score {score.name!r} has no metric {self.scorer_metric!r} "
                f"(metrics: {sorted(score.metrics)})",
                digest,
                n,
            )
        value = float(metric.value)
        if not math.isfinite(value):
            return self._failed(
                context,
                started,
                f"metric {self.scorer_metric!r} is {value} (no samples scored?)",
                digest,
                n,
            )
        stderr_metric = score.metrics.get("stderr")
        return EvalResult(
            evaluation_id=self.id,
            capability=self.capability,
            metric=self.metric,
            value=value,
            stderr=float(stderr_metric.value) if stderr_metric is not None else None,
            n=n,
            elicitation=self.elicitation,
            harness=self.harness,
            checkpoint=context.checkpoint,
            log_digest=digest,
            status="success",
            started_at=started,
            completed_at=max(utc_now(), started),
        )


def _log_digest(log: EvalLog) -> str:
    """SHA-256 of the log file Inspect wrote, or of the log's JSON if there is no file."""
    location = getattr(log, "location", None)
    if location and Path(location).is_file():
        return file_sha256(location)
    return sha256_hex(log.model_dump_json().encode())
