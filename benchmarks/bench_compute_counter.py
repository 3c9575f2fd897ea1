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
import torch.nn.functional as F
from torch import nn

from scalegate.compute import StepCounter


class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        x = x + self.out(y.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class _GPT(nn.Module):
    def __init__(self, layers: int, d: int, heads: int, seq: int, vocab: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.blocks = nn.Sequential(*(_Block(d, heads) for _ in range(layers)))
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        logits = self.head(self.blocks(x))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


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
