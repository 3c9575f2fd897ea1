"""Steps per second of a training loop, bare vs under a ``Supervisor`` vs naive FLOP counting.

    .venv/bin/python benchmarks/bench_supervisor.py              # ~1 min
    .venv/bin/python benchmarks/bench_supervisor.py --rounds 6   # quicker

One process, one torch thread, a small GPT whose bare step (forward, backward, AdamW)
takes well over 5 ms. Three conditions, measured side by side:

- **bare**: the step alone;
- **supervised**: the step, then ``Supervisor.step(tokens=..., batch=...)`` on a real
  SQLite ledger in a temporary directory: measured FLOP (counted once, then looked up),
  cadence checks, a signed ``compute`` statement every ``compute_every`` (default 100)
  steps. The policy's next evaluation milestone is far away, so no evaluation is due;
  any that ran would be counted and reported;
- **naive**: the step inside ``torch.utils.flop_counter.FlopCounterMode`` every time, as
  one would without a per-signature cache.

Each round runs ``--steps`` steps (a multiple of ``compute_every``, so every supervised
round pays its ledger write) of each condition, in chunks of ``--chunk`` steps taken in
turn, the order rotating (ABC, BCA, CAB...) so that machine noise and drift hit every
condition alike. The ratio
of each condition to bare is taken per round; the table shows their medians. ``Supervisor.step``'s own time is
also timed on its own (free of step-time noise). Exits
non-zero when supervised / bare < 0.99. Not a timed test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from scalegate.demo.workspace import create_workspace
from scalegate.evals import Probe, Suite
from scalegate.policy import load_policy
from scalegate.policy.library import bundled_text
from scalegate.supervisor import Supervisor

REQUIRED = 0.99
MIN_BARE_STEP = 5e-3


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


def _far_policy(path: Path) -> Path:
    """The demo policy with every compute line (first evaluation, thresholds) at 1e30 FLOP."""
    doc = yaml.safe_load(bundled_text("demo"))
    doc["id"] = "bench-far-milestones"
    doc["evaluation"]["first_at"] = 1e30
    for threshold in doc["compute"]["thresholds"]:
        threshold["flop"] = 1e30
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _bench(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    torch.manual_seed(0)
    layers, d, heads, seq, vocab, bsz = 2, 128, 4, 32, 256, 4
    model = _GPT(layers, d, heads, seq, vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = torch.randint(0, vocab, (bsz, seq + 1))
    batch = (data[:, :-1], data[:, 1:])
    tokens = bsz * seq

    def step() -> None:
        loss = model(*batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ws = create_workspace(tmp / "ws")
    evaluations: list[int] = []
    suite = Suite([Probe("cyber-demo-task", "cyber-demo", "accuracy",
                         lambda m, ctx: evaluations.append(ctx.step) or 0.0)])
    sup = Supervisor.open(
        "bench", load_policy(_far_policy(tmp / "policy.yaml")), ws.ledger, ws.key("trainer"),
        model=model, evaluator=suite, checkpoint_dir=tmp / "checkpoints",
    )
    naive_flop = [0.0]

    def bare() -> None:
        step()

    own: list[float] = []  # Supervisor.step's own time, per measured call

    def supervised() -> None:
        step()
        t0 = time.perf_counter()
        sup.step(tokens=tokens, batch=batch)
        own.append(time.perf_counter() - t0)

    def naive() -> None:
        with FlopCounterMode(display=False) as counter:
            step()
        naive_flop[0] += counter.get_total_flops()

    conditions: list[tuple[str, Callable[[], None]]] = [
        ("bare", bare), ("supervised", supervised), ("naive", naive),
    ]
    for _ in range(args.warmup):  # allocator, kernels, the FLOP cache, the first gate check
        for _, fn in conditions:
            fn()
    own.clear()
    size_before = ws.ledger.size
    sup_steps_before = sup.step_index
    per_step: dict[str, list[float]] = {name: [] for name, _ in conditions}
    for r in range(args.rounds):
        spent = dict.fromkeys(per_step, 0.0)
        for c in range(args.steps // args.chunk):
            k = (r + c) % 3
            for name, fn in conditions[k:] + conditions[:k]:
                t0 = time.perf_counter()
                for _ in range(args.chunk):
                    fn()
                spent[name] += time.perf_counter() - t0
        for name in per_step:
            per_step[name].append(spent[name] / args.steps)
        print(f"round {r + 1}/{args.rounds}: "
              + ", ".join(f"{n} {v[-1] * 1e3:.2f} ms" for n, v in per_step.items()),
              file=sys.stderr)
    entries = ws.ledger.entries(size_before)
    kinds = [e.statement.kind for e in entries]
    report = ws.ledger.verify()
    counter = sup._counter
    ws.close()
    return {
        "per_step": per_step,
        "entries": len(entries),
        "kinds": {k: kinds.count(k) for k in sorted(set(kinds))},
        "steps": sup.step_index - sup_steps_before,
        "evaluations": len(evaluations),
        "counter": (counter.misses, counter.hits),
        "verified": report.ok,
        "ledger_size": report.size,
        "step_flop": sup.account.by_phase()["pretraining"] / sup.step_index,
        "naive_step_flop": naive_flop[0] / ((args.warmup + args.rounds * args.steps) or 1),
        "compute_every": sup.compute_every,
        "own": own,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=100, help="steps per condition per round")
    parser.add_argument("--chunk", type=int, default=10,
                        help="consecutive steps of one condition before switching")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    if args.steps % args.chunk:
        parser.error("--steps must be a multiple of --chunk")
    torch.set_num_threads(1)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-supervisor-") as tmp:
        res = _bench(args, Path(tmp))
    per_step: dict[str, list[float]] = res["per_step"]  # type: ignore[assignment]
    bare = per_step["bare"]
    table = Table(title=f"torch {torch.__version__}, 1 thread, {args.rounds} rounds × "
                  f"{args.steps} steps per condition, interleaved")
    for col in ("condition", "median step", "steps/s", "÷ bare (median of rounds)",
                "range over rounds"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    ratios: dict[str, float] = {}
    for name, times in per_step.items():
        per_round = [t_b / t for t_b, t in zip(bare, times, strict=True)]  # speed ratio
        ratios[name] = statistics.median(per_round)
        med = statistics.median(times)
        table.add_row(name, f"{med * 1e3:.3f} ms", f"{1 / med:.1f}", f"{ratios[name]:.4f}",
                      f"{min(per_round):.4f} – {max(per_round):.4f}")
    console.print(table)
    misses, hits = res["counter"]  # type: ignore[misc]
    console.print(
        f"ledger: {res['entries']} entries written during the measured steps "
        f"({res['kinds']}), one per {res['compute_every']} supervised steps; "
        f"{res['ledger_size']} entries in all, verified: {res['verified']}"
    )
    console.print(
        f"supervised steps measured: {res['steps']}; FLOP counted {misses}× then looked up "
        f"{hits}×: {res['step_flop']:.4g} FLOP/step (naive FlopCounterMode: "
        f"{res['naive_step_flop']:.4g}); evaluations run: {res['evaluations']}"
    )
    own: list[float] = res["own"]  # type: ignore[assignment]
    base = statistics.median(bare)
    console.print(
        f"Supervisor.step itself: mean {statistics.fmean(own) * 1e6:.1f} µs per step "
        f"({statistics.fmean(own) / base:.3%} of a bare step), median "
        f"{statistics.median(own) * 1e6:.1f} µs, slowest {max(own) * 1e3:.2f} ms "
        "(a step that signs and writes a batch to the ledger)"
    )
    failures = []
    if statistics.median(bare) < MIN_BARE_STEP:
        failures.append(f"the bare step took {statistics.median(bare) * 1e3:.2f} ms, under the "
                        f"{MIN_BARE_STEP * 1e3:.0f} ms this benchmark is defined for")
    if ratios["supervised"] < REQUIRED:
        failures.append(f"supervised / bare = {ratios['supervised']:.4f} < {REQUIRED}: the "
                        "supervisor costs more than 1 % of a training step")
    if res["evaluations"]:
        failures.append(f"{res['evaluations']} evaluation(s) ran; the policy was meant to "
                        "have none due")
    for f in failures:
        console.print(f"[bold red]FAIL[/]: {f}")
    if not failures:
        console.print(f"[bold green]OK[/]: supervised runs at {ratios['supervised']:.2%} of "
                      f"bare speed; naive FLOP counting at {ratios['naive']:.2%}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
