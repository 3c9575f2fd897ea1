"""One supervised run across the ranks of a ``torch.distributed`` job.

Every rank counts its own compute (FLOP per input signature measured once, then looked
up) without communicating. At a *sync step*, which every rank knows in advance, the
ranks all-reduce (SUM) their counters; rank 0, the only ledger writer, adds the sums to the
run's account, consults the gate, runs the due evaluations on its model and declares a
pause if needed; then it broadcasts the verdict and the next sync step as a small float64
tensor (never a pickled object), so every rank stops at the same step.

The next sync step is the first at which the gate's answer can change: rank 0 divides the
compute left to the next milestone (evaluation, threshold, resumption ceiling) by the most
FLOP one step of the job has spent (the sum over ranks of each rank's largest step), and
bounds it by the next ``compute`` statement (``compute_every``
steps) and the next calendar check (``check_interval`` seconds at the measured step time).
With one process the ranks "sync" at every step, exactly as :class:`Supervisor` does. A
step that spends more than any step before it may carry the job past a milestone by that
step; every other milestone is looked at on the step that reaches it.

>>> dist.init_process_group("gloo")                                      # doctest: +SKIP
>>> sup = DistributedSupervisor.open("run-1", policy, "ledger.db", "trainer.key",
...                                  model=ddp_model, evaluator=suite)  # on every rank
>>> for x, y in loader:                                                  # doctest: +SKIP
...     train_step(ddp_model, x, y)
...     if sup.step(tokens=y.numel(), batch=x).verdict == "pause":
...         break                                # on every rank, at the same step

Evaluations run on rank 0 only, while the other ranks wait in the broadcast: give
``init_process_group`` a ``timeout`` longer than the evaluations take, and give the
supervisor a model whose forward needs no collective (a DDP model is unwrapped to its
``module``; a sharded model needs an evaluator that gathers it).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from scalegate.errors import LedgerUnavailable, RunError, RunPaused, ScalegateError
from scalegate.gate import Decision
from scalegate.integrations._meter import Meter, TokensOf, unpack
from scalegate.integrations._restart import check_restart, restart_point
from scalegate.integrations._supervision import FrameworkSupervisor
from scalegate.integrations.trackers import Report, Reporter, Trackers, trackers_of
from scalegate.ledger import (
    CheckpointPredicate,
    now_utc,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    import torch
    from torch.distributed import ProcessGroup

    from scalegate.compute import LossFn
    from scalegate.evals import Evaluation, Suite
    from scalegate.integrations.trackers import ScalarWriter
    from scalegate.ledger import Ledger, SigningKey
    from scalegate.policy import Policy
    from scalegate.supervisor import Clock
    from scalegate.transcript.recorder import TranscriptStep

    # What the integrations accept (type-checking names only: nothing here is imported at
    # run time, so importing this module imports neither torch nor the evaluations).
    #: A policy object, or the name of a bundled policy or the path of a policy file.
    PolicySource: TypeAlias = Policy | str | Path
    #: A ledger object, or its path (opened and closed by the run).
    LedgerSource: TypeAlias = Ledger | str | os.PathLike[str]
    #: A trainer's signing key, or the path of its key file.
    KeySource: TypeAlias = SigningKey | str | os.PathLike[str]
    #: What runs the evaluations: a suite, or the evaluations to make one of.
    Evaluator: TypeAlias = Suite | Iterable[Evaluation]
    #: Where decisions are reported: ``"auto"`` (active MLflow / W&B runs), a
    #: :class:`~scalegate.integrations.trackers.Trackers`, TensorBoard writers, or ``None``.
    TrackersSpec: TypeAlias = Trackers | Iterable[ScalarWriter] | str | None

VERDICTS: tuple[str, ...] = ("continue", "alert", "evaluate", "pause")

# Status of a rank-0 operation, broadcast so that every rank raises the same way.
_OK, _PAUSED, _LEDGER, _FAILED = 0, 1, 2, 3
_ERRORS: dict[int, type[RunError]] = {_PAUSED: RunPaused, _LEDGER: LedgerUnavailable,
                                      _FAILED: RunError}


class Collective(Protocol):
    """The two collectives a distributed run needs, over lists of floats."""

    rank: int
    world_size: int

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise SUM over every rank."""
        ...

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's values, on every rank (the others pass a list of the same length)."""
        ...


class SoloCollective:
    """One process: nothing to exchange."""

    rank, world_size = 0, 1

    def sum(self, values: list[float]) -> list[float]:
        return list(values)

    def broadcast(self, values: list[float]) -> list[float]:
        return list(values)


class TorchCollective:
    """``torch.distributed`` tensor collectives on a process group (default: the world).

    Tensors are float64 on the CPU for gloo and on the current CUDA device for NCCL.
    """

    def __init__(self, group: ProcessGroup | None = None) -> None:
        import torch
        import torch.distributed as dist

        self._dist, self._torch, self.group = dist, torch, group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self._src = dist.get_global_rank(group, 0) if group is not None else 0
        nccl = dist.get_backend(group) == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else "cpu"

    def _tensor(self, values: list[float]) -> torch.Tensor:
        return self._torch.tensor(values, dtype=self._torch.float64, device=self.device)

    def sum(self, values: list[float]) -> list[float]:
        t = self._tensor(values)
        self._dist.all_reduce(t, op=self._dist.ReduceOp.SUM, group=self.group)
        return [float(x) for x in t.tolist()]

    def broadcast(self, values: list[float]) -> list[float]:
        t = self._tensor(values)
        self._dist.broadcast(t, src=self._src, group=self.group)
        return [float(x) for x in t.tolist()]


def default_collective(group: ProcessGroup | None = None) -> Collective:
    """:class:`TorchCollective` when ``torch.distributed`` is initialised, else one process."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is required by every integration
        return SoloCollective()
    if dist.is_available() and dist.is_initialized():
        return TorchCollective(group)
    return SoloCollective()


def _unwrapped(model: torch.nn.Module | None) -> torch.nn.Module | None:
    """A DDP / DataParallel model's module: counting and evaluating must not trigger the
    wrapper's gradient synchronisation on one rank alone."""
    inner = getattr(model, "module", None)
    wrapper = type(model).__name__ in {"DistributedDataParallel", "DataParallel"}
    return inner if wrapper and inner is not None else model


def _load(policy: PolicySource | None, ledger: LedgerSource | None, key: KeySource | None
          ) -> tuple[Policy, Ledger, SigningKey, bool]:
    from scalegate.ledger import Ledger, SigningKey
    from scalegate.policy import Policy, load_policy

    if policy is None:
        raise RunError("rank 0 opens the run: it needs the policy.")
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
    signer = SigningKey.load(key) if isinstance(key, str | os.PathLike) else key
    owned = isinstance(ledger, str | os.PathLike)
    opened = Ledger.open(ledger) if isinstance(ledger, str | os.PathLike) else ledger
    if opened is None or signer is None:
        raise RunError("rank 0 writes the ledger: it needs the ledger and the trainer's key.")
    return policy, opened, signer, owned


class DistributedSupervisor:
    """A supervised run seen from one rank; see the module docstring. Create it with
    :meth:`open` on every rank. ``supervisor`` is the :class:`Supervisor` on rank 0 and
    ``None`` elsewhere; ``decision``, ``paused``, ``step_index`` and ``effective_flop`` agree
    on every rank after each sync step."""

    def __init__(
        self, *, run_id: str, collective: Collective, meter: Meter,
        supervisor: FrameworkSupervisor | None, step_index: int, effective_flop: float,
        restart_step: int | None, ledger: Ledger | None, trackers: Trackers | None, clock: Clock,
        resume_checkpoint: Path | None = None,
    ) -> None:
        self.run_id = run_id
        #: Every rank: the checkpoint a just-resumed run must load (the one its pause
        #: recorded, as rank 0 read it from the ledger), else None.
        self.resume_checkpoint = resume_checkpoint
        self.collective = collective
        self.meter = meter
        self.supervisor = supervisor
        self.step_index = step_index
        self.effective_flop = effective_flop
        self.restart_step = restart_step
        self.trackers = trackers
        self.reporter = Reporter()
        self._ledger = ledger  # opened here from a path: closed by close()
        self._clock = clock
        self._next_sync = step_index + 1
        self._since_sync = 0
        self._sync_clock = time.monotonic()
        self._step_peak = 0.0  # the most FLOP one step of the job has spent (rank 0)
        self.decision: Decision | None = supervisor.decision if supervisor else None
        self.decided = False  # the latest step took a new decision (rank 0 appended it)
        self.synced = False  # the latest step was a sync step (the same on every rank)
        self.paused = False
        self._transcript_step: TranscriptStep | None = None

    @property
    def rank(self) -> int:
        return self.collective.rank

    @property
    def is_writer(self) -> bool:
        """This rank writes the ledger (rank 0)."""
        return self.supervisor is not None

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        run_id: str,
        policy: PolicySource | None,
        ledger: LedgerSource | None,
        key: KeySource | None,
        *,
        collective: Collective | None = None,
        model: torch.nn.Module | None = None,
        evaluator: Evaluator | None = None,
        flop_per_token: float | None = None,
        loss_fn: LossFn | None = None,
        tokens_of: TokensOf | None = None,
        pad_token_id: int | None = None,
        defer_checkpoint: bool = False,
        trackers: TrackersSpec = "auto",
        **options: Any,
    ) -> DistributedSupervisor:
        """Open ``run_id`` on every rank: rank 0 registers or reopens it (``policy``, ``ledger``
        and ``key`` may be objects or paths; other ranks may pass ``None``) and every rank
        raises :class:`RunPaused` if it is paused without a valid resumption. ``options`` are
        :meth:`Supervisor.open`'s (``planned``, ``compute_every``, ``checkpoint_dir``,
        ``save_checkpoint``, ``check_interval``, ``on_ledger_error``, ``clock``...).
        ``defer_checkpoint``: a pause waits for :meth:`declare_pause` with the checkpoint
        the framework saved. ``trackers``: where rank 0 reports each decision (``"auto"``:
        active MLflow / W&B runs; see :mod:`scalegate.integrations.trackers`)."""
        collective = collective or default_collective()
        if options.get("transcript") is not None and collective.world_size > 1:
            raise RunError(
                f"run {run_id!r}: recording a training transcript across "
                f"{collective.world_size} processes is not supported (each rank feeds other "
                "batches, and re-executing the step would need all of them).",
                hint="Record the transcript of a single-process run, or leave transcript= "
                "out under torch.distributed.")
        model = _unwrapped(model)
        meter = Meter(model, flop_per_token=flop_per_token, loss_fn=loss_fn,
                      tokens_of=tokens_of, pad_token_id=pad_token_id)
        sup: FrameworkSupervisor | None = None
        owned: Ledger | None = None
        header = [0.0] * 7
        text, error, uri = "", None, ""
        if collective.rank == 0:
            try:
                loaded, opened, signer, is_owned = _load(policy, ledger, key)
                owned = opened if is_owned else None
                sup = FrameworkSupervisor.open(run_id, loaded, opened, signer, model=model,
                                               evaluator=evaluator, **options)
                sup.defer_checkpoint = defer_checkpoint
                point = restart_point(sup.state)
                uri = (point.uri or "") if point is not None else ""
                header = [_OK, sup.step_index, sup.effective_flop,
                          -1 if point is None else point.step, 0, 0, len(uri)]
            except Exception as exc:
                if owned is not None:
                    owned.close()
                error, text = exc, _describe(exc)
                header = [_status(exc), 0, 0, -1, 0, len(text), 0]
        header = collective.broadcast(header)
        text = _share_text(collective, text, int(header[5]))
        _raise_shared(collective, int(header[0]), text, error)
        uri = _share_text(collective, uri, int(header[6]))
        return cls(
            run_id=run_id, collective=collective, meter=meter, supervisor=sup,
            step_index=int(header[1]), effective_flop=header[2],
            restart_step=None if header[3] < 0 else int(header[3]), ledger=owned,
            resume_checkpoint=Path(uri) if uri else None,
            trackers=trackers_of(trackers) if collective.rank == 0 else None,
            clock=options.get("clock") or now_utc,
        )

    def restart_checkpoint(self) -> CheckpointPredicate | None:
        """On rank 0: the checkpoint a resumed run must start from (None elsewhere, or when
        the ledger does not dictate one)."""
        return restart_point(self.supervisor.state) if self.supervisor else None

    def check_start(self, step: int) -> None:
        """Every rank: refuse to train a resumed run from anywhere but the checkpoint its
        pause recorded (its step, and on rank 0 its digest when the files are reachable)."""
        if self.restart_step is None:
            return
        status, text, error = _OK, "", None
        point = self.restart_checkpoint()
        if point is not None:
            try:
                check_restart(self.run_id, point, step)
            except Exception as exc:
                status, text, error = _status(exc), _describe(exc), exc
        status, n = (int(v) for v in self.collective.broadcast([status, len(text)]))
        text = _share_text(self.collective, text, n)
        _raise_shared(self.collective, status, text, error)

    # --- the loop ------------------------------------------------------------------------

    def step(
        self, tokens: float, flop: float | None = None, phase: str = "pretraining",
        batch: Any = None,
    ) -> Decision:
        """Every rank, after each optimizer step: account this rank's work (as
        :meth:`Supervisor.step` does) and return the run's decision, the same on every rank.
        At a sync step this is a collective: call it on every rank at every step."""
        if self.paused:
            raise self._paused_error()
        self.meter.count_step(tokens, flop, phase, batch)
        return self.end_step(phase)

    def begin_transcript(self) -> None:
        """At the first batch: snapshot the start of the run's transcript, if it records
        one (once the framework has loaded any checkpoint it resumes from)."""
        if self.supervisor is not None:
            self.supervisor.begin_transcript()

    def end_step(self, phase: str = "pretraining", steps: int = 1,
                 transcript: TranscriptStep | None = None) -> Decision:
        """Every rank: ``steps`` optimizer steps ended, their work already in :attr:`meter`
        (``transcript``: what the step fed, for a run recording its transcript)."""
        if self.paused:
            raise self._paused_error()
        self._transcript_step = transcript
        self.step_index += steps
        self._since_sync += steps
        self.meter.end_steps(steps)
        self.decided = self.synced = False
        if self.step_index < self._next_sync and self.decision is not None:
            # Every rank has a decision after the first sync, which is at the first step.
            return self.decision
        return self._sync(phase)

    def flush(self, phase: str = "pretraining") -> None:
        """Every rank, at the end of training: bring the ledger up to date."""
        if self.paused:
            return
        if self._since_sync:
            self._sync(phase)
        if self.supervisor is not None and not self.paused:
            self.supervisor.flush()

    def _sync(self, phase: str) -> Decision:
        totals = self.collective.sum(self.meter.drain())
        steps, self._since_sync = self._since_sync, 0
        self.synced = True
        header = [0.0] * 8
        text, error = "", None
        if self.supervisor is not None:
            header, error = self._lead(totals, steps, phase)
            text = _describe(error) if error is not None else ""
            header.append(len(text))
        header = self.collective.broadcast(header)
        text = _share_text(self.collective, text, int(header[7]))
        status = int(header[0])
        if status != _OK:
            self.paused = True
        _raise_shared(self.collective, status, text, error)
        self._next_sync = int(header[2])
        self.effective_flop = header[3]
        self.decided = bool(header[5])
        self.paused = bool(header[6])
        if self.supervisor is not None:
            self.decision = self.supervisor.decision
            if self.decided and self.trackers is not None:
                self._send()
        else:
            self.decision = Decision(
                verdict=VERDICTS[int(header[1])], run_id=self.run_id, step=self.step_index,
                effective_flop=header[3], next_eval_at_flop=None if header[4] < 0 else header[4],
                at=self._clock(),
            )
        assert self.decision is not None
        return self.decision

    def _send(self) -> None:
        report = self.report()
        assert self.trackers is not None and report is not None
        try:
            self.trackers.send(report)
        except Exception as exc:  # a tracker outage must not stop (or desync) training
            warnings.warn(f"scalegate could not report to a tracker: {exc}", stacklevel=3)

    def _lead(self, totals: list[float], steps: int, phase: str
              ) -> tuple[list[float], Exception | None]:
        """Rank 0 at a sync step: account, decide, plan the next sync."""
        sup = self.supervisor
        assert sup is not None
        flop, tokens, peak = unpack(totals)
        self._step_peak = max(self._step_peak, peak)
        before = len(sup.state.decisions)
        try:
            d = sup.record(flop, tokens=tokens, steps=steps, method=self.meter.method,
                           phase=phase, transcript=self._transcript_step)
        except Exception as exc:
            return [float(_status(exc)), 0, 0, 0, 0, 0, 1], exc
        now = time.monotonic()
        seconds, self._sync_clock = (now - self._sync_clock) / steps, now
        ahead = 1
        if self.collective.world_size > 1:
            per_step = self._step_peak or sum(flop.values()) / steps
            ahead = sup.steps_until_check(per_step, seconds)
        decided = len(sup.state.decisions) != before
        nxt = d.next_eval_at_flop if d.next_eval_at_flop is not None else -1.0
        return [_OK, VERDICTS.index(d.verdict), self.step_index + ahead, sup.effective_flop,
                nxt, float(decided), float(sup.paused)], None

    # --- pausing -------------------------------------------------------------------------

    @property
    def pause_pending(self) -> bool:
        """Rank 0: a pause waits for the framework's checkpoint (``defer_checkpoint``)."""
        return self.supervisor is not None and self.supervisor.pause_pending

    def declare_pause(self, checkpoint: str | Path | None) -> None:
        """Rank 0: record ``checkpoint`` for the pending pause and declare it (other ranks:
        nothing to do)."""
        if self.supervisor is not None and self.supervisor.pause_pending:
            self.supervisor.declare_pause(checkpoint)

    def _paused_error(self) -> RunPaused:
        if self.supervisor is not None:
            return self.supervisor._paused_error()
        return RunPaused(
            f"run {self.run_id!r} is paused at step {self.step_index} (declared by rank 0); "
            "it may not train until the ledger holds its resumption.",
            missing=["see `scalegate runs show " + self.run_id + "`"],
        )

    # --- reporting and closing -----------------------------------------------------------

    def report(self) -> Report | None:
        """Rank 0: the run's figures and decision for trackers (None on other ranks)."""
        return self.reporter.report(self.supervisor) if self.supervisor else None

    def close(self) -> None:
        """Close the ledger if :meth:`open` opened it from a path."""
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def __enter__(self) -> DistributedSupervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _status(exc: BaseException) -> int:
    if isinstance(exc, RunPaused):
        return _PAUSED
    if isinstance(exc, LedgerUnavailable):
        return _LEDGER
    return _FAILED


def _describe(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, ScalegateError) else f"{type(exc).__name__}: {exc}"
    missing = getattr(exc, "missing", None) or []
    return "\x00".join([text, *missing])


def _share_text(collective: Collective, text: str, n: int) -> str:
    """Rank 0's ``text`` (``n`` characters, broadcast before) on every rank, as code points."""
    if n == 0:
        return ""
    values = collective.broadcast([float(ord(c)) for c in text] if collective.rank == 0
                                  else [0.0] * n)
    return "".join(chr(int(v)) for v in values)


def _raise_shared(collective: Collective, status: int, text: str,
                  error: BaseException | None) -> None:
    """After a broadcast status: rank 0 re-raises its own error, the others its copy."""
    if status == _OK:
        return
    if error is not None:
        raise error
    message, *missing = text.split("\x00")
    cls = _ERRORS.get(status, RunError)
    if cls is RunPaused:
        raise RunPaused(f"rank {collective.rank}: {message}", missing=missing)
    raise cls(f"rank {collective.rank}: {message}")


__all__ = [
    "VERDICTS",
    "Collective",
    "DistributedSupervisor",
    "SoloCollective",
    "TorchCollective",
    "default_collective",
]
