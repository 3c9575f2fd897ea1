"""Hugging Face ``Trainer``: a real Llama-style model built from a config (no download),
whose fused attention backward recomputes, trained through a pause and a resumption by
examples/hf_trainer.py; evaluations at every milestone although the recomputation is not
in the policy's regime; and the callback's accounting checked against what the model
really saw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from scalegate.compute.counter import count  # noqa: E402
from scalegate.demo.workspace import Workspace  # noqa: E402
from scalegate.errors import RunError  # noqa: E402
from scalegate.evals import Probe, Suite  # noqa: E402
from scalegate.integrations.hf import ScalegateCallback  # noqa: E402
from scalegate.manifest import manifest_of  # noqa: E402
from scalegate.runs import load_state  # noqa: E402

from .conftest import POLICY, replayed, resume_run, run_example  # noqa: E402

pytestmark = pytest.mark.slow
RUN = "hf-run"


def example(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return run_example("hf_trainer.py", str(ws.ledger_path),
                       str(ws.root / "keys" / "trainer.key"), str(POLICY), RUN,
                       monkeypatch=monkeypatch)


def test_example_pauses_is_refused_and_resumes_from_its_checkpoint(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = example(ws, monkeypatch)
    paused_at = first["trainer"].state.global_step
    assert first["__exit__"] == f"paused at step {paused_at}: see the ledger"
    assert 0 < paused_at < 100

    state = load_state(ws.ledger, RUN)
    pause = state.active_pause
    assert pause is not None and pause.predicate.step == paused_at
    accuracies = [e.predicate.value for e in state.evals]
    assert accuracies[-1] >= 0.95 > max(accuracies[:-1]), "paused because the model learned"
    assert [d.predicate.verdict for d in state.decisions].count("alert") >= 1
    # The checkpoint the pause cites is the directory the Trainer wrote, digest and all.
    ck = state.find(pause.predicate.checkpoint)
    assert ck is not None
    assert Path(ck.predicate.uri) == tmp_path / "hf-out" / f"checkpoint-{paused_at}"
    assert manifest_of(ck.predicate.uri).digest == ck.predicate.digest
    assert {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= set(ck.predicate.manifest)
    assert state.compute[-1].predicate.step == paused_at
    assert state.compute[-1].predicate.flop_by_phase.get("recomputation", 0) > 0
    # trainer.log carried the figures to the Trainer's log history at every decision.
    logged = [h for h in first["trainer"].state.log_history if "scalegate/flop" in h]
    assert len(logged) == len(state.decisions)
    assert logged[-1]["scalegate/verdict"] == 3.0
    assert logged[-1]["scalegate/eval/heldout-next-token/accuracy"] == accuracies[-1]

    # Paused: refused in on_train_begin, before the model runs a single step.
    again = example(ws, monkeypatch)
    assert "may not train until" in again["__exit__"]
    assert "security-level-demo" in again["__exit__"]
    assert again["trainer"].state.global_step == 0

    resume_run(ws, RUN)
    # Resumed: starting anywhere but the recorded checkpoint is refused.
    with pytest.raises(RunError, match=f"recorded at step {paused_at}"):
        again["trainer"].train()
    last = example(ws, monkeypatch)
    assert "__exit__" not in last, last.get("__exit__")
    assert last["trainer"].state.global_step == 100
    state = load_state(ws.ledger, RUN)
    assert state.active_pause is None and len(state.resumes) == 1
    final = state.compute[-1].predicate
    assert final.step == 100 and final.method == "measured"
    steps = [c.predicate.step for c in state.compute]
    assert steps == sorted(steps)
    assert ws.ledger.verify().ok
    assert replayed(ws, RUN) >= 5


class _Recording(Trainer):
    """Test-owned record of the attention mask of every micro-batch the Trainer trains on."""

    fed: list[Any]

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
        self.fed.append(inputs["attention_mask"].clone())
        return super().training_step(model, inputs, num_items_in_batch)


class _Watch(TrainerCallback):
    """The model's mode at the end of every step, after the scalegate callback (which runs
    before it, evaluations included)."""

    def __init__(self) -> None:
        self.modes: list[bool] = []

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                    **kwargs: Any) -> None:
        self.modes.append(model.training)


def test_accounts_non_padding_tokens_of_every_micro_batch(ws: Workspace,
                                                         tmp_path: Path) -> None:
    """Gradient accumulation over padded micro-batches: the ledger's tokens are exactly the
    non-padding tokens the model was fed, its FLOP the measured FLOP of each padded batch
    filed pro rata; evaluations run in eval mode and training goes on in train mode; the
    Trainer's TensorBoard logger receives the figures."""
    torch.manual_seed(1)
    n, length = 512, 8
    ids = torch.randint(0, 16, (n, length))
    mask = (torch.arange(length) < torch.randint(2, length + 1, (n, 1))).long()
    data = [{"input_ids": i.masked_fill(m == 0, 16), "attention_mask": m,
             "labels": i.masked_fill(m == 0, -100)} for i, m in zip(ids, mask, strict=True)]
    model = GPT2LMHeadModel(GPT2Config(vocab_size=17, n_positions=length, n_embd=32,
                                       n_layer=1, n_head=2))
    modes: list[bool] = []

    def probe(m: Any, ctx: Any) -> float:
        modes.append(m.training)
        return 0.1

    watch = _Watch()
    callback = ScalegateCallback(
        "hf-tokens", POLICY, ws.ledger, ws.key("trainer"), phase="fine-tuning",
        evaluator=Suite([Probe("heldout-next-token", "next-token", "accuracy", probe)]),
    )
    args = TrainingArguments(tmp_path / "out", max_steps=12, per_device_train_batch_size=8,
                             gradient_accumulation_steps=2, save_strategy="no",
                             report_to=["tensorboard"],  # under out/runs
                             use_cpu=True, learning_rate=1e-3, disable_tqdm=True)
    trainer = _Recording(model=model, args=args, train_dataset=data, callbacks=[callback, watch])
    trainer.fed = []
    callback.trainer = trainer
    trainer.train()

    state = load_state(ws.ledger, "hf-tokens")
    last = state.compute[-1].predicate
    assert last.step == 12 and len(trainer.fed) == 24  # two micro-batches per step
    fed = sum(float(m.sum()) for m in trainer.fed)
    assert last.tokens == fed < 24 * 8 * length  # padding is not counted
    batch = {k: v[:8] for k, v in trainer.data_collator(data[:8]).items()}
    per_batch = count(model, batch).model_flop  # every micro-batch is padded to [8, 8]
    expected = sum(per_batch * float(m.sum()) / m.numel() for m in trainer.fed)
    assert last.flop_by_phase == {"fine-tuning": pytest.approx(expected, rel=1e-9)}
    assert last.method == "measured"
    # Counted once per signature, by one extra step, which was not taken for training.
    assert callback.supervisor.meter.counter.misses == 1

    assert modes and not any(modes), "evaluations ran in eval mode"
    assert watch.modes == [True] * 12, "the model trains in train mode after evaluating"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = [p for p in (tmp_path / "out").rglob("events.out.tfevents.*")]
    acc = EventAccumulator(str(events))
    acc.Reload()
    flop = acc.Scalars("train/scalegate/flop")
    assert [s.step for s in flop] == [d.predicate.step for d in state.decisions]
    assert flop[-1].value == pytest.approx(
        next(c.predicate for c in reversed(state.compute)
             if c.predicate.step == flop[-1].step).flop_by_phase["fine-tuning"], rel=1e-6)


def test_recomputing_attention_is_evaluated_at_every_milestone(ws: Workspace,
                                                               tmp_path: Path) -> None:
    """The fused attention backward's recomputation is counted (in its own phase, outside
    the policy's regime); the evaluations still come on the step whose effective compute
    reaches each milestone: the first at ``first_at``, then every 2x."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from scalegate.policy import load_policy

    torch.manual_seed(0)
    # Sequences of 64 tokens on a narrow model: recomputation is ~6 % of every step, so
    # the run's total FLOP reaches a milestone a step or more before effective compute.
    model = LlamaForCausalLM(LlamaConfig(vocab_size=17, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2,
                                         max_position_embeddings=64, pad_token_id=16,
                                         bos_token_id=0, eos_token_id=1))
    ids = torch.randint(0, 16, (800, 64))
    data = [{"input_ids": x, "attention_mask": torch.ones_like(x), "labels": x} for x in ids]
    seen: list[int] = []
    suite = Suite([Probe("heldout-next-token", "next-token", "accuracy",
                         lambda m, ctx: (seen.append(ctx.step), 0.1)[1])])
    callback = ScalegateCallback("llama", POLICY, ws.ledger, ws.key("trainer"), evaluator=suite,
                                 compute_every=1, record_interval=0.0)
    args = TrainingArguments(str(tmp_path / "out"), max_steps=50, per_device_train_batch_size=16,
                             save_strategy="no", report_to=[], use_cpu=True)
    Trainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()

    state = load_state(ws.ledger, "llama")
    assert state.active_pause is None
    by_step = {c.predicate.step: c.predicate for c in state.compute}
    assert sorted(by_step) == list(range(1, 51))
    assert by_step[50].flop_by_phase["recomputation"] > 0
    policy = load_policy(POLICY)
    assert policy.evaluation is not None and policy.evaluation.first_at is not None
    expected, milestone = [], policy.evaluation.first_at
    for step in range(1, 51):
        effective = by_step[step].effective_flop
        if effective >= milestone * (1 - 1e-9):
            expected.append(step)
            milestone = effective * policy.evaluation.every
    assert len(expected) >= 5 and seen == expected
