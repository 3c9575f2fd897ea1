"""A training run under a policy: count compute, evaluate at milestones, pause by itself.

>>> sup = Supervisor.open("run-1", policy, ledger, trainer_key, model=model, evaluator=suite)
>>> for batch in loader:
...     loss = step(model, batch)
...     decision = sup.step(tokens=n_tokens(batch), batch=batch)
...     if decision.verdict == "pause":
...         break                      # the checkpoint is saved and the pause declared

The hot path of :meth:`Supervisor.step` is a few additions and comparisons: FLOP per
input signature is measured once and cached; the gate is consulted only when compute
reaches the next point where its answer can change (an evaluation milestone, a compute
threshold, a resumption ceiling) or when ``check_interval`` seconds have passed (for
calendar rules); ``compute`` statements are appended every ``compute_every`` steps.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from scalegate.compute import RunAccount
from scalegate.errors import LedgerUnavailable, RunError, RunPaused
from scalegate.gate import Decision, Resumption, decide, reached, resumption
from scalegate.ledger import (
    AppendResult,
    CheckpointPredicate,
    ComputePredicate,
    EvalPredicate,
    Ledger,
    PausePredicate,
    Predicate,
    Reason,
    Ref,
    SigningKey,
    make_statement,
    now_utc,
    sign_statement,
)
from scalegate.manifest import manifest_of
from scalegate.policy import Policy
from scalegate.remedies import missing_lines
from scalegate.runs import load_state, register_run, state_decision
from scalegate.state import LoggedStatement, RunState, fold
from scalegate.transcript.recorder import Transcript, TranscriptRecorder
from scalegate.units import sig2

Clock = Callable[[], datetime]
SaveCheckpoint = Callable[[int], "str | Path"]


def _ref(result: AppendResult) -> Ref:
    return Ref(index=result.index, leaf_hash=result.leaf_hash.hex())


def paused_error(run_id: str, policy: Policy, state: RunState, now: datetime) -> RunPaused:
    """The :class:`RunPaused` for a paused run, listing exactly what a resumption lacks."""
    res = resumption(policy, state, now=now)
    pause = state.active_pause
    where = f"paused by entry #{pause.index} at step {pause.predicate.step}" if pause else "paused"
    if res.may_resume:
        missing = ["a `resume` statement: run `scalegate resume " + run_id + "`"]
    else:
        missing = missing_lines(res, run_id)
    return RunPaused(
        f"run {run_id!r} is {where}; it may not train until the ledger holds: "
        + "; ".join(missing) + ".",
        missing=missing,
    )


# A pause's public statement when the policy's disclosure gives no template.
_DEFAULT_STATEMENT = "Training of run {run_id} is paused: {reasons}"


class Supervisor:
    """Supervises one training run under a policy, recording everything in the ledger.

    Create it with :meth:`open`. ``step`` returns the gate's current :class:`Decision`;
    on ``pause`` the supervisor has already saved the checkpoint (through
    ``save_checkpoint`` or the model's ``state_dict``) and declared the pause, and every
    later ``step`` raises :class:`RunPaused`.

    ``state`` is the run as folded so far. The supervisor extends it in place as it
    appends (so the gate's per-statement figures carry over and an append costs the
    same at the millionth compute statement as at the first): read the current
    ``state``, and copy what you need from it rather than keep an old one.
    """

    #: A transcript begins at the model's first training forward pass, seen by a hook on
    #: the model (a framework's callbacks begin it themselves, at its first batch).
    transcript_watches_model: ClassVar[bool] = True

    def __init__(
        self,
        *,
        run_id: str,
        policy: Policy,
        ledger: Ledger,
        key: SigningKey,
        state: RunState,
        evaluator: Any = None,
        model: Any = None,
        save_checkpoint: SaveCheckpoint | None = None,
        checkpoint_dir: Path,
        compute_every: int,
        check_interval: float,
        on_ledger_error: Literal["raise", "pause"],
        clock: Clock,
        flop_per_token: float | None,
        loss_fn: Any = None,
        optimizer: Any = None,
        record_interval: float = 10.0,
        transcript: Transcript | None = None,
    ) -> None:
        self.run_id, self.policy, self.ledger, self.key = run_id, policy, ledger, key
        self.evaluator, self.model = evaluator, model
        self._save = save_checkpoint
        self.checkpoint_dir = checkpoint_dir
        self.compute_every, self.check_interval = compute_every, check_interval
        self.on_ledger_error = on_ledger_error
        self._clock = clock
        self._flop_per_token = flop_per_token
        self._loss_fn = loss_fn
        self.optimizer = optimizer
        self.record_interval = record_interval
        self._transcript = None if transcript is None else TranscriptRecorder(
            transcript, run_id, model, optimizer, start_step=state.step)
        if self._transcript is not None and self.transcript_watches_model:
            self._transcript.watch(model)
        self._counter: Any = None
        self._fast: dict[Any, tuple[float, float]] = {}  # batch signature -> (flop, recompute)
        # Steps are added up here and pushed into the account only when it is read.
        self._pending: dict[tuple[str, str], float] = {}
        self._pending_tokens = 0.0
        self._pending_steps = 0
        self._next_record_time = 0.0
        reg = ledger.registry().get(key.vkey.keyid)
        self._roles: tuple[str, ...] = tuple(reg.roles) if reg else ()
        self.state = state
        self._read_upto = ledger.size  # entries below this index have been folded
        self._mine: set[int] = set()  # indices we appended since the last refresh
        self.account = RunAccount.for_policy(policy)
        self._restore_account(state)
        # Every FLOP of the run, all phases: no figure the gate reads (effective compute, a
        # regime's total) grows faster than this times its multiplier, so the schedule
        # below is set in it and never looks at the gate too late.
        self._raw = self.account.total()
        self._since_record = 0
        # Where the gate's answer can next change: (regime or None for effective compute,
        # the line). None: consult the gate on the first step.
        self._lines: list[tuple[str | None, float]] | None = None
        self._next_check_raw = 0.0  # ``_raw`` at which a line may first be reached
        self._next_check_time = 0.0
        self.decision: Decision | None = state_decision(state)
        self.paused = False

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        run_id: str,
        policy: Policy,
        ledger: Ledger,
        key: SigningKey,
        *,
        evaluator: Any = None,
        model: Any = None,
        planned: float | None = None,
        planned_tokens: float | None = None,
        org: str | None = None,
        model_name: str | None = None,
        save_checkpoint: SaveCheckpoint | None = None,
        checkpoint_dir: str | Path = "checkpoints",
        compute_every: int = 100,
        check_interval: float = 30.0,
        on_ledger_error: Literal["raise", "pause"] = "raise",
        clock: Clock | None = None,
        flop_per_token: float | None = None,
        loss_fn: Any = None,
        optimizer: Any = None,
        record_interval: float = 10.0,
        transcript: Transcript | None = None,
    ) -> Self:
        """Register ``run_id`` under ``policy`` (a signed ``run`` statement citing the
        ``policy`` statement that publishes it: the one its approvers published with
        :func:`~scalegate.governance.publish_policy`, else one signed with ``key``) or
        reopen it. Reopening a paused run that has no valid resumption raises
        :class:`RunPaused` listing what is missing; reopening under a different policy
        raises :class:`RunError`.

        ``planned`` is the planned total FLOP (it triggers ``planned`` thresholds, e.g. the
        EU notification, before they are reached). FLOP per step comes from the caller's
        ``flop=``, else the compute counter on ``batch=`` when ``model`` is given (measured
        once per input signature), else ``flop_per_token`` or 6·N per token.
        ``compute`` statements are appended every ``compute_every`` steps but no more
        often than every ``record_interval`` seconds; the gate is re-consulted for calendar
        rules every ``check_interval`` seconds. With ``optimizer`` its state is saved with
        the weights when the run pauses. With ``transcript`` (it needs ``model``,
        ``optimizer`` and each step's ``batch=``) the run records its training transcript
        (:mod:`scalegate.transcript`): the run statement commits to its configuration, data
        manifest and seed, and a ``segment`` statement ends at every multiple of
        ``segment_steps`` steps and with every ``compute`` statement; it begins at the
        model's first training forward pass (load a checkpoint after ``open``: the
        transcript starts from it).
        """
        clock = clock or now_utc
        if compute_every < 1:
            raise RunError(f"compute_every must be at least 1, got {compute_every}")
        if transcript is not None:  # refused before anything is registered
            transcript.require(run_id, model, optimizer)
        state = load_state(ledger, run_id)
        if state.run is None:
            state = register_run(ledger, key, run_id, policy, clock(), org=org,
                              model_name=model_name, planned=planned, planned_tokens=planned_tokens,
                              commitments=None if transcript is None else {
                                  "config_digest": transcript.config_digest,
                                  "data_root": transcript.data_root,
                                  "seed_commitment": transcript.seed_commitment})
        else:
            _check_policy(run_id, state, policy)
        if state.active_pause is not None:
            raise paused_error(run_id, policy, state, clock())
        return cls(
            run_id=run_id, policy=policy, ledger=ledger, key=key, state=state,
            evaluator=evaluator, model=model, save_checkpoint=save_checkpoint,
            checkpoint_dir=Path(checkpoint_dir), compute_every=compute_every,
            check_interval=check_interval, on_ledger_error=on_ledger_error, clock=clock,
            flop_per_token=flop_per_token, loss_fn=loss_fn, optimizer=optimizer,
            record_interval=record_interval, transcript=transcript,
        )

    @classmethod
    def evaluate_paused(
        cls,
        run_id: str,
        policy: Policy,
        ledger: Ledger,
        key: SigningKey,
        *,
        model: Any,
        evaluator: Any,
        checkpoint_dir: str | Path = "checkpoints",
        clock: Clock | None = None,
    ) -> Resumption:
        """Evaluate the checkpoint a paused run recorded, for evaluations that must be
        redone or added before it may resume (a pause at a compute ceiling, say).

        ``model`` must hold that checkpoint's weights (load them from
        :func:`paused_checkpoint`, whose files are checked against the recorded digest).
        One ``eval`` statement per evaluation is signed with ``key``, at the pause's step
        and compute, citing the checkpoint statement. Returns what the resumption still
        lacks afterwards (:class:`~scalegate.gate.Resumption`).
        """
        clock = clock or now_utc
        state = load_state(ledger, run_id)
        if state.run is None:
            raise RunError(f"no run {run_id!r} in ledger {ledger.path}.")
        _check_policy(run_id, state, policy)
        pause = state.active_pause
        if pause is None:
            raise RunError(
                f"run {run_id!r} is not paused: a running run is evaluated at its milestones.",
                hint="Evaluate a paused run's checkpoint only.",
            )
        sup = cls(
            run_id=run_id, policy=policy, ledger=ledger, key=key, state=state,
            evaluator=evaluator, model=model, checkpoint_dir=Path(checkpoint_dir),
            compute_every=100, check_interval=30.0, on_ledger_error="raise", clock=clock,
            flop_per_token=None,
        )
        sup._evaluate(step=pause.predicate.step, checkpoint=pause.predicate.checkpoint)
        return resumption(policy, sup.state, now=clock())

    def _restore_account(self, state: RunState) -> None:
        last = state.latest_compute
        if last is None:
            return
        p = last.predicate
        self.account.restore(p.flop_by_phase, p.methods, p.method, tokens=p.tokens, steps=p.step)

    # --- the loop ------------------------------------------------------------------------

    @property
    def step_index(self) -> int:
        """Steps accounted so far (across reopenings)."""
        return self.account.steps + self._pending_steps

    @property
    def effective_flop(self) -> float:
        """Effective compute so far, as the policy defines it."""
        self._settle()
        return self.account.effective()

    @property
    def counter(self) -> Any:
        """The :class:`~scalegate.compute.StepCounter` measuring steps (None until used)."""
        return self._counter

    def _settle(self) -> None:
        if not self._pending_steps and not self._pending:
            return
        for (method, phase), flop in self._pending.items():
            self.account.add(flop, phase, method=method)
        self.account.tokens += self._pending_tokens
        self.account.steps += self._pending_steps
        self._pending.clear()
        self._pending_tokens, self._pending_steps = 0.0, 0

    def step(
        self,
        tokens: float,
        flop: float | None = None,
        phase: str = "pretraining",
        batch: Any = None,
    ) -> Decision:
        """Account one optimizer step and return the gate's current decision.

        Consults the gate (and runs due evaluations, and declares a pause) only at
        milestones; otherwise this is a dictionary look-up and a few additions.
        """
        if self.paused:
            raise self._paused_error()
        key = _batch_key(batch, self.model) if flop is None and batch is not None else None
        cached = self._fast.get(key) if key is not None else None
        if cached is not None:
            method, (flop_now, recompute) = "measured", cached
        else:
            method, flop_now, recompute = self._flop_of(tokens, flop, batch)
            if key is not None and method == "measured":
                self._fast[key] = (flop_now, recompute)
        pending = self._pending
        pending[method, phase] = pending.get((method, phase), 0.0) + flop_now
        if recompute:
            slot = (method, "recomputation")
            pending[slot] = pending.get(slot, 0.0) + recompute
        self._pending_tokens += tokens
        self._pending_steps += 1
        self._raw += flop_now + recompute
        self._since_record += 1
        if self._transcript is None:
            return self._after_accounting()
        self._record_segment(batch, flop_now + recompute)
        return self._after_transcribed()

    def _record_segment(self, batch: Any, flop: float, lr: float | None = None,
                        rng: Any = None) -> None:
        """Feed the transcript the step's batch; append the segment it closes, if any."""
        if batch is None:
            raise RunError("a run recording its transcript needs each step's batch: "
                           "sup.step(tokens=..., batch=batch)")
        segment = self._transcript.take(batch, flop, lr=lr, rng=rng)  # type: ignore[union-attr]
        if segment is not None:
            self._append([self._compute_predicate(), segment])

    def _after_transcribed(self) -> Decision:
        """:meth:`_after_accounting` (its evaluations not taken for a step), then note the
        generator state the next step begins from (evaluations may have drawn from it)."""
        assert self._transcript is not None
        self._transcript.quiet = True
        try:
            return self._after_accounting()
        finally:
            self._transcript.quiet = False
            self._transcript.settle()

    def begin_transcript(self) -> None:
        """Snapshot the state the transcript starts from now, if recording one and not yet
        begun (it begins by itself at the model's first training forward pass; call this
        for a loop that trains the model in a way the supervisor's hook does not see)."""
        if self._transcript is not None:
            self._transcript.begin()

    @property
    def transcript_snapshot(self) -> Path | None:
        """The transcript's snapshot at the step the run opens at, if one is kept: after a
        crash, load its weights and optimizer state before training on."""
        return self._transcript.start_snapshot if self._transcript is not None else None

    def _close_segment(self) -> None:
        """Close the open transcript segment (at a pause, or the end of training)."""
        segment = self._transcript.close() if self._transcript is not None else None
        if segment is not None:
            self._append([segment])

    def _compute_now(self) -> list[Predicate]:
        """The ``compute`` statement, and with a transcript the segment it closes: appended
        together, the ledger's step count is a segment boundary after any crash, and a
        restarted run's transcript goes on from the snapshot kept there."""
        segment = self._transcript.close() if self._transcript is not None else None
        return [self._compute_predicate(), *([segment] if segment is not None else [])]

    def _after_accounting(self) -> Decision:
        """Consult the gate at a milestone or calendar check, or record compute when due."""
        try:
            if self._raw >= self._next_check_raw and self._line_reached():
                return self.decide_now()
            now = time.monotonic()
            if now >= self._next_check_time:
                return self._time_check()
            if self._since_record >= self.compute_every and now >= self._next_record_time:
                self._append(self._compute_now())
        except LedgerUnavailable:
            if self.on_ledger_error == "raise":
                raise
        assert self.decision is not None
        return self.decision

    def _flop_of(self, tokens: float, flop: float | None, batch: Any) -> tuple[str, float, float]:
        if flop is not None:
            return "declared", float(flop), 0.0
        if self.model is not None and batch is not None:
            if self._counter is None:
                from scalegate.compute import StepCounter

                self._counter = StepCounter(self.model, loss_fn=self._loss_fn)
            f = self._counter.flop(batch)
            return "measured", f.model_flop, f.recomputation
        if self._flop_per_token is None:
            if self.model is None:
                raise RunError(
                    "step() needs flop=..., or a model (with batch=... for measured counts), "
                    "or flop_per_token at open().",
                )
            n = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            self._flop_per_token = 6.0 * n
        return "architecture", self._flop_per_token * tokens, 0.0

    # --- milestones ----------------------------------------------------------------------

    def decide_now(self) -> Decision:
        """Record compute, consult the gate, run due evaluations, declare a pause if needed."""
        now = self._clock()
        self._append(self._compute_now())
        self._refresh()
        decision = decide(self.policy, self.state, now)
        if self.evaluator is not None and self._evaluate_first(decision):
            self._evaluate()
            self._refresh()
            decision = decide(self.policy, self.state, self._clock())
        self._append([decision.to_predicate()])
        self.decision = decision
        if decision.verdict == "pause":
            self._declare_pause(decision)
        self._schedule(decision)
        return decision

    def _time_check(self) -> Decision:
        """Calendar rules (cadence in time, expiring attestations, deadlines) can change the
        verdict without any compute: re-decide on the recorded state, and record a new
        decision only when the answer changed."""
        self._next_check_time = time.monotonic() + self.check_interval
        self._refresh()
        fresh = decide(self.policy, self.state, self._clock())
        last = self.decision
        if last is not None and fresh.verdict == last.verdict and fresh.rules == last.rules:
            return last
        return self.decide_now()

    def _schedule(self, decision: Decision) -> None:
        """The lines at which the gate's answer can next change, in the quantities the gate
        reads: effective compute for evaluation milestones and ceilings (and, for an
        evaluation due but not done, the point past which it is missing), a regime's total
        for each compute threshold not yet reached."""
        self._settle()
        acc = self.account
        effective = acc.effective()
        lines: list[tuple[str | None, float]] = []
        for line in [*decision.milestones.values(), decision.ceiling_flop]:
            if line is not None and not reached(effective, line):
                lines.append((None, line))
        missing_noted = any(r.rule.startswith("evaluation-missing") for r in decision.reasons)
        cadence = self.policy.evaluation
        if decision.evaluations_due and not missing_noted:
            due = min((decision.milestones.get(e, effective) for e in decision.evaluations_due),
                      default=effective)
            grace = cadence.grace if cadence else 1.0
            # Training beyond this without the evaluation makes it missing: look then.
            lines.append((None, max(effective, due * grace) * (1 + 3e-9)))
        for t in self.policy.compute.thresholds:
            if t.regime in acc.regimes and not reached(acc.total(t.regime), t.flop):
                lines.append((t.regime, t.flop))
        self._lines = lines
        self._plan()
        self._next_check_time = time.monotonic() + self.check_interval

    def _quantity(self, regime: str | None) -> float:
        return self.account.effective() if regime is None else self.account.total(regime)

    def _plan(self) -> None:
        """Set ``_next_check_raw`` to the least total FLOP at which a line may be reached:
        effective compute grows at most ``multiplier`` times as fast, a regime's total at
        most as fast, as the run's total."""
        target = math.inf
        for regime, line in self._lines or ():
            rate = self.account.multiplier if regime is None else 1.0
            gap = line * (1 - 2e-9) - self._quantity(regime)
            target = min(target, self._raw + max(0.0, gap / rate))
        self._next_check_raw = target

    def _line_reached(self) -> bool:
        """Whether the run's compute reached a line of the schedule (and if not, plan the
        next look from where it is now)."""
        if self._lines is None:
            return True
        self._settle()
        if any(reached(self._quantity(regime), line) for regime, line in self._lines):
            return True
        self._plan()
        return False

    def _evaluate_first(self, decision: Decision) -> bool:
        """Evaluate now: evaluations are due, or the run must pause where its resumption
        will ask for the checkpoint's evaluation (at a compute ceiling, or whenever the
        policy requires it), so that the pause carries fresh results."""
        if decision.verdict == "evaluate":
            return True
        if decision.verdict != "pause":
            return False
        if not ("ceiling" in decision.rules
                or self.policy.governance.resumption.require_evaluation):
            return False
        return not any(e.predicate.step == self.step_index for e in self.state.evals)

    def _evaluate(self, step: int | None = None, checkpoint: Ref | None = None) -> None:
        """Run the evaluator on the model at ``step`` (default: now) and record the results;
        ``checkpoint`` is the checkpoint statement they measured, when there is one."""
        from scalegate.evals import EvalContext, Suite

        suite = self.evaluator if isinstance(self.evaluator, Suite) else Suite(self.evaluator)
        step = self.step_index if step is None else step
        ctx = EvalContext(
            run_id=self.run_id,
            step=step,
            effective_flop=self.effective_flop,
            checkpoint=self._weights_digest(),
            log_dir=self.checkpoint_dir / "eval-logs",
            seed=step,
        )
        results = suite.run(self.model, ctx)
        # Stamped when recorded, not when each evaluation finished: a long suite would
        # otherwise date its first results before a witness's look at the log.
        recorded = self._clock()
        preds = [
            EvalPredicate(
                run_id=self.run_id, evaluation_id=r.evaluation_id, capability=r.capability,
                metric=r.metric, value=r.value, stderr=r.stderr, n=r.n,
                elicitation=r.elicitation, harness=r.harness, step=ctx.step,
                effective_flop=ctx.effective_flop, checkpoint=checkpoint,
                checkpoint_digest=ctx.checkpoint,
                log_digest=r.log_digest, status=r.status, error=r.error, at=recorded,
            )
            for r in results
        ]
        self._append(preds)

    def _weights_digest(self) -> str | None:
        if self.model is None or not hasattr(self.model, "state_dict"):
            return None
        h = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def _declare_pause(self, decision: Decision) -> None:
        """Save the checkpoint and declare the pause, its public statement written from the
        policy's ``disclosure.statement`` template."""
        assert self.state.decisions, "the decision was appended before the pause"
        decision_ref = self.state.decisions[-1].ref
        self._close_segment()  # the paused checkpoint is a transcript boundary
        if self._transcript is not None:
            self._transcript.unwatch()
        path = self._save_checkpoint()
        m = manifest_of(path)
        now = self._clock()
        (ck,) = self._append([
            CheckpointPredicate(
                run_id=self.run_id, step=self.step_index, digest=m.digest, manifest=m.files,
                effective_flop=self.effective_flop, uri=str(path.resolve()), at=now,
            )
        ])
        summary = "; ".join(r.message for r in decision.reasons) or "the gate required a pause"
        template = self.policy.disclosure.statement or _DEFAULT_STATEMENT
        statement = template.format(
            run_id=self.run_id, step=self.step_index, effective_flop=sig2(self.effective_flop),
            reasons=summary, policy_id=self.policy.id, policy_version=self.policy.version)
        self._append([
            PausePredicate(
                run_id=self.run_id, decision=decision_ref, checkpoint=_ref(ck),
                step=self.step_index, effective_flop=self.effective_flop,
                public_statement=statement, at=now,
            )
        ])
        self.paused = True

    def _save_checkpoint(self) -> Path:
        if self._save is not None:
            return Path(self._save(self.step_index))
        if self.model is None:
            raise RunError(
                "the run must pause but has no way to save a checkpoint.",
                hint="Pass model=... or save_checkpoint=... to Supervisor.open().",
            )
        import torch

        path = self.checkpoint_dir / f"{self.run_id}-step{self.step_index}"
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), path / "model.pt")
        if self.optimizer is not None:
            torch.save(self.optimizer.state_dict(), path / "optimizer.pt")
        return path

    # --- the ledger ----------------------------------------------------------------------

    def _compute_predicate(self) -> ComputePredicate:
        self._settle()
        self._since_record = 0
        self._next_record_time = time.monotonic() + self.record_interval
        acc = self.account
        return ComputePredicate(
            run_id=self.run_id, step=acc.steps, tokens=acc.tokens,
            flop_by_phase=acc.by_phase(), totals=acc.totals(), effective_flop=acc.effective(),
            method=acc.method, methods=acc.methods if len(acc.methods) > 1 else {},
            at=self._clock(),
        )

    def _append(self, predicates: Sequence[Predicate]) -> list[AppendResult]:
        """Sign and append in one durable batch, then fold what was written (fail closed).

        Each statement carries its place in the run (``seq``), so a replayed or withheld
        one shows in the log.
        """
        seq = self.state.next_seq
        statements = [make_statement(p.model_copy(update={"seq": seq + i}))
                      for i, p in enumerate(predicates)]
        envelopes = [sign_statement(s, self.key) for s in statements]
        try:
            results = self.ledger.append_many(envelopes)
        except Exception as exc:  # any storage failure must stop training
            self._ledger_failed(exc)
            raise LedgerUnavailable(
                f"could not write to ledger {self.ledger.path}: {exc} Training must not go on "
                "unrecorded.",
                hint="Fix the ledger (disk, permissions, key registration), then reopen the run.",
            ) from exc
        entries = [
            LoggedStatement(ref=_ref(r), statement=s, signer=self.key.name, roles=self._roles)
            for r, s in zip(results, statements, strict=True)
        ]
        self.state = fold(entries, run_id=self.run_id, into=self.state, extend=True)
        self._mine.update(r.index for r in results)
        return results

    def _refresh(self) -> None:
        """Re-read the run if anyone else wrote to it (e.g. an attestation) since we last read.

        Called right after our own append, so the decision's basis (the state's size) holds
        exactly the entries the auditor will fold when it replays this decision.
        """
        since = self._read_upto
        foreign = [
            e
            for e in self.ledger.entries(since, run_id=self.run_id)
            + self.ledger.entries(since, kind="attestation")
            if e.index not in self._mine
        ]
        if foreign:
            self.state = load_state(self.ledger, self.run_id)
        seen = [*self._mine, *(e.index for e in foreign)]
        self._read_upto = max(since, max(seen) + 1) if seen else since
        self._mine.clear()

    def _paused_error(self) -> RunPaused:
        if self.state.active_pause is None and self.decision is not None:
            why = "; ".join(r.message for r in self.decision.reasons)
            return RunPaused(
                f"run {self.run_id!r} stopped: {why}. Reopen it once the ledger accepts "
                "entries again.",
                missing=["a writable ledger that accepts the trainer's key"],
            )
        return paused_error(self.run_id, self.policy, self.state, self._clock())

    def _ledger_failed(self, exc: BaseException) -> None:
        self.paused = True
        self.decision = Decision(
            verdict="pause",
            reasons=[Reason(rule="ledger-unavailable", message=f"the ledger could not be "
                            f"written: {exc}")],
            run_id=self.run_id, step=self.step_index,
            effective_flop=self.effective_flop, at=self._clock(),
        )

    def flush(self) -> None:
        """Record the current compute now, and close the open transcript segment (at the
        end of training)."""
        if self._since_record:
            self._append(self._compute_now())
        self._close_segment()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.paused:
            self.flush()

    @property
    def resume_checkpoint(self) -> Path | None:
        """The checkpoint to load when the run was just resumed (None otherwise).

        It is the checkpoint the latest ``resume`` statement cites, provided no compute was
        recorded since; its files are re-hashed and must match the recorded digest.
        """
        resumed = self.state.last_resume
        if resumed is None or (self.state.compute and self.state.compute[-1].index > resumed.index):
            return None
        return _recorded_checkpoint(self.state, resumed.predicate.checkpoint,
                                    f"resume #{resumed.index}")


def _check_policy(run_id: str, state: RunState, policy: Policy) -> None:
    """Refuse ``policy`` unless it is the one the run was registered under."""
    assert state.run is not None
    cited = state.run.predicate.policy
    if cited.digest != policy.digest():
        raise RunError(
            f"run {run_id!r} was registered under policy {cited.id} {cited.version} "
            f"(digest {cited.digest[:12]}…), not {policy.id} {policy.version} "
            f"(digest {policy.digest()[:12]}…).",
            hint="Open it with the policy it was registered under, or start a new run id.",
        )


def paused_checkpoint(ledger: Ledger, run_id: str) -> Path:
    """The files of the checkpoint a paused run recorded, re-hashed against the digest in
    the ledger (load the weights from them to :meth:`Supervisor.evaluate_paused`)."""
    state = load_state(ledger, run_id)
    pause = state.active_pause
    if pause is None:
        raise RunError(f"run {run_id!r} is not paused.")
    return _recorded_checkpoint(state, pause.predicate.checkpoint, f"pause #{pause.index}")


def _recorded_checkpoint(state: RunState, ref: Ref, cited_by: str) -> Path:
    record = state.find(ref)
    if record is None or not isinstance(record.predicate, CheckpointPredicate):
        raise RunError(f"{cited_by} cites no checkpoint statement of this run")
    path = Path(record.predicate.uri or "")
    if not record.predicate.uri or not path.exists():
        raise RunError(
            f"checkpoint {path} recorded in entry #{record.index} is not on this machine.",
            hint="Restore the checkpoint files the pause recorded to that path.",
        )
    if manifest_of(path).digest != record.predicate.digest:
        raise RunError(
            f"checkpoint {path} does not match the digest recorded in entry #{record.index}.",
            hint="Restore the checkpoint files the pause recorded; do not use others.",
        )
    return path


def _batch_key(batch: Any, model: Any) -> Any:
    """A cheap signature of a batch of tensors (shapes, dtypes, devices, grad flags) and the
    model's mode, or None when the batch is not made of tensors (the counter decides then)."""
    items = batch.values() if isinstance(batch, dict) else (
        batch if isinstance(batch, tuple | list) else (batch,)
    )
    key = []
    for t in items:
        shape = getattr(t, "shape", None)
        if shape is None:
            return None
        key.append((shape, t.dtype, t.device, t.requires_grad))
    if isinstance(batch, dict):
        key.append(tuple(batch))
    return (tuple(key), getattr(model, "training", None), _grad_mode())


def _grad_mode() -> bool:
    import torch  # already imported by whoever made the tensors

    return torch.is_grad_enabled()
