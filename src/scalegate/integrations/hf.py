"""Hugging Face ``Trainer``: put a run under a scaling policy with one callback.

>>> callback = ScalegateCallback("run-1", "policy.yaml", "ledger.db", "trainer.key",
...                              evaluator=suite)                      # doctest: +SKIP
>>> trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
>>> callback.trainer = trainer                  # optional: log through trainer.log
>>> trainer.train(resume_from_checkpoint=callback.resume_checkpoint())

- ``on_train_begin`` opens the run from the ledger: a paused run without a valid
  resumption raises :class:`~scalegate.errors.RunPaused` before any step (the ledger is the
  authority, not ``TrainerControl`` state restored from a checkpoint); a resumed run must
  start from the checkpoint its pause recorded (same step, same digest).
- Every training forward pass is seen by a forward pre-hook on the model; ``on_step_end``
  accounts the optimizer step from the micro-batches' *non-padding* tokens (their
  ``attention_mask``, else the tokenizer's pad token) and their measured FLOP (one extra
  forward and backward per new input signature, attention included), filed pro rata to
  those tokens. ``Trainer.floating_point_ops`` is not used: it is 6·N per input position,
  so it ignores attention and counts padding.
- At a milestone the evaluations run (in eval mode; the model is back in train mode after)
  and on ``pause`` the callback sets ``control.should_save`` and
  ``control.should_training_stop``: the Trainer writes ``checkpoint-<step>`` and stops;
  at ``on_train_end`` the callback records that directory's digest and declares the pause.
- Under ``torch.distributed`` (``accelerate launch``, ``torchrun``) each rank counts its own
  tokens, rank 0 writes the ledger, and every rank stops at the same step
  (:mod:`scalegate.integrations.distributed`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from scalegate.errors import RunError
from scalegate.integrations._restart import resume_checkpoint
from scalegate.integrations.distributed import DistributedSupervisor
from scalegate.integrations.trackers import active_wandb_run, declare_flop_axis


class ScalegateCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` supervising the run under ``policy``.

    ``policy``, ``ledger`` and ``key`` are objects or paths (a path is opened on rank 0
    only). ``trainer``: the Trainer, to report through ``trainer.log`` to every
    ``report_to`` integration; without it, decisions go to active MLflow / W&B runs
    (``trackers``). ``phase``: the compute phase of this training (``pretraining``,
    ``fine-tuning``...). ``flop_per_token`` declares FLOP per token instead of measuring;
    ``loss_fn(model, batch)`` when the model's output has no ``.loss``; ``tokens_of(batch)``
    to count tokens another way. Other keywords go to :meth:`Supervisor.open`
    (``planned``, ``compute_every``, ``check_interval``, ``on_ledger_error``, ``clock``...).
    """

    def __init__(
        self,
        run_id: str,
        policy: Any,
        ledger: Any,
        key: Any,
        *,
        evaluator: Any = None,
        trainer: Any = None,
        phase: str = "pretraining",
        flop_per_token: float | None = None,
        loss_fn: Any = None,
        tokens_of: Any = None,
        trackers: Any = "auto",
        collective: Any = None,
        **options: Any,
    ) -> None:
        self.run_id, self.policy, self.ledger, self.key = run_id, policy, ledger, key
        self.evaluator, self.trainer, self.phase = evaluator, trainer, phase
        self.flop_per_token, self.loss_fn, self.tokens_of = flop_per_token, loss_fn, tokens_of
        self.trackers, self.collective, self.options = trackers, collective, options
        self.supervisor: DistributedSupervisor | None = None
        self._batches: list[Any] = []
        self._hook: Any = None
        self._busy = False  # our own forward passes (counting, evaluating) are not training

    def resume_checkpoint(self) -> str | None:
        """The checkpoint a resumed run must start from (pass it to ``trainer.train``), or
        ``None`` when the ledger dictates none."""
        return resume_checkpoint(self.ledger, self.run_id)

    # --- the Trainer's events ------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       processing_class: Any = None, **kwargs: Any) -> None:
        if model is None:
            raise RunError("the Trainer passed no model to the scalegate callback.")
        # Evaluation logs (and any checkpoint the supervisor saves) live with the Trainer's.
        options = {"checkpoint_dir": Path(args.output_dir) / "scalegate", **self.options}
        self.supervisor = DistributedSupervisor.open(
            self.run_id, self.policy, self.ledger, self.key, collective=self.collective,
            model=model, evaluator=self.evaluator, flop_per_token=self.flop_per_token,
            loss_fn=self.loss_fn, tokens_of=self.tokens_of,
            pad_token_id=getattr(processing_class, "pad_token_id", None),
            defer_checkpoint=True, trackers=None if self.trainer is not None else self.trackers,
            **options,
        )
        try:
            self.supervisor.check_start(state.global_step)
        except Exception:
            self.supervisor.close()
            raise
        self._batches.clear()
        self._hook = model.register_forward_pre_hook(self._collect, with_kwargs=True)
        run = active_wandb_run()
        if self.trainer is not None and run is not None and self.supervisor.is_writer:
            declare_flop_axis(run, prefix="train/")  # the Trainer's W&B logger adds train/

    def _collect(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        import torch

        if self._busy or not module.training or not torch.is_grad_enabled():
            return
        if kwargs:
            # Tensors only: scalars such as num_items_in_batch change every step and would
            # make every batch a new signature to count.
            batch: Any = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
        else:
            batch = args[0] if len(args) == 1 else tuple(args)
        self._batches.append(batch)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        ds = self._open()
        if not self._batches:
            raise RunError(
                f"scalegate saw no training forward pass of the model in step "
                f"{state.global_step}, so it cannot account the step's compute.",
                hint="Give the Trainer the model the callback hooks (not a compiled or "
                "re-wrapped copy), or pass flop_per_token and tokens_of.",
            )
        self._busy = True
        try:
            for batch in self._batches:
                ds.meter.count_batch(batch, self.phase)
            self._batches.clear()
            decision = ds.end_step(self.phase)
        finally:
            self._busy = False
        if ds.decided and self.trainer is not None:
            report = ds.report()
            if report is not None:
                self.trainer.log(report.metrics())
        if decision.verdict == "pause":
            # The Trainer saves checkpoint-<step> right after this event, then stops.
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None,
                     **kwargs: Any) -> None:
        ds = self.supervisor
        if ds is None:
            return
        try:
            if self._hook is not None:
                self._hook.remove()
                self._hook = None
            ds.flush(self.phase)  # a no-op on every rank once paused
            if ds.pause_pending:
                ds.declare_pause(self._saved_checkpoint(args, state))
        finally:
            ds.close()

    def _saved_checkpoint(self, args: Any, state: Any) -> Path | None:
        # Read at the end of training, after every save of this step (an epoch-end save
        # may rewrite trainer_state.json), so the digest is of the files as they stay.
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if path.is_dir():
            return path
        warnings.warn(
            f"the Trainer did not leave {path}; scalegate saves the model's weights for "
            "the pause instead (see checkpoint_dir).",
            stacklevel=2,
        )
        return None

    def _open(self) -> DistributedSupervisor:
        if self.supervisor is None:
            raise RunError("the scalegate callback was not started (no on_train_begin).")
        return self.supervisor


__all__ = ["ScalegateCallback"]
