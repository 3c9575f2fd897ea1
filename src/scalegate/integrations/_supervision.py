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

from scalegate.errors import LedgerUnavailable, RunError, RunPaused
from scalegate.gate import Decision
from scalegate.supervisor import Supervisor


class FrameworkSupervisor(Supervisor):
    """A :class:`Supervisor` driven by a framework's callback (see the module docstring)."""

    defer_checkpoint: bool = False
    _pending: Decision | None = None

    # --- accounting ----------------------------------------------------------------------

    def record(
        self,
        flop_by_phase: Mapping[str, float],
        *,
        tokens: float,
        steps: int,
        method: str,
        phase: str = "pretraining",
    ) -> Decision:
        """Account ``steps`` optimizer steps that spent ``flop_by_phase`` on ``tokens`` tokens,
        then consult the gate if a milestone, the check interval or the compute cadence is
        reached, as :meth:`Supervisor.step` does for one step."""
        if self.paused:
            raise self._paused_error()
        main = float(flop_by_phase.get(phase, 0.0))
        self.account.add(main, phase, method=method, tokens=tokens, steps=steps)
        for other, flop in flop_by_phase.items():
            if other != phase and flop:
                self.account.add(float(flop), other, method=method)
        self._raw += float(sum(flop_by_phase.values()))
        self._since_record += steps
        try:
            if self._raw * self.account.multiplier >= self._next_check_raw:
                return self.decide_now()
            if time.monotonic() >= self._next_check_time:
                return self._time_check()
            if self._since_record >= self.compute_every:
                self._append([self._compute_predicate()])
        except LedgerUnavailable:
            if self.on_ledger_error == "raise":
                raise
        assert self.decision is not None
        return self.decision

    def steps_until_check(self, flop_per_step: float, seconds_per_step: float) -> int:
        """Steps from now until ``record`` must next see the totals: the next compute
        milestone at ``flop_per_step``, the next compute statement, the next calendar check
        at ``seconds_per_step``; at least 1."""
        candidates = [self.compute_every - self._since_record]
        if flop_per_step > 0 and math.isfinite(self._next_check_raw):
            remaining = self._next_check_raw / self.account.multiplier - self._raw
            candidates.append(math.ceil(remaining / flop_per_step))
        if seconds_per_step > 0:
            left = self._next_check_time - time.monotonic()
            candidates.append(math.ceil(left / seconds_per_step))
        return max(1, min(candidates))

    # --- a pause whose checkpoint the framework writes -----------------------------------

    def _declare_pause(self, decision: Decision) -> None:
        if not self.defer_checkpoint:
            super()._declare_pause(decision)
            return
        self._pending = decision
        self.paused = True

    def _paused_error(self) -> RunPaused:
        if self._pending is None:
            return super()._paused_error()
        why = "; ".join(r.message for r in self._pending.reasons) or "the gate required a pause"
        return RunPaused(
            f"run {self.run_id!r} is pausing at step {self.step_index}: {why}. It may not "
            "train further while its checkpoint is saved and the pause declared.",
            missing=["the pause's checkpoint, then the resumption the policy requires"],
        )

    @property
    def pause_pending(self) -> bool:
        """A ``pause`` decision is recorded and waits for its checkpoint (:meth:`declare_pause`)."""
        return self._pending is not None

    def declare_pause(self, checkpoint: str | Path | None) -> None:
        """Record ``checkpoint`` (the file or directory the framework saved at the paused
        step; ``None``: save the model's weights as a plain supervisor would) and declare the
        pending pause, citing the ``pause`` decision already in the ledger."""
        decision = self._pending
        if decision is None:
            raise RunError(f"run {self.run_id!r} has no pause waiting for its checkpoint.")
        self._pending = None
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
