"""Challenging a run's transcript and re-executing the segments chosen.

**Which segments.** They are chosen after the lab committed to them, from randomness it
could not predict: the root hash of the first checkpoint the log signed after the run's
last segment (or an auditor's own seed). :func:`challenge` turns the seed into ``n``
distinct segment positions, deterministically, so anyone given the seed gets the same list.

**What is checked** (:func:`verify_segment`), from the lab's snapshots and batches and
the user's training step (a :class:`Replay`): the start snapshot is the state the segment
committed to; the batches fed hash to its committed root; re-executing its steps from the
start snapshot with its learning rates leads to the state it committed to at its end —
bitwise (a deterministic run on the CPU), else within the distance ``tolerance`` (report
the distance measured); and the lab's end snapshot is that state too. :func:`check_chain`
checks what needs no re-execution: the segments chain (each starts where the last ended)
and cover every step from the first.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from scalegate.ledger import Ledger, SegmentPredicate
from scalegate.transcript.data import DataManifest
from scalegate.transcript.digest import (
    batch_digest,
    batches_root,
    example_digests,
    state_digest,
    tensors_digest,
)
from scalegate.transcript.recorder import segment_randomness, snapshot_path

__all__ = ["Batches", "Replay", "SavedBatches", "SegmentCheck", "catch_probability",
           "challenge", "challenge_seed", "check_chain", "verify_segment"]


class Replay(Protocol):
    """The lab's training, as a verifier re-executes it: a fresh model and optimizer, and
    one optimizer step on a batch. The batch fed at a step comes from the replay's own
    ``batch(step)`` if it has one (the lab's data pipeline), else from the batches the lab
    kept (:class:`SavedBatches`)."""

    def make(self) -> tuple[Any, Any]: ...

    def step(self, model: Any, optimizer: Any, batch: Any) -> None: ...


class Batches(Protocol):
    """Where the batch fed at each step comes from."""

    def batch(self, step: int) -> Any: ...


class SavedBatches:
    """The batches a run kept with its transcript (``Transcript(keep_batches=True)``), as
    the lab hands them over: ``RUN-batchesNNNNNNNN.pt`` in ``directory``."""

    def __init__(self, directory: Path, run_id: str) -> None:
        self.directory, self.run_id = Path(directory), run_id
        self._loaded: tuple[int, int, list[Any]] | None = None  # start, end, batches

    def batch(self, step: int) -> Any:
        """The batch fed at ``step``; :class:`KeyError` when none was handed over."""
        if self._loaded is None or not self._loaded[0] <= step < self._loaded[1]:
            self._loaded = self._load(step)
        start, _, batches = self._loaded
        return batches[step - start]

    def _load(self, step: int) -> tuple[int, int, list[Any]]:
        import torch

        for path in sorted(self.directory.glob(f"{self.run_id}-batches*.pt")):
            end = int(path.stem.rsplit("batches", 1)[1])
            if end <= step:
                continue
            kept = torch.load(path, map_location="cpu", weights_only=True)
            start, batches = int(kept["start_step"]), list(kept["batches"])
            if start <= step < start + len(batches):
                return start, start + len(batches), batches
        raise KeyError(f"no batches of step {step} in {self.directory}")


@dataclass
class SegmentCheck:
    """What re-executing one segment showed."""

    position: int  # the segment's position in the run's transcript
    start_step: int
    end_step: int
    problems: list[str] = field(default_factory=list)
    distance: float | None = None  # largest parameter difference, when not bitwise
    delta: float | None = None  # between two re-executions, when calibrated
    flop: float | None = None  # measured while re-executing

    @property
    def ok(self) -> bool:
        return not self.problems


def challenge_seed(ledger: Ledger, after: int) -> bytes | None:
    """The root hash of the first checkpoint ``ledger`` signed (under its own key) whose
    tree holds entry ``after`` (the run's last segment): fixed only once that segment was
    logged, so the lab could not choose it. ``None`` when there is none yet."""
    from scalegate.errors import ScalegateError
    from scalegate.ledger import open_checkpoint

    for size, note in ledger.checkpoints():
        if size <= after:
            continue
        try:
            cp, _ = open_checkpoint(note, ledger.log_vkey, origin=ledger.origin)
        except ScalegateError:
            continue
        return cp.root_hash
    return None


def catch_probability(count: int, n: int, bad: int = 1) -> float:
    """The chance that ``n`` segments drawn from ``count`` include at least one of ``bad``
    altered ones."""
    from math import comb

    n = min(n, count)
    return 1.0 - comb(count - bad, n) / comb(count, n) if count else 0.0


def challenge(seed: bytes, count: int, n: int) -> list[int]:
    """``n`` distinct positions among ``count`` segments (all if ``n >= count``), drawn
    from SHA-256(seed ‖ counter), in ascending order."""
    if n >= count:
        return list(range(count))
    chosen: set[int] = set()
    counter = 0
    while len(chosen) < n:
        digest = hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        chosen.add(int.from_bytes(digest[:8], "big") % count)
        counter += 1
    return sorted(chosen)


def check_chain(segments: Sequence[SegmentPredicate], last_step: int | None = None,
                pauses: Sequence[int] = ()) -> list[str]:
    """Problems with the transcript as a whole: gaps or overlaps between segments, a
    segment starting from a state other than the last one's end (say, weights trained
    between a pause and its resumption), steps the run reported (up to ``last_step``) that
    no segment covers, and a pause (at each step in ``pauses``) that is not a boundary."""
    ends = {s.end_step for s in segments}
    problems = [f"the run paused at step {step}, but no segment ends there: the paused "
                "state is not in the transcript" for step in pauses if step not in ends]
    expected_step = 0
    expected_digest: str | None = None
    for i, s in enumerate(segments):
        if s.start_step != expected_step:
            problems.append(f"segment {i} starts at step {s.start_step}, but the transcript "
                            f"reached step {expected_step}: steps are missing or repeated")
        if expected_digest is not None and s.start_digest != expected_digest:
            problems.append(f"segment {i} starts from a state other than segment {i - 1} "
                            "ended with: the weights were changed between them")
        if s.end_step - s.start_step != len(s.learning_rates):
            problems.append(f"segment {i} says steps {s.start_step}..{s.end_step} but "
                            f"records {len(s.learning_rates)} learning rates")
        expected_step, expected_digest = s.end_step, s.digest
    if last_step is not None and expected_step < last_step:
        problems.append(f"the run reported {last_step} steps; its transcript covers "
                        f"{expected_step}: steps were trained outside it")
    return problems


def verify_segment(position: int, seg: SegmentPredicate, snapshots: Path, replay: Replay,
                   *, tolerance: float = 0.0, calibrate: bool = False,
                   flop_slack: float | None = 0.25, batches: Batches | None = None,
                   manifest: DataManifest | None = None) -> SegmentCheck:
    """Re-execute one segment from the lab's snapshots (see the module docstring).

    The batches come from ``batches``, else the replay's ``batch(step)``, else those the lab
    kept beside its snapshots. With ``calibrate``, a segment that does not reproduce bitwise
    is re-executed a second time: the distance between the two re-executions (the run's own
    nondeterminism, as Proof-of-Learning calibrates it) is reported as ``delta``, and the
    lab's end state may be up to twice that (or ``tolerance``) away. With ``flop_slack``,
    the FLOP the segment claims must be within that fraction of what re-executing it
    measures. With ``manifest``, every example fed must be in the run's data manifest."""
    out = SegmentCheck(position, seg.start_step, seg.end_step)
    feed: Batches = batches or (cast(Batches, replay) if callable(getattr(
        replay, "batch", None)) else SavedBatches(snapshots, seg.run_id))
    start = _load(snapshots, seg.run_id, seg.start_step, out, "start")
    end = _load(snapshots, seg.run_id, seg.end_step, out, "end")
    rerun = _Rerun(seg, replay, feed, _randomness(seg, end, out), manifest)
    first = rerun(start, out) if start is not None else None
    if first is None:
        return out
    model, optimizer, out.flop = first
    if state_digest(model, optimizer) != seg.digest:
        out.distance = _distance(model, end["model"]) if isinstance(end, dict) and \
            isinstance(end.get("model"), dict) else None
        allowed = tolerance
        if calibrate:
            again = rerun(start, SegmentCheck(position, 0, 0))
            if again is not None:
                out.delta = _distance(again[0], model.state_dict())
                allowed = max(tolerance, 2 * out.delta)
        if out.distance is None or out.distance > allowed:
            out.problems.append(
                f"re-executing steps {seg.start_step}..{seg.end_step} does not lead to the "
                "state the segment committed to" + (
                    f" (largest parameter difference {out.distance:.3g}, allowed "
                    f"{allowed:.3g})" if out.distance is not None else ""))
    if flop_slack is not None and seg.flop and out.flop and \
            abs(seg.flop - out.flop) > flop_slack * out.flop:
        out.problems.append(f"the segment claims {seg.flop:.3g} FLOP; re-executing it "
                            f"measures {out.flop:.3g}")
    if end is not None:
        check, check_opt = replay.make()
        if _restore(check, check_opt, end, out, "end") and \
                state_digest(check, check_opt) != seg.digest:
            out.problems.append(f"the end snapshot (step {seg.end_step}) is not the state "
                                "the segment committed to")
    return out


def _randomness(seg: SegmentPredicate, end: Any, out: SegmentCheck) -> dict[int, Any]:
    """The generator states the segment's steps began from, from its end snapshot; a
    problem noted when they are not those it committed to."""
    states = segment_randomness(end) if end is not None else {}
    if end is not None and seg.rng_digest is not None and tensors_digest(
            (f"step/{k:08d}", v) for k, v in states.items()) != seg.rng_digest:
        out.problems.append("the generator states handed over are not those the segment "
                            "committed to")
    return states


@dataclass
class _Rerun:
    """Re-executing one segment: from a start snapshot to a model, an optimizer and the
    FLOP measured."""

    seg: SegmentPredicate
    replay: Replay
    feed: Batches
    randomness: dict[int, Any]
    manifest: DataManifest | None = None

    def __call__(self, start: Any, out: SegmentCheck) -> tuple[Any, Any, float] | None:
        """``None`` (a problem noted) when the start is not what the segment committed to,
        or its batches are missing."""
        import torch

        model, optimizer = self.replay.make()
        # A copy: an optimizer keeps the tensors it is given, and training changes them.
        if not _restore(model, optimizer, copy.deepcopy(start), out, "start"):
            return None
        if state_digest(model, optimizer) != self.seg.start_digest:
            out.problems.append(f"the start snapshot (step {self.seg.start_step}) is not the "
                                "state the segment committed to")
            return None
        with torch.random.fork_rng(devices=[]):  # the verifier's own generator is left be
            flop = self._steps(model, optimizer, out)
        return None if flop is None else (model, optimizer, flop)

    def _steps(self, model: Any, optimizer: Any, out: SegmentCheck) -> float | None:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        seg, digests, flop = self.seg, [], 0.0
        for i, step in enumerate(range(seg.start_step, seg.end_step)):
            try:
                batch = self.feed.batch(step)
            except (KeyError, IndexError, FileNotFoundError) as exc:
                why = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
                out.problems.append(f"the batch of step {step} was not handed over ({why})")
                return None
            digests.append(batch_digest(batch))
            self._in_manifest(step, batch, out)
            if i < len(seg.learning_rates):
                for group in optimizer.param_groups:
                    group["lr"] = seg.learning_rates[i]
            if step in self.randomness:
                torch.set_rng_state(self.randomness[step])
            with FlopCounterMode(display=False) as counter:
                self.replay.step(model, optimizer, batch)
            flop += float(counter.get_total_flops())
        if batches_root(digests) != seg.batches_root:
            out.problems.append("the batches handed over are not those the segment "
                                "committed to (their Merkle root differs)")
        return flop

    def _in_manifest(self, step: int, batch: Any, out: SegmentCheck) -> None:
        if self.manifest is None:
            return
        try:
            outside = sum(d not in self.manifest for d in example_digests(batch))
        except ValueError as exc:
            out.problems.append(f"the examples of step {step} cannot be told apart: {exc}")
            return
        if outside:
            out.problems.append(f"step {step} trained on {outside} example(s) outside the "
                                "run's data manifest")


def _restore(model: Any, optimizer: Any, snap: Any, out: SegmentCheck, which: str) -> bool:
    """Load a snapshot into the model and optimizer; false (a problem noted) when it does
    not fit them."""
    try:
        model.load_state_dict(snap["model"])
        optimizer.load_state_dict(snap["optimizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        out.problems.append(f"the {which} snapshot does not fit the model and optimizer "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
        return False
    return True


def _load(snapshots: Path, run_id: str, step: int, out: SegmentCheck, which: str) -> Any:
    import torch

    path = snapshot_path(snapshots, run_id, step)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        out.problems.append(f"the lab handed over no {which} snapshot ({path.name})")
    except Exception as exc:  # a damaged file is the lab's problem to explain
        out.problems.append(f"the {which} snapshot {path.name} does not load ({exc})")
    return None


def _distance(model: Any, state: dict[str, Any]) -> float:
    """The largest absolute difference between the model's parameters and ``state``'s."""
    worst = 0.0
    for name, value in model.state_dict().items():
        other = state.get(name)
        if other is None or other.shape != value.shape:
            return float("inf")
        if value.is_floating_point():
            worst = max(worst, float((value.float() - other.float()).abs().max()))
    return worst
