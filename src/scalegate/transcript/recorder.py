"""Recording a run's training transcript as it trains.

At every multiple of ``segment_steps`` optimizer steps the recorder closes a segment (the
supervisor closes one too wherever it records compute, so that after a crash the ledger's
step count is a boundary, and at a pause and the end): the digest of the weights and
optimizer state at its end (:func:`~scalegate.transcript.digest.state_digest`), the Merkle
root of the digests of the batches the loop fed in it, each step's learning rate, its FLOP
and the digest of the random-number generator states its steps began from, as a
``segment`` statement the supervisor appends. It keeps a snapshot (weights, optimizer
state, and the segment's generator states) at every boundary in ``snapshot_dir``, the
newest ``keep`` (all by default): a verifier asks for those of the segments it challenges.

The transcript begins at the model's first training forward pass, once the loop has loaded
whatever it starts from. The generator state is noted at the first forward of each step
(or given by a framework's callback), and kept at the first step of a segment and wherever
a step began from a state other than the one the step before left (an evaluation, or a new
epoch's shuffling seed), so that dropout re-executes bitwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalegate.errors import RunError
from scalegate.ledger import SegmentPredicate, now_utc
from scalegate.transcript.digest import (
    batch_digest,
    batches_root,
    state_digest,
    tensors_digest,
)

__all__ = ["Transcript", "TranscriptRecorder", "TranscriptStep", "batches_path", "commit_seed",
           "segment_randomness", "snapshot_path"]


def commit_seed(seed: int, salt: bytes) -> str:
    """``H(seed ‖ salt)`` (hex SHA-256): what a run statement commits to of its seed; the
    salt keeps a small seed from being guessed."""
    if len(salt) < 16:
        raise ValueError("use a salt of at least 16 random bytes")
    return hashlib.sha256(str(seed).encode() + b"\0" + salt).hexdigest()


@dataclass(frozen=True)
class Transcript:
    """How a run records its transcript: a segment ends at every multiple of
    ``segment_steps`` optimizer steps (and wherever the supervisor records compute, pauses
    or ends), snapshots at its boundaries in ``snapshot_dir`` (the newest ``keep``; ``None``: all),
    and with ``keep_batches`` each segment's batches beside them (``RUN-batchesNNNNNNNN.pt``),
    ready to hand over with the snapshots.

    The run statement then also commits to ``config_digest`` (the training configuration's
    digest), ``data_root`` (the Merkle root of the data manifest: a
    :class:`~scalegate.transcript.data.DataManifest`'s ``root``) and ``seed_commitment``
    (:func:`commit_seed`: the seed stays with the lab, revealed to a verifier, who checks
    it against this)."""

    snapshot_dir: Path
    segment_steps: int = 100
    keep: int | None = None
    keep_batches: bool = False
    config_digest: str | None = None
    data_root: str | None = None
    seed_commitment: str | None = None

    def __post_init__(self) -> None:
        if self.segment_steps < 1:
            raise ValueError("segment_steps must be at least 1")
        if self.keep is not None and self.keep < 2:
            raise ValueError("keep at least 2 snapshots: a segment's start and its end")

    def require(self, run_id: str, model: Any, optimizer: Any) -> None:
        """Raise :class:`RunError` unless the run gives what a transcript digests."""
        if model is None or optimizer is None:
            raise RunError(f"run {run_id!r}: a training transcript digests the model and the "
                           "optimizer, and was given no "
                           + ("model" if model is None else "optimizer") + ".",
                           hint="Pass model=... and optimizer=... with transcript=...")


@dataclass
class TranscriptStep:
    """What a framework's optimizer step fed: its micro-batches (``batch``), the learning
    rate it stepped with and the random-number generator state it began from."""

    batch: list[Any] = field(default_factory=list)
    lr: float | None = None
    rng: Any = None


def snapshot_path(directory: Path, run_id: str, step: int) -> Path:
    """Where the snapshot of ``run_id`` after ``step`` optimizer steps is kept."""
    return Path(directory) / f"{run_id}-step{step:08d}.pt"


def batches_path(directory: Path, run_id: str, end_step: int) -> Path:
    """Where the batches of ``run_id``'s segment ending at ``end_step`` are kept."""
    return Path(directory) / f"{run_id}-batches{end_step:08d}.pt"


class TranscriptRecorder:
    """Feeds on each step's batch, learning rate and randomness; returns a segment at each
    boundary. :meth:`begin` snapshots the start (a framework begins at its first batch,
    once any checkpoint it resumes from is loaded)."""

    def __init__(self, settings: Transcript, run_id: str, model: Any, optimizer: Any,
                 start_step: int = 0) -> None:
        settings.require(run_id, model, optimizer)
        self.settings, self.run_id = settings, run_id
        self.model, self.optimizer = model, optimizer
        self.start_step = self.step = start_step
        settings.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self.start_digest: str | None = None
        self._batches: list[bytes] = []
        self._kept: list[Any] = []
        self._lrs: list[float] = []
        self._flop = 0.0
        self._rng: dict[int, Any] = {}  # step -> the generator state it began from
        self._rng_after: Any = None  # the state the latest step left
        self._step_rng: Any = None  # the state the open step began from, when seen
        self.quiet = False  # the supervisor's own forward passes (evaluations) are not steps
        self._hook: Any = None

    @property
    def begun(self) -> bool:
        return self.start_digest is not None

    def begin(self) -> None:
        """Snapshot the state training starts from (or resumes from). A snapshot already
        kept at that step (the end of the segment before a pause) is left as it is: the
        verifier holds each side to its own digest."""
        if self.start_digest is not None:
            return
        if snapshot_path(self.settings.snapshot_dir, self.run_id, self.step).exists():
            self.start_digest = state_digest(self.model, self.optimizer)
        else:
            self.start_digest = self._snapshot(self.step, {})
        self.settle()

    def watch(self, model: Any) -> None:
        """Begin at ``model``'s first training forward pass (after the loop has loaded any
        checkpoint it restarts from) and note, at the first forward of each step, the
        generator state the step begins from: a plain loop shows its supervisor a step
        only once it is done."""
        self._hook = model.register_forward_pre_hook(self._forward)

    def unwatch(self) -> None:
        """Stop watching the model (the run paused: its supervisor trains no more)."""
        hook, self._hook = self._hook, None
        if hook is not None:
            hook.remove()

    def _forward(self, module: Any, args: Any) -> None:
        import torch

        if self.quiet or not module.training or not torch.is_grad_enabled():
            return
        if not self.begun:
            self.begin()
        if self._step_rng is None:
            self._step_rng = torch.get_rng_state()

    @property
    def start_snapshot(self) -> Path | None:
        """The snapshot kept at the step the open segment starts from, if there is one: a
        run restarting there after a crash loads it (weights and optimizer state)."""
        path = snapshot_path(self.settings.snapshot_dir, self.run_id, self.start_step)
        return path if path.exists() else None

    def settle(self) -> None:
        """Note the generator state the next step will begin from, unless it says otherwise
        (after the supervisor's own work, such as evaluations)."""
        import torch

        self._rng_after = torch.get_rng_state()

    def take(self, batch: Any, flop: float, *, lr: float | None = None,
             rng: Any = None) -> SegmentPredicate | None:
        """One optimizer step done on ``batch`` (``flop`` its FLOP; ``lr`` its learning rate,
        else the optimizer's now; ``rng`` the generator state it began from, else the one
        the last step left); the segment it closes, if it closes one."""
        import torch

        if not self.begun:
            raise RunError(
                f"run {self.run_id!r}: the transcript saw no training forward pass of the "
                "model before the step, so it cannot digest the state the step began from.",
                hint="Give the supervisor the model the loop trains, or call "
                "sup.begin_transcript() once the weights are loaded, before training.")
        if rng is None:
            rng = self._step_rng
        self._step_rng = None
        began = self._rng_after if rng is None else rng
        if self.step == self.start_step or not torch.equal(began, self._rng_after):
            self._rng[self.step] = began.clone()
        self._batches.append(batch_digest(batch))
        if self.settings.keep_batches:
            self._kept.append(_copied(batch))
        self._lrs.append(float(self.optimizer.param_groups[0]["lr"] if lr is None else lr))
        self._flop += flop
        self.step += 1
        self.settle()
        if self.step % self.settings.segment_steps:
            return None
        return self.close()

    def close(self) -> SegmentPredicate | None:
        """Close the open segment (at a pause, or the end of training); ``None`` if empty."""
        if self.step == self.start_step or self.start_digest is None:
            return None
        rng = {f"step/{k:08d}": v for k, v in self._rng.items()}
        end = self._snapshot(self.step, self._rng)
        seg = SegmentPredicate(
            run_id=self.run_id, start_step=self.start_step, end_step=self.step,
            start_digest=self.start_digest, digest=end,
            batches_root=batches_root(self._batches), learning_rates=self._lrs,
            flop=self._flop, uri=snapshot_path(self.settings.snapshot_dir, self.run_id,
                                               self.step).name,
            rng_digest=tensors_digest(rng.items()))
        if self.settings.keep_batches:
            _save({"start_step": self.start_step, "batches": self._kept},
                  batches_path(self.settings.snapshot_dir, self.run_id, self.step))
        self.start_step, self.start_digest = self.step, end
        self._batches, self._kept, self._lrs, self._flop, self._rng = [], [], [], 0.0, {}
        self._prune()
        return seg

    def _snapshot(self, step: int, randomness: dict[int, Any]) -> str:
        _save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
               "randomness": randomness, "step": step, "at": now_utc().isoformat()},
              snapshot_path(self.settings.snapshot_dir, self.run_id, step))
        return state_digest(self.model, self.optimizer)

    def _prune(self) -> None:
        keep = self.settings.keep
        if keep is None:
            return
        directory = self.settings.snapshot_dir
        for pattern in (f"{self.run_id}-step*.pt", f"{self.run_id}-batches*.pt"):
            for old in sorted(directory.glob(pattern))[:-keep]:
                old.unlink(missing_ok=True)


def segment_randomness(snapshot: Any) -> dict[int, Any]:
    """The generator states a segment's steps began from, as its end snapshot keeps them."""
    found = snapshot.get("randomness") if isinstance(snapshot, dict) else None
    return {int(k): v for k, v in found.items()} if isinstance(found, dict) else {}


def _copied(batch: Any) -> Any:
    """A CPU copy of a batch's tensors (the loop may reuse its buffers)."""
    if isinstance(batch, Mapping):
        return {k: _copied(v) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        copied = [_copied(v) for v in batch]
        return copied if isinstance(batch, list) else tuple(copied)
    return batch.detach().cpu().clone() if hasattr(batch, "detach") else batch


def _save(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` whole or not at all (a crash leaves no torn snapshot)."""
    import os

    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
