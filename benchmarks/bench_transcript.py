"""What recording a training transcript costs, side by side with the same training unrecorded.

    .venv/bin/python benchmarks/bench_transcript.py                # 3 rounds of 300 steps
    .venv/bin/python benchmarks/bench_transcript.py --steps 600 --segment 100

Trains the demo's tiny transformer (CPU) under the supervisor, in alternating rounds in one
process: without a transcript, then with one (a segment every ``--segment`` steps: batch
digests, learning rates, and at each boundary the weights' and optimizer state's digest and
a snapshot on disk). Prints the median time of each and the overhead, and, because whole
rounds differ by more than the overhead on a shared machine, the time spent inside the
recorder itself as a share of the recorded rounds. Not a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from scalegate.demo.training import DemoTrainer
from scalegate.demo.workspace import create_workspace
from scalegate.policy import load_policy
from scalegate.supervisor import Supervisor
from scalegate.transcript import Transcript, TranscriptRecorder

_INSIDE = [0.0]  # seconds spent in the recorder


def _timed(f):  # type: ignore[no-untyped-def]
    def wrapper(*args, **kw):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return f(*args, **kw)
        finally:
            _INSIDE[0] += time.perf_counter() - t
    return wrapper


TranscriptRecorder.take = _timed(TranscriptRecorder.take)  # type: ignore[method-assign]
TranscriptRecorder.close = _timed(TranscriptRecorder.close)  # type: ignore[method-assign]
TranscriptRecorder.__init__ = _timed(TranscriptRecorder.__init__)  # type: ignore[method-assign]


def _round(work: Path, steps: int, segment: int | None) -> float:
    ws = create_workspace(work / "ws")
    trainer = DemoTrainer()
    transcript = Transcript(work / "snapshots", segment_steps=segment) if segment else None
    sup = Supervisor.open("bench", load_policy("eu-ai-act"), ws.ledger, ws.key("trainer"),
                          model=trainer.model, optimizer=trainer.optimizer,
                          check_interval=1e9, compute_every=50, transcript=transcript)
    per_step = trainer.flop_per_token() * trainer.tokens_per_step
    t = time.perf_counter()
    for _ in range(steps):
        batch = trainer.batch()
        sup.step(tokens=trainer.step(), flop=per_step, batch=batch)
    sup.flush()
    took = time.perf_counter() - t
    ws.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--segment", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    plain, recorded = [], []
    _INSIDE[0] = 0.0
    for r in range(a.rounds):
        with tempfile.TemporaryDirectory() as d:
            plain.append(_round(Path(d), a.steps, None))
        with tempfile.TemporaryDirectory() as d:
            recorded.append(_round(Path(d), a.steps, a.segment))
        print(f"round {r + 1}: {plain[-1]:.2f} s without, {recorded[-1]:.2f} s with")
    p, q = statistics.median(plain), statistics.median(recorded)
    inside = _INSIDE[0] / sum(recorded)
    print(f"| training {a.steps} steps of the demo transformer, a segment every {a.segment} "
          f"steps | {p:.2f} s without a transcript, {q:.2f} s with (median of {a.rounds} "
          f"alternating rounds: {(q / p - 1) * 100:+.1f} %); inside the recorder: "
          f"**{inside * 100:.2f} %** of the recorded rounds' time |")


if __name__ == "__main__":
    main()
