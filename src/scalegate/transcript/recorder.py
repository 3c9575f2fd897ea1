"""Recording a run's training transcript as it trains.

Every ``segment_steps`` optimizer steps the recorder closes a segment: the digest of the
weights and optimizer state at its end (:func:`~scalegate.transcript.digest.state_digest`),
the Merkle root of the digests of the batches the loop fed in it, each step's learning
rate, and its FLOP, as a ``segment`` statement the supervisor appends. It keeps a snapshot
(weights and optimizer state) at every boundary in ``snapshot_dir``, the newest ``keep``
(all by default): a verifier asks for those of the segments it challenges.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalegate.ledger import SegmentPredicate, now_utc
from scalegate.transcript.digest import batch_digest, batches_root, state_digest

__all__ = ["Transcript", "TranscriptRecorder", "commit_seed", "data_root", "snapshot_path"]


def commit_seed(seed: int, salt: bytes) -> str:
    """``H(seed ‖ salt)`` (hex SHA-256): what a run statement commits to of its seed; the
    salt keeps a small seed from being guessed."""
    if len(salt) < 16:
        raise ValueError("use a salt of at least 16 random bytes")
    return hashlib.sha256(str(seed).encode() + b"\0" + salt).hexdigest()


def data_root(item_digests: list[bytes]) -> str:
    """The Merkle root (RFC 6962, hex) of a data manifest: the digests of its shards or
    examples, in the order the data loader defines them."""
    return batches_root(item_digests)


@dataclass(frozen=True)
class Transcript:
    """How a run records its transcript: a segment every ``segment_steps`` optimizer steps,
    snapshots at its boundaries in ``snapshot_dir`` (the newest ``keep``; ``None``: all).

    The run statement then also commits to ``config_digest`` (the training configuration's
    digest), ``data_root`` (the Merkle root of the data manifest, e.g. :func:`data_root` of
    the shards' digests) and ``seed_commitment`` (:func:`commit_seed`: the seed stays with
    the lab, revealed to a verifier, who checks it against this)."""

    snapshot_dir: Path
    segment_steps: int = 100
    keep: int | None = None
    config_digest: str | None = None
    data_root: str | None = None
    seed_commitment: str | None = None

    def __post_init__(self) -> None:
        if self.segment_steps < 1:
            raise ValueError("segment_steps must be at least 1")


def snapshot_path(directory: Path, run_id: str, step: int) -> Path:
    """Where the snapshot of ``run_id`` after ``step`` optimizer steps is kept."""
    return Path(directory) / f"{run_id}-step{step:08d}.pt"


class TranscriptRecorder:
    """Feeds on each step's batch and learning rate; returns a segment at each boundary."""

    def __init__(self, settings: Transcript, run_id: str, model: Any, optimizer: Any,
                 start_step: int = 0) -> None:
        if model is None or optimizer is None:
            raise ValueError("a transcript needs the model and the optimizer")
        self.settings, self.run_id = settings, run_id
        self.model, self.optimizer = model, optimizer
        self.start_step = self.step = start_step
        settings.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self.start_digest = self._snapshot(start_step)
        self._batches: list[bytes] = []
        self._lrs: list[float] = []
        self._flop = 0.0

    def take(self, batch: Any, flop: float) -> SegmentPredicate | None:
        """One optimizer step done on ``batch`` (``flop`` its FLOP); the segment it closes,
        if it closes one."""
        self._batches.append(batch_digest(batch))
        self._lrs.append(float(self.optimizer.param_groups[0]["lr"]))
        self._flop += flop
        self.step += 1
        if self.step - self.start_step < self.settings.segment_steps:
            return None
        return self.close()

    def close(self) -> SegmentPredicate | None:
        """Close the open segment (at a pause, or the end of training); ``None`` if empty."""
        if self.step == self.start_step:
            return None
        end = self._snapshot(self.step)
        seg = SegmentPredicate(
            run_id=self.run_id, start_step=self.start_step, end_step=self.step,
            start_digest=self.start_digest, digest=end,
            batches_root=batches_root(self._batches), learning_rates=self._lrs,
            flop=self._flop, uri=snapshot_path(self.settings.snapshot_dir, self.run_id,
                                               self.step).name)
        self.start_step, self.start_digest = self.step, end
        self._batches, self._lrs, self._flop = [], [], 0.0
        return seg

    def _snapshot(self, step: int) -> str:
        import torch

        path = snapshot_path(self.settings.snapshot_dir, self.run_id, step)
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "step": step, "at": now_utc().isoformat()}, path)
        self._prune()
        return state_digest(self.model, self.optimizer)

    def _prune(self) -> None:
        keep = self.settings.keep
        if keep is None:
            return
        kept = sorted(self.settings.snapshot_dir.glob(f"{self.run_id}-step*.pt"))
        for old in kept[:-keep] if keep else kept:
            old.unlink(missing_ok=True)
