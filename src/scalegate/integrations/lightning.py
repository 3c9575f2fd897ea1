"""PyTorch Lightning: put a run under a scaling policy with one callback.

>>> trainer = L.Trainer(callbacks=[ScalegateCallback("run-1", "policy.yaml", "ledger.db",
...                                                  "trainer.key", evaluator=suite)])
>>> trainer.fit(module, ckpt_path=resume_checkpoint("ledger.db", "run-1"))  # doctest: +SKIP

- ``on_fit_start`` opens the run from the ledger and refuses a paused run without a valid
  resumption (:class:`~scalegate.errors.RunPaused`); ``on_train_start`` (after Lightning
  restored a checkpoint) refuses a resumed run that does not start from the checkpoint its
  pause recorded.
- ``on_train_batch_start``/``on_train_batch_end`` bracket the training step: the first
  batch of each input signature is counted by ``FlopCounterMode`` around Lightning's own
  forward, backward and optimizer step (no extra work), later ones are a look-up; tokens
  are the batch's non-padding tokens (see :func:`~scalegate.integrations._meter.batch_tokens`,
  or pass ``tokens_of``). When an optimizer step ends (``trainer.global_step`` moves), the
  step is accounted; at a sync step the pause decision is agreed across ranks with
  ``trainer.strategy.reduce_boolean_decision``.
- On ``pause``: every rank calls ``trainer.save_checkpoint(<checkpoint_dir>/<run>-step<N>.ckpt)``,
  rank 0 records its digest and declares the pause, then ``trainer.should_stop = True``.
- The callback's counters are in Lightning checkpoints (``state_dict``/``load_state_dict``).
- ``pl_module.log`` reports cumulative FLOP, the next milestone, scores and the verdict to
  every logger the Trainer has (rank 0, every optimizer step).

``min_steps``/``min_epochs`` caveat: Lightning ignores ``trainer.should_stop`` until they are
met. The pause is declared all the same, and the next ``on_train_batch_start`` raises
:class:`RunPaused`, so ``fit`` ends with that error instead of a clean stop: do not set
``min_steps``/``min_epochs`` on a supervised run.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from scalegate.errors import RunError
from scalegate.integrations.distributed import DistributedSupervisor
from scalegate.integrations.trackers import declare_flop_axis


class LightningCollective:
    """The run's collectives through a Lightning ``Strategy``: SUM with ``strategy.reduce``,
    and a broadcast as a SUM in which only rank 0 contributes (tensors, never pickles)."""

    def __init__(self, trainer: Any) -> None:
        import torch

        self._torch = torch
        self.strategy = trainer.strategy
        self.rank = trainer.global_rank
        self.world_size = trainer.world_size
        device = self.strategy.root_device
        self.device = "cpu" if device.type == "mps" else device  # no float64 on MPS

    def sum(self, values: list[float]) -> list[float]:
        t = self._torch.tensor(values, dtype=self._torch.float64, device=self.device)
        return [float(x) for x in self.strategy.reduce(t, reduce_op="sum").tolist()]

    def broadcast(self, values: list[float]) -> list[float]:
        mine = values if self.rank == 0 else [0.0] * len(values)
        return self.sum(mine)


class ScalegateCallback(Callback):
    """A Lightning ``Callback`` supervising the run under ``policy``.

    ``policy``, ``ledger`` and ``key`` are objects or paths (a path is opened on rank 0
    only). ``phase``: the compute phase (``pretraining``, ``fine-tuning``...).
    ``checkpoint_dir``: where the pause checkpoint is saved. ``flop_per_token`` declares
    FLOP per token instead of measuring; ``tokens_of(batch)`` counts tokens another way.
    ``log=False`` keeps the figures out of ``pl_module.log``. Other keywords go to
    :meth:`Supervisor.open` (``planned``, ``compute_every``, ``check_interval``...).
    """

    def __init__(
        self,
        run_id: str,
        policy: Any,
        ledger: Any,
        key: Any,
        *,
        evaluator: Any = None,
        phase: str = "pretraining",
        checkpoint_dir: str | Path = "checkpoints",
        flop_per_token: float | None = None,
        tokens_of: Any = None,
        pad_token_id: int | None = None,
        log: bool = True,
        **options: Any,
    ) -> None:
        self.run_id, self.policy, self.ledger, self.key = run_id, policy, ledger, key
        self.evaluator, self.phase = evaluator, phase
        self.checkpoint_dir = Path(checkpoint_dir)
        self.flop_per_token, self.tokens_of = flop_per_token, tokens_of
        self.pad_token_id = pad_token_id
        self.log_metrics, self.options = log, options
        self.supervisor: DistributedSupervisor | None = None
        self._measuring: Any = None
        self._last_step = 0
        self._restored: dict[str, Any] | None = None

    # --- fit ------------------------------------------------------------------------------

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        loop = trainer.fit_loop
        if loop.min_steps or loop.min_epochs:
            warnings.warn(
                "min_steps/min_epochs make Lightning ignore trainer.should_stop: on a pause "
                "the run stops with RunPaused at the next batch instead.",
                stacklevel=2,
            )
        self.supervisor = DistributedSupervisor.open(
            self.run_id, self.policy, self.ledger, self.key,
            collective=LightningCollective(trainer), model=pl_module, evaluator=self.evaluator,
            flop_per_token=self.flop_per_token, tokens_of=self.tokens_of,
            pad_token_id=self.pad_token_id, defer_checkpoint=True, trackers=None,
            checkpoint_dir=self.checkpoint_dir, **self.options,
        )
        if self.supervisor.is_writer:
            for logger in trainer.loggers:
                if type(logger).__name__ == "WandbLogger":
                    declare_flop_axis(logger.experiment)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        ds = self._open()
        if self._restored is not None and self._restored.get("run_id") != self.run_id:
            raise RunError(
                f"the checkpoint Lightning resumed from belongs to run "
                f"{self._restored.get('run_id')!r}, not {self.run_id!r}.",
                hint="Resume each run from its own checkpoints.",
            )
        ds.check_start(trainer.global_step)
        self._last_step = trainer.global_step

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        ds = self._open()
        if ds.paused:
            raise ds._paused_error()  # Lightning went on past should_stop (min_steps)
        self._discard_measuring()  # a batch the module skipped (on_train_batch_start -> -1)
        if ds.meter.flop_per_token is None:
            self._measuring = ds.meter.measure(batch).__enter__()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        ds = self._open()
        measured = self._stop_measuring()
        ds.meter.count_batch(batch, self.phase, measured=measured)
        advanced = trainer.global_step - self._last_step
        if advanced <= 0:
            return  # accumulating gradients: no optimizer step yet
        self._last_step = trainer.global_step
        decision = ds.end_step(self.phase, steps=advanced)
        if self.log_metrics and ds.is_writer:
            report = ds.report()
            assert report is not None
            for name, value in report.metrics().items():
                pl_module.log(name, value, on_step=True, on_epoch=False, rank_zero_only=True)
        if not ds.synced:
            return  # the decision changes only at sync steps, which every rank knows
        if trainer.strategy.reduce_boolean_decision(decision.verdict == "pause", all=False):
            path = self.checkpoint_dir / f"{self.run_id}-step{ds.step_index}.ckpt"
            trainer.save_checkpoint(path)  # on every rank: strategies may shard it
            ds.declare_pause(path)
            trainer.should_stop = True

    def _stop_measuring(self) -> Any:
        m, self._measuring = self._measuring, None
        if m is None:
            return None
        m.__exit__(None, None, None)
        return m.flop

    def _discard_measuring(self, exc: BaseException | None = None) -> None:
        m, self._measuring = self._measuring, None
        if m is not None:
            # Leaving with an error closes the counting mode without caching a count.
            error = exc or RunError("the batch ended without on_train_batch_end")
            m.__exit__(type(error), error, None)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._discard_measuring()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        ds = self.supervisor
        if ds is not None:
            ds.flush(self.phase)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._discard_measuring(exception)
        self._close()

    def _close(self) -> None:
        if self.supervisor is not None:
            self.supervisor.close()

    def _open(self) -> DistributedSupervisor:
        if self.supervisor is None:
            raise RunError("the scalegate callback was not started (no on_fit_start).")
        return self.supervisor

    # --- checkpointed counters -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        ds = self.supervisor
        return {
            "run_id": self.run_id,
            "global_step": self._last_step,
            "step": ds.step_index if ds is not None else None,
            "effective_flop": ds.effective_flop if ds is not None else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict)


__all__ = ["LightningCollective", "ScalegateCallback"]
