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
- With ``transcript=Transcript(...)`` the run records its training transcript: each
  optimizer step's micro-batches (as the model received them), its learning rate and the
  generator state it began from; :class:`TrainerReplay` re-executes its segments for a
  verifier (single process only).
- Under ``torch.distributed`` (``accelerate launch``, ``torchrun``) each rank counts its own
  tokens, rank 0 writes the ledger, and every rank stops at the same step
  (:mod:`scalegate.integrations.distributed`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from transformers import TrainerCallback

from scalegate.errors import RunError
from scalegate.integrations._callback import SupervisedCallback
from scalegate.integrations.trackers import active_wandb_run

if TYPE_CHECKING:
    import torch
    from torch.utils.hooks import RemovableHandle
    from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments

    from scalegate.compute import LossFn
    from scalegate.integrations._meter import TokensOf
    from scalegate.integrations.distributed import (
        Collective,
        Evaluator,
        KeySource,
        LedgerSource,
        PolicySource,
        TrackersSpec,
    )


class ScalegateCallback(SupervisedCallback, TrainerCallback):
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

    opening_event: ClassVar[str] = "on_train_begin"

    def __init__(
        self,
        run_id: str,
        policy: PolicySource | None,
        ledger: LedgerSource | None,
        key: KeySource | None,
        *,
        evaluator: Evaluator | None = None,
        trainer: Trainer | None = None,
        phase: str = "pretraining",
        flop_per_token: float | None = None,
        loss_fn: LossFn | None = None,
        tokens_of: TokensOf | None = None,
        trackers: TrackersSpec = "auto",
        collective: Collective | None = None,
        **options: Any,
    ) -> None:
        super().__init__(run_id, policy, ledger, key, evaluator=evaluator, phase=phase,
                         flop_per_token=flop_per_token, tokens_of=tokens_of, options=options)
        self.trainer, self.loss_fn = trainer, loss_fn
        self.trackers, self.collective = trackers, collective
        self._batches: list[Any] = []
        self._hook: RemovableHandle | None = None
        self._busy = False  # our own forward passes (counting, evaluating) are not training

    # --- the Trainer's events ------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: torch.nn.Module | None = None,
                       processing_class: object = None, **kwargs: Any) -> None:
        if model is None:
            raise RunError("the Trainer passed no model to the scalegate callback.")
        # Evaluation logs (and any checkpoint the supervisor saves) live with the Trainer's.
        options = {"checkpoint_dir": _output_dir(args) / "scalegate", **self.options}
        if self._transcribing:
            options.setdefault("optimizer", kwargs.get("optimizer"))
        self._start(model, collective=self.collective, loss_fn=self.loss_fn,
                    pad_token_id=getattr(processing_class, "pad_token_id", None),
                    trackers=None if self.trainer is not None else self.trackers,
                    options=options)
        self._check_start(state.global_step)
        self._batches.clear()
        self._hook = model.register_forward_pre_hook(self._collect, with_kwargs=True)
        if self.trainer is not None:
            # The Trainer's W&B logger adds train/ to the names.
            self._declare_flop_axis(active_wandb_run(), prefix="train/")

    def _collect(self, module: torch.nn.Module, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
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
        if isinstance(batch, dict):  # the Trainer's inputs, without what it adds to them
            batch = {k: v for k, v in batch.items() if k != "num_items_in_batch"}
        self._feed(batch)

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState,
                              control: TrainerControl, **kwargs: Any) -> None:
        optimizer = kwargs.get("optimizer")
        if optimizer is not None:
            self._stepping(optimizer)

    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **kwargs: Any) -> TrainerControl:
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
                self._count(batch)
            self._batches.clear()
            decision = self._end_steps()
        finally:
            self._busy = False
        if ds.decided and self.trainer is not None:
            metrics = self._metrics()
            if metrics is not None:
                self.trainer.log(metrics)
        if decision.verdict == "pause":
            # The Trainer saves checkpoint-<step> right after this event, then stops.
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, model: torch.nn.Module | None = None,
                     **kwargs: Any) -> None:
        if self.supervisor is None:
            return
        try:
            if self._hook is not None:
                self._hook.remove()
                self._hook = None
            self._finish(saved=lambda: self._saved_checkpoint(args, state))
        finally:
            self._close()

    def _saved_checkpoint(self, args: TrainingArguments, state: TrainerState) -> Path | None:
        # Read at the end of training, after every save of this step (an epoch-end save
        # may rewrite trainer_state.json), so the digest is of the files as they stay.
        path = _output_dir(args) / f"checkpoint-{state.global_step}"
        if path.is_dir():
            return path
        warnings.warn(
            f"the Trainer did not leave {path}; scalegate saves the model's weights for "
            "the pause instead (see checkpoint_dir).",
            stacklevel=2,
        )
        return None


class TrainerReplay:
    """A ``Trainer``'s optimizer step as a verifier re-executes it (a transcript's
    :class:`~scalegate.transcript.Replay`).

    ``make_trainer()`` builds a fresh Trainer configured as the run's (model class and
    config, ``TrainingArguments``, optimizer); its dataset is not used. A step runs the
    Trainer's own ``training_step`` on each micro-batch the run fed (the loss scaled by the
    items in the step, as the Trainer does), clips the gradients to ``max_grad_norm`` and
    steps the optimizer. The batches come from those the run kept
    (``Transcript(keep_batches=True)``).
    """

    def __init__(self, make_trainer: Callable[[], Trainer]) -> None:
        self.make_trainer = make_trainer
        self._trainer: Trainer | None = None  # its arguments and methods drive each step

    def make(self) -> tuple[Any, Any]:
        trainer = self._trainer = self.make_trainer()
        return trainer.model, trainer.create_optimizer()

    def step(self, model: Any, optimizer: Any, batch: Any) -> None:
        trainer = self._trainer
        if trainer is None:
            raise RunError("TrainerReplay.step before make(): nothing to train with.")
        trainer.optimizer = optimizer  # training_step consults the Trainer's optimizer
        micro = [dict(inputs) for inputs in batch]
        items = trainer._get_num_items_in_batch(micro, trainer.args.device)
        trainer.current_gradient_accumulation_steps = len(micro)
        for inputs in micro:
            trainer.training_step(model, inputs, items)
        if trainer.args.max_grad_norm > 0:
            trainer._clip_grad_norm(model)
        optimizer.step()
        model.zero_grad()


def _output_dir(args: TrainingArguments) -> Path:
    """The Trainer's output directory (``TrainingArguments`` sets its default when made)."""
    return Path(args.output_dir or "trainer_output")


__all__ = ["ScalegateCallback", "TrainerReplay"]
