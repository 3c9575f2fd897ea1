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
- With ``transcript=Transcript(...)`` the run records its training transcript (each
  optimizer step's micro-batches, learning rate and starting generator state; one
  optimizer, automatic optimization, a single process); :class:`LightningReplay`
  re-executes its segments for a verifier.
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lightning.pytorch.callbacks import Callback

from scalegate.errors import RunError
from scalegate.integrations._callback import SupervisedCallback

if TYPE_CHECKING:
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.utilities.types import STEP_OUTPUT

    from scalegate.compute import Measurement, StepFlop
    from scalegate.integrations._meter import TokensOf
    from scalegate.integrations.distributed import (
        Evaluator,
        KeySource,
        LedgerSource,
        PolicySource,
    )


class LightningCollective:
    """The run's collectives through a Lightning ``Strategy``: SUM with ``strategy.reduce``,
    and a broadcast as a SUM in which only rank 0 contributes (tensors, never pickles)."""

    def __init__(self, trainer: pl.Trainer) -> None:
        import torch

        self._torch = torch
        self.strategy = trainer.strategy
        self.rank = trainer.global_rank
        self.world_size = trainer.world_size
        device = self.strategy.root_device
        # No float64 on MPS.
        self.device: str | torch.device = "cpu" if device.type == "mps" else device

    def sum(self, values: list[float]) -> list[float]:
        t = self._torch.tensor(values, dtype=self._torch.float64, device=self.device)
        return [float(x) for x in self.strategy.reduce(t, reduce_op="sum").tolist()]

    def broadcast(self, values: list[float]) -> list[float]:
        mine = values if self.rank == 0 else [0.0] * len(values)
        return self.sum(mine)


class ScalegateCallback(SupervisedCallback, Callback):
    """A Lightning ``Callback`` supervising the run under ``policy``.

    ``policy``, ``ledger`` and ``key`` are objects or paths (a path is opened on rank 0
    only). ``phase``: the compute phase (``pretraining``, ``fine-tuning``...).
    ``checkpoint_dir``: where the pause checkpoint is saved. ``flop_per_token`` declares
    FLOP per token instead of measuring; ``tokens_of(batch)`` counts tokens another way.
    ``log=False`` keeps the figures out of ``pl_module.log``. Other keywords go to
    :meth:`Supervisor.open` (``planned``, ``compute_every``, ``check_interval``...).
    """

    opening_event: ClassVar[str] = "on_fit_start"

    def __init__(
        self,
        run_id: str,
        policy: PolicySource | None,
        ledger: LedgerSource | None,
        key: KeySource | None,
        *,
        evaluator: Evaluator | None = None,
        phase: str = "pretraining",
        checkpoint_dir: str | Path = "checkpoints",
        flop_per_token: float | None = None,
        tokens_of: TokensOf | None = None,
        pad_token_id: int | None = None,
        log: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(run_id, policy, ledger, key, evaluator=evaluator, phase=phase,
                         flop_per_token=flop_per_token, tokens_of=tokens_of, options=options)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.pad_token_id = pad_token_id
        self.log_metrics = log
        self._measuring: Measurement | None = None
        self._last_step = 0
        self._restored: dict[str, Any] | None = None

    # --- fit ------------------------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loop = trainer.fit_loop
        if loop.min_steps or loop.min_epochs:
            warnings.warn(
                "min_steps/min_epochs make Lightning ignore trainer.should_stop: on a pause "
                "the run stops with RunPaused at the next batch instead.",
                stacklevel=2,
            )
        options = {"checkpoint_dir": self.checkpoint_dir, **self.options}
        if self._transcribing:
            options.setdefault("optimizer", _the_optimizer(trainer, pl_module))
        ds = self._start(pl_module, collective=LightningCollective(trainer),
                         pad_token_id=self.pad_token_id, trackers=None, options=options)
        if ds.is_writer:
            for logger in trainer.loggers:
                if type(logger).__name__ == "WandbLogger":  # its experiment is the W&B run
                    self._declare_flop_axis(getattr(logger, "experiment", None))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._open()
        if self._restored is not None and self._restored.get("run_id") != self.run_id:
            raise RunError(
                f"the checkpoint Lightning resumed from belongs to run "
                f"{self._restored.get('run_id')!r}, not {self.run_id!r}.",
                hint="Resume each run from its own checkpoints.",
            )
        self._check_start(trainer.global_step)
        self._last_step = trainer.global_step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self._refuse_if_paused()  # Lightning went on past should_stop (min_steps)
        self._discard_measuring()  # a batch the module skipped (on_train_batch_start -> -1)
        meter = self._open().meter
        self._step_begins()
        if meter.flop_per_token is None:
            self._measuring = meter.measure(batch).__enter__()

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Any) -> None:
        self._stepping(optimizer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: STEP_OUTPUT, batch: Any, batch_idx: int) -> None:
        ds = self._open()
        self._count(batch, measured=self._stop_measuring())
        self._trained(batch)  # not at its start: the module may skip a batch
        advanced = trainer.global_step - self._last_step
        if advanced <= 0:
            return  # accumulating gradients: no optimizer step yet
        self._last_step = trainer.global_step
        decision = self._end_steps(advanced)
        if self.log_metrics and ds.is_writer:
            metrics = self._metrics()
            assert metrics is not None
            for name, value in metrics.items():
                pl_module.log(name, value, on_step=True, on_epoch=False, rank_zero_only=True)
        if not ds.synced:
            return  # the decision changes only at sync steps, which every rank knows
        if trainer.strategy.reduce_boolean_decision(decision.verdict == "pause", all=False):
            path = self.checkpoint_dir / f"{self.run_id}-step{ds.step_index}.ckpt"
            trainer.save_checkpoint(path)  # on every rank: strategies may shard it
            self._declare_pause(path)
            trainer.should_stop = True

    def _stop_measuring(self) -> StepFlop | None:
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

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._discard_measuring()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        self._discard_measuring(exception)
        self._close()

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


class LightningReplay:
    """A ``LightningModule``'s optimizer step as a verifier re-executes it (a transcript's
    :class:`~scalegate.transcript.Replay`), as automatic optimization runs it in 32-bit
    precision: ``training_step`` on each micro-batch, its loss divided by
    ``accumulate_grad_batches`` and back-propagated, the gradients clipped as the Trainer's
    ``gradient_clip_val`` / ``gradient_clip_algorithm`` say, and one optimizer step.
    ``make_module()`` builds a fresh module configured as the run's; the optimizer is its
    ``configure_optimizers()``'s. Module hooks around backward are not run again, and
    ``batch_idx`` is the micro-batch's position in its step.
    """

    def __init__(self, make_module: Callable[[], pl.LightningModule], *,
                 accumulate_grad_batches: int = 1, gradient_clip_val: float | None = None,
                 gradient_clip_algorithm: str = "norm") -> None:
        self.make_module = make_module
        self.accumulate = accumulate_grad_batches
        self.clip, self.clip_algorithm = gradient_clip_val, gradient_clip_algorithm

    def make(self) -> tuple[Any, Any]:
        module = self.make_module()
        return module, _single_optimizer(module.configure_optimizers())

    def step(self, model: Any, optimizer: Any, batch: Any) -> None:
        import torch

        model.train()
        for i, micro in enumerate(batch):
            out = model.training_step(micro, i)
            loss = out["loss"] if isinstance(out, Mapping) else out
            (loss / self.accumulate).backward()
        if self.clip:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            if self.clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(params, self.clip)
            else:
                torch.nn.utils.clip_grad_norm_(params, self.clip)
        optimizer.step()
        optimizer.zero_grad()


def _single_optimizer(configured: Any) -> Any:
    """The optimizer of what ``configure_optimizers`` returned (one optimizer, with or
    without schedulers)."""
    if isinstance(configured, Mapping):
        return configured["optimizer"]
    if isinstance(configured, tuple | list):
        first = configured[0]
        return _single_optimizer(first) if isinstance(first, tuple | list | Mapping) \
            else first
    return configured


def _the_optimizer(trainer: pl.Trainer, pl_module: pl.LightningModule) -> Any:
    """The one optimizer a transcript can re-execute (automatic optimization)."""
    if not pl_module.automatic_optimization or len(trainer.optimizers) != 1:
        raise RunError(
            "a training transcript re-executes one optimizer under Lightning's automatic "
            f"optimization; this module has {len(trainer.optimizers)} optimizer(s)"
            + ("" if pl_module.automatic_optimization else " and optimizes manually") + ".",
            hint="Leave transcript= out for this module, or record it from a plain loop.")
    return trainer.optimizers[0]


__all__ = ["LightningCollective", "LightningReplay", "ScalegateCallback"]
