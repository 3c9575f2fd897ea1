"""Transcripts recorded by the Hugging Face and Lightning callbacks (one setting,
``transcript=``) and re-executed by their replays: real models with dropout, gradient
accumulation, gradient clipping and a learning-rate schedule, shuffled data crossing
epochs; every segment reproduces bitwise, and a hidden optimizer step is caught."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
L = pytest.importorskip("lightning")

from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from scalegate.demo.workspace import Workspace  # noqa: E402
from scalegate.errors import RunError  # noqa: E402
from scalegate.integrations import hf, lightning  # noqa: E402
from scalegate.ledger import SegmentPredicate  # noqa: E402
from scalegate.policy import load_policy  # noqa: E402
from scalegate.transcript import Transcript, check_chain, verify_segment  # noqa: E402

pytestmark = pytest.mark.slow
STEPS, SEGMENT = 12, 5


def _segments(ws: Workspace, run: str) -> list[SegmentPredicate]:
    return [e.statement.predicate for e in ws.ledger.entries(run_id=run, kind="segment")]  # type: ignore[misc]


def _failing(segments: list[SegmentPredicate], snapshots: Path, replay: Any) -> list[int]:
    checks = [verify_segment(i, s, snapshots, replay) for i, s in enumerate(segments)]
    return [c.position for c in checks if not c.ok]


# --- Hugging Face ---------------------------------------------------------------------------


class _Tokens(torch.utils.data.Dataset):  # type: ignore[misc]
    """24 fixed-length sequences: 3 optimizer steps an epoch (4 per batch, 2 accumulated)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(3)
        self.ids = torch.randint(0, 64, (24, 16), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.ids[i],
                "attention_mask": torch.ones(16, dtype=torch.long)}


def _trainer(out: Path, callbacks: list[Any] | None = None) -> Trainer:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2,
                        resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
                        bos_token_id=0, eos_token_id=0)
    args = TrainingArguments(
        output_dir=str(out), max_steps=STEPS, per_device_train_batch_size=4,
        gradient_accumulation_steps=2, learning_rate=3e-3, lr_scheduler_type="linear",
        warmup_steps=3, max_grad_norm=0.5, use_cpu=True, report_to=[], save_strategy="no",
        logging_strategy="no", disable_tqdm=True, seed=0)
    return Trainer(model=GPT2LMHeadModel(config), args=args, train_dataset=_Tokens(),
                   callbacks=callbacks)


class _HiddenStep(TrainerCallback):
    """A dishonest lab: after step 7 it trains one more optimizer step on data of its own,
    unseen by the callback's hooks."""

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                    optimizer: Any = None, **kwargs: Any) -> None:
        if state.global_step == 7:
            ids = torch.randint(0, 64, (4, 16))
            with torch.enable_grad():
                model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            model.zero_grad()


def _train_hf(ws: Workspace, tmp: Path, run: str, cheat: bool = False) -> Path:
    snapshots = tmp / f"{run}-snapshots"
    callback = hf.ScalegateCallback(
        run, load_policy("eu-ai-act"), ws.ledger, ws.key("trainer"), check_interval=1e9,
        transcript=Transcript(snapshots, segment_steps=SEGMENT, keep_batches=True))
    trainer = _trainer(tmp / f"{run}-out", [callback, *([_HiddenStep()] if cheat else [])])
    trainer.train()
    assert trainer.state.global_step == STEPS
    return snapshots


def test_a_trainer_transcript_reexecutes_bitwise(ws: Workspace, tmp_path: Path) -> None:
    snapshots = _train_hf(ws, tmp_path, "hf")
    segments = _segments(ws, "hf")
    # The first step's decision records compute, which ends a segment; then every 5 steps.
    assert [(s.start_step, s.end_step) for s in segments] == [(0, 1), (1, 5), (5, 10), (10, 12)]
    assert check_chain(segments, last_step=STEPS) == []
    # The schedule's warm-up and decay are the rates committed to, step by step.
    rates = [r for s in segments for r in s.learning_rates]
    assert rates[:4] == pytest.approx([0.0, 1e-3, 2e-3, 3e-3]) and rates[-1] < 1e-3
    replay = hf.TrainerReplay(lambda: _trainer(tmp_path / "verifier"))
    assert _failing(segments, snapshots, replay) == []


def test_a_trainer_transcript_chains_across_a_pause(ws: Workspace, tmp_path: Path) -> None:
    """The Trainer pauses at an evaluation, saves its checkpoint and stops; resumed with
    approvals from that checkpoint, its transcript goes on from the paused state: the
    pause ends a segment, the chain holds, and the segments on both sides reproduce."""
    from integrations.conftest import POLICY, resume_run
    from scalegate.evals import Probe, Suite

    snapshots = tmp_path / "snapshots"
    learned = Suite([Probe("heldout-next-token", "next-token", "accuracy",
                           lambda model, ctx: 1.0 if ctx.step >= 4 else 0.0)])

    def train() -> tuple[hf.ScalegateCallback, Trainer]:
        callback = hf.ScalegateCallback(
            "hf-pause", POLICY, ws.ledger, ws.key("trainer"), evaluator=learned,
            check_interval=1e9, transcript=Transcript(snapshots, segment_steps=SEGMENT,
                                                      keep_batches=True))
        trainer = _trainer(tmp_path / "out", [callback])
        trainer.train(resume_from_checkpoint=callback.resume_checkpoint())
        return callback, trainer

    callback, trainer = train()
    paused_at = trainer.state.global_step
    assert callback.supervisor is not None and callback.supervisor.paused
    assert 4 <= paused_at < STEPS
    resume_run(ws, "hf-pause")
    _, trainer = train()
    assert trainer.state.global_step == STEPS
    segments = _segments(ws, "hf-pause")
    assert paused_at in [s.end_step for s in segments]
    assert check_chain(segments, last_step=STEPS, pauses=[paused_at]) == []
    replay = hf.TrainerReplay(lambda: _trainer(tmp_path / "verifier"))
    assert _failing(segments, snapshots, replay) == []


def test_a_hidden_trainer_step_is_caught(ws: Workspace, tmp_path: Path) -> None:
    snapshots = _train_hf(ws, tmp_path, "hf-cheat", cheat=True)
    segments = _segments(ws, "hf-cheat")
    replay = hf.TrainerReplay(lambda: _trainer(tmp_path / "verifier"))
    assert _failing(segments, snapshots, replay) == [2]  # steps 5..10


# --- Lightning ------------------------------------------------------------------------------


class _Classifier(L.LightningModule):
    """Dropout, AdamW and a per-step learning-rate schedule."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(),
                                       torch.nn.Dropout(0.2), torch.nn.Linear(32, 4))

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.7)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class _Cheat(_Classifier):
    """A dishonest lab: at its 16th batch it also trains on a batch of its own."""

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = super().training_step(batch, batch_idx)
        if self.trainer.global_step == 6 and batch_idx % 5 == 1:
            x = torch.randn(8, 8)
            loss = loss + torch.nn.functional.cross_entropy(self.net(x), torch.zeros(
                8, dtype=torch.long))
        return loss


def _train_lightning(ws: Workspace, tmp: Path, run: str, module: Any) -> Path:
    snapshots = tmp / f"{run}-snapshots"
    callback = lightning.ScalegateCallback(
        run, load_policy("eu-ai-act"), ws.ledger, ws.key("trainer"),
        checkpoint_dir=tmp / "ck", check_interval=1e9, log=False,
        transcript=Transcript(snapshots, segment_steps=SEGMENT, keep_batches=True))
    g = torch.Generator().manual_seed(5)
    # 5 batches an epoch, 2 accumulated: every third step ends an epoch on one batch.
    data = torch.utils.data.TensorDataset(torch.randn(40, 8, generator=g),
                                          torch.randint(0, 4, (40,), generator=g))
    trainer = L.Trainer(max_steps=STEPS, accumulate_grad_batches=2, gradient_clip_val=0.5,
                        callbacks=[callback], accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8, shuffle=True))
    assert trainer.global_step == STEPS
    return snapshots


def _lightning_replay() -> lightning.LightningReplay:
    return lightning.LightningReplay(_Classifier, accumulate_grad_batches=2,
                                     gradient_clip_val=0.5)


def test_a_lightning_transcript_reexecutes_bitwise(ws: Workspace, tmp_path: Path) -> None:
    snapshots = _train_lightning(ws, tmp_path, "pl", _Classifier())
    segments = _segments(ws, "pl")
    # The first step's decision records compute, which ends a segment; then every 5 steps.
    assert [(s.start_step, s.end_step) for s in segments] == [(0, 1), (1, 5), (5, 10), (10, 12)]
    assert check_chain(segments, last_step=STEPS) == []
    rates = [r for s in segments for r in s.learning_rates]
    assert rates[:3] == pytest.approx([1e-2, 1e-2, 7e-3])
    assert _failing(segments, snapshots, _lightning_replay()) == []


def test_a_hidden_lightning_batch_is_caught(ws: Workspace, tmp_path: Path) -> None:
    snapshots = _train_lightning(ws, tmp_path, "pl-cheat", _Cheat())
    segments = _segments(ws, "pl-cheat")
    assert _failing(segments, snapshots, _lightning_replay()) == [2]


def test_a_transcript_across_ranks_is_refused(ws: Workspace, tmp_path: Path) -> None:
    from scalegate.integrations.distributed import DistributedSupervisor

    class TwoRanks:
        rank, world_size = 0, 2

    with pytest.raises(RunError, match="across 2 processes"):
        DistributedSupervisor.open("ddp", load_policy("eu-ai-act"), ws.ledger,
                                   ws.key("trainer"), collective=TwoRanks(),  # type: ignore[arg-type]
                                   transcript=Transcript(tmp_path / "s"))
