"""Experiment trackers: show a supervised run in the MLflow, W&B or TensorBoard run the user
already has.

At every decision the supervisor reports cumulative FLOP (all phases, and each policy
regime), effective FLOP, the next evaluation milestone, the scores of the evaluations it
just ran, and the gate's verdict (0 continue, 1 alert, 2 evaluate, 3 pause; the reasons as
a tag or text). Metric names start with ``scalegate/``.

Where the values go:

- Hugging Face ``Trainer`` (with ``trainer=``) and Lightning: through the framework's own
  logging (``trainer.log``, ``pl_module.log``), so every logger the user configured gets them;
- otherwise :class:`Trackers`: an MLflow run that is *active* (``mlflow.active_run()``), a W&B
  run that is *active* (``wandb.run``), and any TensorBoard ``SummaryWriter`` passed in.

A tracker run is never created: a module the user has not imported, or one with no active
run, is left alone. Cumulative FLOP is the x-axis where the tracker allows a float step
axis (W&B ``define_metric``); MLflow and TensorBoard steps are integers (FLOP overflows
them), so there the values are logged at the training step and ``scalegate/flop`` is a
metric to plot the others against.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from scalegate.errors import RunError
from scalegate.ledger import Verdict

if TYPE_CHECKING:
    from scalegate.supervisor import Supervisor

PREFIX = "scalegate/"
FLOP_AXIS = "scalegate/flop"
VERDICT_CODES: dict[str, int] = {"continue": 0, "alert": 1, "evaluate": 2, "pause": 3}

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")  # MLflow's metric-name alphabet


def _name(text: str) -> str:
    return _UNSAFE.sub("_", text)


class Report(BaseModel):
    """What a supervised run reports to trackers at a decision."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    step: int
    flop: float = Field(description="cumulative FLOP, every phase, as accounted")
    effective_flop: float
    totals: dict[str, float] = Field(default_factory=dict, description="FLOP by policy regime")
    next_eval_flop: float | None = None
    verdict: Verdict
    reasons: list[str] = Field(default_factory=list)
    scores: dict[str, float] = Field(
        default_factory=dict, description="'<evaluation id>/<metric>' -> value, new evaluations"
    )

    def metrics(self) -> dict[str, float]:
        """The report as ``scalegate/...`` metrics (names safe for every tracker)."""
        out = {
            FLOP_AXIS: self.flop,
            f"{PREFIX}effective_flop": self.effective_flop,
            f"{PREFIX}verdict": float(VERDICT_CODES[self.verdict]),
        }
        if self.next_eval_flop is not None:
            out[f"{PREFIX}next_eval_flop"] = self.next_eval_flop
        for regime, total in self.totals.items():
            out[_name(f"{PREFIX}regime/{regime}")] = total
        for key, value in self.scores.items():
            out[_name(f"{PREFIX}eval/{key}")] = value
        return out

    def summary(self) -> str:
        """``step 120: pause — <reasons>``."""
        why = "; ".join(self.reasons)
        return f"step {self.step}: {self.verdict}" + (f" — {why}" if why else "")


class ScalarWriter(Protocol):
    """What :class:`Trackers` needs of a TensorBoard ``SummaryWriter`` (``add_text`` and
    ``flush`` are used when it has them)."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None) -> Any:
        ...


class MetricAxes(Protocol):
    """What :func:`declare_flop_axis` needs of a W&B run."""

    def define_metric(self, name: str, step_metric: str | None = None) -> Any: ...


class Reporter:
    """Builds :class:`Report` s from a supervisor, each carrying only evaluations not yet
    reported."""

    def __init__(self) -> None:
        self._seen = -1  # ledger index of the last evaluation reported

    def report(self, supervisor: Supervisor) -> Report:
        """The supervisor's current figures and decision."""
        acc = supervisor.account
        decision = supervisor.decision
        scores: dict[str, float] = {}
        for e in supervisor.state.evals:
            p = e.predicate
            if e.index > self._seen and p.value is not None:
                scores[f"{p.evaluation_id}/{p.metric}"] = float(p.value)
        if supervisor.state.evals:
            self._seen = max(self._seen, supervisor.state.evals[-1].index)
        return Report(
            run_id=supervisor.run_id,
            step=supervisor.step_index,
            flop=acc.total(),
            effective_flop=acc.effective(),
            totals=acc.totals(),
            next_eval_flop=decision.next_eval_at_flop if decision else None,
            verdict=decision.verdict if decision else "continue",
            reasons=[r.message for r in decision.reasons] if decision else [],
            scores=scores,
        )


def declare_flop_axis(run: MetricAxes, prefix: str = "") -> None:
    """Make cumulative FLOP the x-axis of every ``scalegate/`` metric in a W&B run."""
    axis = f"{prefix}{FLOP_AXIS}"
    run.define_metric(axis)
    run.define_metric(f"{prefix}{PREFIX}*", step_metric=axis)


def active_wandb_run() -> Any:
    """The W&B run the user started, if ``wandb`` is imported and a run is active."""
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def active_mlflow() -> Any:
    """The ``mlflow`` module if the user imported it and a run is active, else None."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or not hasattr(mlflow, "active_run"):
        return None
    return mlflow if mlflow.active_run() is not None else None


class Trackers:
    """Sends :class:`Report` s to the trackers the user already runs.

    ``writers``: TensorBoard ``SummaryWriter`` s (anything with ``add_scalar``). An active
    MLflow run and an active W&B run are found at each report (``mlflow=False`` /
    ``wandb=False`` to leave them out).
    """

    def __init__(self, *writers: ScalarWriter, mlflow: bool = True, wandb: bool = True) -> None:
        self.writers = list(writers)
        self.use_mlflow = mlflow
        self.use_wandb = wandb
        self._axes: set[int] = set()
        self._last_verdict: str | None = None

    def send(self, report: Report) -> list[str]:
        """Report to every active tracker; the names of those reported to."""
        sent = []
        metrics = report.metrics()
        changed = report.verdict != self._last_verdict
        self._last_verdict = report.verdict
        mlflow = active_mlflow() if self.use_mlflow else None
        if mlflow is not None:
            mlflow.log_metrics(metrics, step=report.step)
            mlflow.set_tags({"scalegate.run_id": report.run_id,
                             "scalegate.verdict": report.summary()[:5000]})
            sent.append("mlflow")
        run = active_wandb_run() if self.use_wandb else None
        if run is not None:
            if id(run) not in self._axes:
                declare_flop_axis(run)
                self._axes.add(id(run))
            run.log(metrics, commit=False)
            run.summary["scalegate/decision"] = report.summary()
            sent.append("wandb")
        for writer in self.writers:
            for tag, value in metrics.items():
                writer.add_scalar(tag, value, global_step=report.step)
            if changed and hasattr(writer, "add_text"):
                writer.add_text(f"{PREFIX}decision", report.summary(), global_step=report.step)
            if hasattr(writer, "flush"):
                writer.flush()
            sent.append("tensorboard")
        return sent


def trackers_of(value: Trackers | Iterable[ScalarWriter] | str | None) -> Trackers | None:
    """``"auto"`` → active MLflow / W&B runs; a :class:`Trackers`; writers; ``None`` → none."""
    if value is None:
        return None
    if isinstance(value, Trackers):
        return value
    if value == "auto":
        return Trackers()
    if isinstance(value, str):
        raise RunError(
            f"trackers={value!r} is not understood.",
            hint="Pass 'auto', None, a Trackers, or a list of TensorBoard SummaryWriters.",
        )
    return Trackers(*value)


__all__ = [
    "FLOP_AXIS",
    "PREFIX",
    "VERDICT_CODES",
    "MetricAxes",
    "Report",
    "Reporter",
    "ScalarWriter",
    "Trackers",
    "active_mlflow",
    "active_wandb_run",
    "declare_flop_axis",
    "trackers_of",
]
