"""A :class:`Supervisor` for training loops it does not own: bulk accounting, a planned next
check, and a pause whose checkpoint the framework writes.

Three things the HF / Lightning callbacks and the ``torch.distributed`` front need that a
plain loop does not:

- ``record``: account several optimizer steps at once (FLOP already summed over ranks),
  then do exactly what :meth:`Supervisor.step` does after accounting;
- ``steps_until_check``: how many steps from now the gate's answer can next change, so
  every rank can agree in advance on the step at which to synchronise;
- ``defer_checkpoint``: on ``pause`` the decision is recorded at once, but the
  ``checkpoint`` and ``pause`` statements wait for :meth:`declare_pause`, called with the
  directory the framework actually saved (a Trainer writes its checkpoint *after* the
  callback returns).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from scalegate.errors import RunError, RunPaused
from scalegate.gate import Decision
from scalegate.supervisor import Supervisor
from scalegate.transcript.recorder import TranscriptStep


class FrameworkSupervisor(Supervisor):
    """A :class:`Supervisor` driven by a framework's callback (see the module docstring)."""

    defer_checkpoint: bool = False
    _pause_decision: Decision | None = None
    transcript_watches_model: ClassVar[bool] = False  # the callbacks begin it

    # --- accounting ----------------------------------------------------------------------

    def record(
        self,
        flop_by_phase: Mapping[str, float],
        *,
        tokens: float,
        steps: int,
        method: str,
        phase: str = "pretraining",
        transcript: TranscriptStep | None = None,
    ) -> Decision:
        """Account ``steps`` optimizer steps that spent ``flop_by_phase`` on ``tokens`` tokens,
        then consult the gate if a milestone, the check interval or the compute cadence is
        reached, as :meth:`Supervisor.step` does for one step. A run recording its
        transcript is recorded one step at a time, with what the step fed (``transcript``)."""
        if self.paused:
            raise self._paused_error()
        self._settle()
        self.account.add(float(flop_by_phase.get(phase, 0.0)), phase, method=method)
        for other, flop in flop_by_phase.items():
            if other != phase and flop:
                self.account.add(float(flop), other, method=method)
        self.account.tokens += tokens
        self.account.steps += steps
        self._raw += float(sum(flop_by_phase.values()))
        self._since_record += steps
        if self._transcript is None:
            return self._after_accounting()
        if transcript is None or steps != 1:
            raise RunError("a run recording its transcript is recorded one optimizer step "
                           "at a time, with the step's batches")
        self._record_segment(transcript.batch, float(sum(flop_by_phase.values())),
                             lr=transcript.lr, rng=transcript.rng)
        return self._after_transcribed()

    def steps_until_check(self, flop_per_step: float, seconds_per_step: float) -> int:
        """Steps from now until ``record`` must next see the totals, if no step spends more
        than ``flop_per_step`` (every phase) and steps take ``seconds_per_step``: the first
        step at which a compute milestone may be reached, the next ``compute``
        statement (``compute_every`` steps, at most every ``record_interval`` seconds) and
        the next calendar check, whichever comes first; at least 1."""
        record = self.compute_every - self._since_record
        candidates: list[float] = []
        if seconds_per_step > 0:  # unknown step time (0): the clock is not planned for
            now = time.monotonic()
            record = max(record, math.ceil((self._next_record_time - now) / seconds_per_step))
            candidates.append(math.ceil((self._next_check_time - now) / seconds_per_step))
        candidates.append(record)
        if flop_per_step > 0 and math.isfinite(self._next_check_raw):
            # The schedule is in the run's total FLOP (every phase), as ``flop_per_step``.
            candidates.append(math.ceil((self._next_check_raw - self._raw) / flop_per_step))
        return int(max(1, min(candidates)))

    # --- a pause whose checkpoint the framework writes -----------------------------------

    def _declare_pause(self, decision: Decision) -> None:
        if not self.defer_checkpoint:
            super()._declare_pause(decision)
            return
        self._pause_decision = decision
        self._close_segment()  # the paused state is a transcript boundary
        self.paused = True

    def _paused_error(self) -> RunPaused:
        if self._pause_decision is None:
            return super()._paused_error()
        reasons = self._pause_decision.reasons
        why = "; ".join(r.message for r in reasons) or "the gate required a pause"
        return RunPaused(
            f"run {self.run_id!r} is pausing at step {self.step_index}: {why}. It may not "
            "train further while its checkpoint is saved and the pause declared.",
            missing=["the pause's checkpoint, then the resumption the policy requires"],
        )

    @property
    def pause_pending(self) -> bool:
        """A ``pause`` decision is recorded and waits for its checkpoint (:meth:`declare_pause`)."""
        return self._pause_decision is not None

    def declare_pause(self, checkpoint: str | Path | None) -> None:
        """Record ``checkpoint`` (the file or directory the framework saved at the paused
        step; ``None``: save the model's weights as a plain supervisor would) and declare the
        pending pause, citing the ``pause`` decision already in the ledger."""
        decision = self._pause_decision
        if decision is None:
            raise RunError(f"run {self.run_id!r} has no pause waiting for its checkpoint.")
        self._pause_decision = None
        saved = self._save
        if checkpoint is not None:
            self._save = lambda _step: checkpoint
        try:
            # Nothing was appended since the decision (a paused supervisor appends nothing),
            # so the parent cites it as the latest decision of the run.
            super()._declare_pause(decision)
        finally:
            self._save = saved


__all__ = ["FrameworkSupervisor"]
