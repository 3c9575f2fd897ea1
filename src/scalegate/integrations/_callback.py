"""What the Hugging Face and Lightning callbacks share: one supervised run driven by a
framework's events.

A callback is made from the run's id, its policy, ledger and key (objects or paths, opened on
rank 0 only) and how its compute is counted. When training starts it opens a
:class:`~scalegate.integrations.distributed.DistributedSupervisor` whose pause waits for the
checkpoint the framework saves, and checks that a resumed run starts where its pause left
it. Each micro-batch the framework trained on is counted into the meter and each optimizer
step accounted; rank 0's figures are reported through the framework's own logging. On a
pause the framework saves its checkpoint and the callback declares the pause with it; at
the end the run is brought up to date and its ledger closed. Each framework module maps
its events onto these steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from scalegate.errors import RunError
from scalegate.gate import Decision
from scalegate.integrations._restart import resume_checkpoint
from scalegate.integrations.distributed import Collective, DistributedSupervisor
from scalegate.integrations.trackers import MetricAxes, declare_flop_axis
from scalegate.transcript.recorder import TranscriptStep

if TYPE_CHECKING:
    import torch

    from scalegate.compute import LossFn, StepFlop
    from scalegate.integrations._meter import TokensOf
    from scalegate.integrations.distributed import (
        Evaluator,
        KeySource,
        LedgerSource,
        PolicySource,
        TrackersSpec,
    )


class SupervisedCallback:
    """The framework-independent part of a scalegate callback (see the module docstring).

    A framework's callback class derives from this and from the framework's own callback
    base; the names here are private to keep clear of the framework's hooks, except
    :attr:`supervisor` and :meth:`resume_checkpoint`.
    """

    #: The framework event that opens the run (named when another event comes first).
    opening_event: ClassVar[str]

    def __init__(
        self,
        run_id: str,
        policy: PolicySource | None,
        ledger: LedgerSource | None,
        key: KeySource | None,
        *,
        evaluator: Evaluator | None,
        phase: str,
        flop_per_token: float | None,
        tokens_of: TokensOf | None,
        options: Mapping[str, Any],
    ) -> None:
        self.run_id, self.policy, self.ledger, self.key = run_id, policy, ledger, key
        self.evaluator, self.phase = evaluator, phase
        self.flop_per_token, self.tokens_of = flop_per_token, tokens_of
        self.options = dict(options)
        self.supervisor: DistributedSupervisor | None = None
        self._fed: TranscriptStep | None = None  # what the current step fed (transcripts)

    def resume_checkpoint(self) -> str | None:
        """The checkpoint a resumed run must start from (give it to the trainer), or
        ``None`` when the ledger dictates none."""
        if self.ledger is None:
            raise RunError("the callback was given no ledger to read the run's resumption from.")
        return resume_checkpoint(self.ledger, self.run_id)

    # --- starting ------------------------------------------------------------------------

    def _start(
        self,
        model: torch.nn.Module,
        *,
        collective: Collective | None,
        pad_token_id: int | None,
        trackers: TrackersSpec,
        options: Mapping[str, Any],
        loss_fn: LossFn | None = None,
    ) -> DistributedSupervisor:
        """Open the run on every rank (:meth:`DistributedSupervisor.open`, the pause's
        checkpoint left to the framework); ``options`` go to :meth:`Supervisor.open`."""
        self.supervisor = DistributedSupervisor.open(
            self.run_id, self.policy, self.ledger, self.key, collective=collective,
            model=model, evaluator=self.evaluator, flop_per_token=self.flop_per_token,
            loss_fn=loss_fn, tokens_of=self.tokens_of, pad_token_id=pad_token_id,
            defer_checkpoint=True, trackers=trackers, **options,
        )
        return self.supervisor

    def _check_start(self, step: int) -> None:
        """Refuse (and close the run) unless a resumed run starts from the checkpoint its
        pause recorded; the trainer is at ``step``."""
        ds = self._open()
        try:
            ds.check_start(step)
        except Exception:
            ds.close()
            raise

    def _open(self) -> DistributedSupervisor:
        if self.supervisor is None:
            raise RunError(
                f"the scalegate callback was not started (no {self.opening_event})."
            )
        return self.supervisor

    def _declare_flop_axis(self, run: MetricAxes | None, prefix: str = "") -> None:
        """On rank 0: make cumulative FLOP the x-axis of the run's metrics in W&B ``run``."""
        if run is not None and self._open().is_writer:
            declare_flop_axis(run, prefix=prefix)

    # --- training ------------------------------------------------------------------------

    def _refuse_if_paused(self) -> None:
        """Raise :class:`~scalegate.errors.RunPaused` if the run is paused."""
        ds = self._open()
        if ds.paused:
            raise ds._paused_error()

    def _count(self, batch: Any, measured: StepFlop | None = None) -> None:
        """One micro-batch the framework trained on (``measured``: its FLOP, counted around
        the framework's own step)."""
        self._open().meter.count_batch(batch, self.phase, measured=measured)

    def _end_steps(self, steps: int = 1) -> Decision:
        """``steps`` optimizer steps ended, their micro-batches counted: the run's decision,
        the same on every rank."""
        fed, self._fed = self._fed, None
        return self._open().end_step(self.phase, steps=steps, transcript=fed)

    # --- the transcript ------------------------------------------------------------------

    @property
    def _transcribing(self) -> bool:
        return self.options.get("transcript") is not None

    def _feed(self, batch: Any) -> None:
        """A training micro-batch begins and will be trained on: :meth:`_step_begins`,
        then :meth:`_trained`."""
        self._step_begins()
        self._trained(batch)

    def _step_begins(self) -> None:
        """A micro-batch begins: for a transcript, at the first of an optimizer step, note
        the generator state the step begins from (and, at the run's first, snapshot the
        state training starts from)."""
        if self._transcribing and self._fed is None:
            import torch

            self._open().begin_transcript()
            self._fed = TranscriptStep(rng=torch.get_rng_state())

    def _trained(self, batch: Any) -> None:
        """A micro-batch the framework trained on: for a transcript, keep it."""
        if self._fed is not None:
            self._fed.batch.append(batch)

    def _stepping(self, optimizer: Any) -> None:
        """The optimizer is about to step: for a transcript, its learning rate."""
        if self._fed is not None:
            self._fed.lr = float(optimizer.param_groups[0]["lr"])

    def _metrics(self) -> dict[str, float] | None:
        """Rank 0: the run's figures and decision as ``scalegate/...`` metrics (``None`` on
        other ranks)."""
        report = self._open().report()
        return report.metrics() if report is not None else None

    # --- pausing and ending --------------------------------------------------------------

    def _declare_pause(self, checkpoint: str | Path | None) -> None:
        """Rank 0: declare the pending pause with the ``checkpoint`` the framework saved
        (``None``: the supervisor saves the model's weights); other ranks: nothing."""
        self._open().declare_pause(checkpoint)

    def _finish(self, saved: Callable[[], str | Path | None] | None = None) -> None:
        """At the end of training: bring the ledger up to date and, if a pause still waits
        for its checkpoint, declare it with ``saved()`` (the checkpoint the framework left)."""
        ds = self.supervisor
        if ds is None:
            return
        ds.flush(self.phase)  # a no-op on every rank once paused
        if saved is not None and ds.pause_pending:
            ds.declare_pause(saved())

    def _close(self) -> None:
        """Close the ledger if the run opened it from a path."""
        if self.supervisor is not None:
            self.supervisor.close()


__all__ = ["SupervisedCallback"]
