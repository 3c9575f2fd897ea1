"""What recording a training transcript costs, side by side with the same training unrecorded.

    .venv/bin/python benchmarks/bench_transcript.py                 # 8 pairs of 100 steps
    .venv/bin/python benchmarks/bench_transcript.py --d-model 256 --layers 4   # 3.2M params

Trains the demo's transformer (CPU; 0.1M parameters, or wider with ``--d-model`` and
``--layers``) under two supervisors in one process, in
alternating blocks of ``--segment`` steps: a run without a transcript, then a run recording
one (batch digests, learning rates, generator states, and at each boundary the digest of
the weights and optimizer state and a snapshot on disk). Each pair of blocks trains the
same model back to back, so the machine's drift hits both alike; the overhead is the median
of the pairs' ratios. It also prints the time spent inside the recorder itself, and the
hashes a state digest could use, measured on this machine (the faster one is used).
Not a timed test.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

from scalegate.demo.training import DemoTrainConfig, DemoTrainer
from scalegate.demo.workspace import create_workspace
from scalegate.policy import load_policy
from scalegate.supervisor import Supervisor
from scalegate.transcript import Transcript, TranscriptRecorder

_INSIDE = [0.0, 0]  # seconds spent in the recorder; nesting depth


def _timed(f):  # type: ignore[no-untyped-def]
    def wrapper(*args, **kw):  # type: ignore[no-untyped-def]
        _INSIDE[1] += 1
        t = time.perf_counter()
        try:
            return f(*args, **kw)
        finally:
            _INSIDE[1] -= 1
            if not _INSIDE[1]:  # take() closes segments: count that time once
                _INSIDE[0] += time.perf_counter() - t
    return wrapper


for _name in ("take", "close", "begin", "settle"):
    setattr(TranscriptRecorder, _name, _timed(getattr(TranscriptRecorder, _name)))


def _block(trainer: DemoTrainer, sup: Supervisor, steps: int, per_step: float) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        batch = trainer.batch()
        sup.step(tokens=trainer.step(), flop=per_step, batch=batch)
    return time.perf_counter() - t


def _hashes(megabytes: int = 64) -> str:
    buf = bytes(megabytes << 20)
    rates = {}

    def rate(f) -> float:  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        for _ in range(3):
            f()
        return 3 * megabytes / (time.perf_counter() - t)

    rates["SHA-256"] = rate(lambda: hashlib.sha256(buf).digest())
    try:
        from blake3 import blake3
    except ImportError:
        return f"SHA-256 {rates['SHA-256']:.0f} MB/s; BLAKE3 not installed"
    rates["BLAKE3, one thread"] = rate(lambda: blake3(buf).digest())
    rates["BLAKE3, every core"] = rate(lambda: blake3(buf, max_threads=blake3.AUTO).digest())
    base = rates["SHA-256"]
    return "; ".join(f"{k} {v:.0f} MB/s ({v / base:.1f}x)" for k, v in rates.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--segment", type=int, default=100, help="steps a segment (the default)")
    ap.add_argument("--d-model", type=int, default=None, help="width (the demo's: 64)")
    ap.add_argument("--layers", type=int, default=None, help="layers (the demo's: 2)")
    a = ap.parse_args()
    config = DemoTrainConfig()
    if a.d_model or a.layers:
        config = config.model_copy(update={"model": config.model.model_copy(update={
            "d_model": a.d_model or config.model.d_model,
            "n_layer": a.layers or config.model.n_layer})})
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        ws = create_workspace(work / "ws")
        trainer = DemoTrainer(config)
        params = sum(p.numel() for p in trainer.model.parameters())
        per_step = trainer.flop_per_token() * trainer.tokens_per_step

        def supervise(run: str, transcript: Transcript | None) -> Supervisor:
            return Supervisor.open(run, load_policy("eu-ai-act"), ws.ledger, ws.key("trainer"),
                                   model=trainer.model, optimizer=trainer.optimizer,
                                   check_interval=1e9, compute_every=50, transcript=transcript)

        plain = supervise("plain", None)
        recorded = supervise("recorded", Transcript(work / "snapshots", segment_steps=a.segment))
        _block(trainer, plain, 20, per_step)  # warm-up: first signatures, allocator
        ratios, times = [], [0.0, 0.0]
        _INSIDE[0] = 0.0
        for i in range(a.pairs):
            without = _block(trainer, plain, a.segment, per_step)
            with_ = _block(trainer, recorded, a.segment, per_step)
            times[0] += without
            times[1] += with_
            ratios.append(with_ / without)
            print(f"pair {i + 1}: {without:.3f} s without, {with_:.3f} s with "
                  f"({(with_ / without - 1) * 100:+.2f} %)")
        recorded.flush()
        ws.close()
    overhead = statistics.median(ratios) - 1
    inside = _INSIDE[0] / times[1]
    print(f"| recording a transcript, a segment every {a.segment} steps of a "
          f"{params / 1e6:.1f}M-parameter transformer "
          f"({times[0] / (a.pairs * a.segment) * 1e3:.1f} ms a step) | median of "
          f"{a.pairs} side-by-side pairs: **{overhead * 100:+.2f} %**; inside the recorder: "
          f"**{inside * 100:.2f} %** of the recorded blocks' time |")
    print(f"| hashing 64 MB | {_hashes()} |")


if __name__ == "__main__":
    main()
