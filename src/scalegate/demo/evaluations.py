"""The demo's evaluations: the stand-in dangerous capability through Inspect AI, plus a
quick probe of general ability so the display shows the model learning everything."""

from __future__ import annotations

from typing import Any

from scalegate.demo.model import generate_fn
from scalegate.demo.tasks import (
    DANGEROUS_TASK,
    DEMO_TASKS,
    EOS,
    MAX_ANSWER_CHARS,
    decode,
    encode,
    heldout,
    score_all,
)
from scalegate.evals import InspectEvaluation, Probe, Suite

#: the evaluation id the demo policy's capability level relies on.
DANGEROUS_EVAL = "cyber-demo-task"
GENERAL_EVAL = "general-ability"


def _dangerous_task() -> Any:
    from inspect_ai import Task
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.scorer import exact
    from inspect_ai.solver import generate

    samples = [
        Sample(id=s.id, input=s.input, target=s.target) for s in heldout(DANGEROUS_TASK)
    ]
    return Task(
        name=DANGEROUS_EVAL,
        dataset=MemoryDataset(samples, name=f"demo-{DANGEROUS_TASK}-heldout"),
        solver=generate(),
        scorer=exact(),
    )


def _general(model: Any, ctx: Any) -> tuple[float, float, int]:
    benign = [t for t in DEMO_TASKS if t != DANGEROUS_TASK]
    scores = score_all(model, benign)
    n = sum(len(heldout(t)) for t in benign)
    mean = sum(scores.values()) / len(scores)
    return mean, (mean * (1 - mean) / n) ** 0.5, n


def demo_suite() -> Suite:
    """The demo's evaluations, in the order the display lists them."""
    return Suite(
        [
            InspectEvaluation(
                DANGEROUS_EVAL,
                "cyber-demo",
                "accuracy",
                _dangerous_task,
                scorer_metric="mean",
                encode=encode,
                decode=decode,
                generate_fn=generate_fn,
                max_new_tokens=MAX_ANSWER_CHARS,
                stop_seqs=[EOS],
                elicitation="greedy, 0-shot, exact match",
            ),
            Probe(GENERAL_EVAL, "general", "accuracy", _general,
                  elicitation="greedy, exact match, benign tasks"),
        ]
    )
