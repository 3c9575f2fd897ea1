"""Cost of measured compute accounting relative to a bare training step.

For a small and a medium GPT on CPU, one thread, it times in one run, interleaved so that
machine noise hits every condition alike:

- bare:    forward + backward + optimizer step;
- first:   the same step inside ``counter.measure(batch)`` with an empty cache (counted by
           FlopCounterMode once per signature);
- later:   the same step inside ``counter.measure(batch)`` on a cached signature;
- flop():  the same bare step followed by ``counter.flop(batch)`` on a cached signature.

It prints each condition's median step time and its ratio to bare, plus the accounting
overhead timed on its own (an empty ``measure`` block), which is free of step-time noise.
Later steps must cost within 1 % of bare. Run: ``python benchmarks/bench_compute_counter.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from scalegate.compute import StepCounter
from tiny_gpt import GPT

_GPT = GPT  # the shared benchmark model (tiny_gpt.py)


CASES = {
    # name: (layers, d_model, heads, seq_len, vocab, batch, rounds, first_every)
    "small": (2, 64, 4, 32, 256, 4, 300, 30),
    "medium": (4, 256, 4, 64, 2048, 4, 60, 10),
}


def _bench(name: str) -> list[tuple[str, float, float]]:
    layers, d, heads, seq, vocab, bsz, rounds, first_every = CASES[name]
    torch.manual_seed(0)
    model = _GPT(layers, d, heads, seq, vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = torch.randint(0, vocab, (bsz, seq + 1))
    batch = (data[:, :-1], data[:, 1:])
    counter = StepCounter(model)

    def step() -> None:
        loss = model(*batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def bare() -> None:
        step()

    def measured() -> None:
        with counter.measure(batch):
            step()

    def first() -> None:
        counter.clear()
        measured()

    def looked_up() -> None:
        step()
        counter.flop(batch)

    def timed(fn: Callable[[], None]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    for _ in range(5):  # warm up allocator, kernels and the cache
        bare()
        measured()
    times: dict[str, list[float]] = {"bare": [], "first": [], "later": [], "flop()": []}
    order = [("bare", bare), ("later", measured), ("flop()", looked_up)]
    for i in range(rounds):
        # Rotate the order each round so no condition always runs right after another.
        rotated = order[i % 3 :] + order[: i % 3]
        for label, fn in rotated:
            times[label].append(timed(fn))
        if i % first_every == 0:
            times["first"].append(timed(first))
            times["bare"].append(timed(bare))

    # The accounting overhead alone: an empty measure block on a cached signature.
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        with counter.measure(batch):
            pass
    overhead = (time.perf_counter() - t0) / n

    base = statistics.median(times["bare"])
    rows = [(k, statistics.median(v), statistics.median(v) / base) for k, v in times.items()]
    rows.append(("overhead alone", overhead, overhead / base))
    return rows


def main() -> None:
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; medians of interleaved steps")
    print(f"{'model':<8} {'condition':<16} {'median step':>12} {'× bare':>10}")
    worst = 0.0
    for name in CASES:
        for label, seconds, ratio in _bench(name):
            shown = f"{ratio:.4f}" if label != "overhead alone" else f"+{ratio:.5f}"
            print(f"{name:<8} {label:<16} {seconds * 1e3:>9.3f} ms {shown:>10}")
            if label == "overhead alone":
                worst = max(worst, ratio)
    print(f"accounting overhead per later step: at most {worst:.3%} of a bare step")
    if worst > 0.01:
        raise SystemExit("later steps cost more than 1 % over bare")


if __name__ == "__main__":
    main()
