"""The demo trainer: determinism, token counts, exact checkpoint resumption, bad checkpoints."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from scalegate.demo.model import TinyGPTConfig
from scalegate.demo.tasks import MAX_SAMPLE_CHARS, PAD_ID, VOCAB
from scalegate.demo.training import DemoTrainConfig, DemoTrainer
from scalegate.errors import RunError

# A smaller model than the demo's keeps these tests fast; the code paths are the same.
SMALL = DemoTrainConfig(
    model=TinyGPTConfig(
        vocab_size=len(VOCAB), block_size=MAX_SAMPLE_CHARS - 1, d_model=32, n_layer=2, n_head=2
    ),
    batch_size=16,
    budget_steps=40,
    schedule_steps=40,
    warmup_steps=5,
)


def _assert_same_state(a: DemoTrainer, b: DemoTrainer) -> None:
    pa, pb = a.model.state_dict(), b.model.state_dict()
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    oa, ob = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert oa.keys() == ob.keys()
    for k in oa:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(oa[k][name], ob[k][name]), (k, name)
    assert (a.step_index, a.tokens_seen) == (b.step_index, b.tokens_seen)


def test_same_seed_same_run_bitwise_and_other_seed_differs() -> None:
    a, b, c = DemoTrainer(SMALL, seed=3), DemoTrainer(SMALL, seed=3), DemoTrainer(SMALL, seed=4)
    for _ in range(8):
        ta, tb = a.step(), b.step()
        c.step()
        assert ta == tb
    _assert_same_state(a, b)
    assert a.last_loss == b.last_loss
    assert not torch.equal(a.model.tok_emb.weight, c.model.tok_emb.weight)


def test_step_counts_non_padding_tokens_and_learns() -> None:
    trainer = DemoTrainer(SMALL, seed=0)
    x, _ = trainer.batch(0)
    first = trainer.step()
    assert first == int((x != PAD_ID).sum()) > 0
    assert first <= SMALL.batch_size * SMALL.model.block_size
    losses = [trainer.last_loss]
    for _ in range(29):
        trainer.step()
        losses.append(trainer.last_loss)
    assert trainer.step_index == 30
    assert trainer.tokens_seen >= 30 * first * 0.95
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3  # the loss goes down


def test_learning_rate_schedule() -> None:
    cfg = SMALL.model_copy(update={"lr": 1e-2, "warmup_steps": 10, "min_lr_ratio": 0.1})
    assert cfg.lr_at(0) == pytest.approx(1e-3)
    assert cfg.lr_at(9) == pytest.approx(1e-2)
    assert cfg.lr_at(cfg.schedule_steps) == pytest.approx(1e-3)
    assert cfg.lr_at(10 * cfg.schedule_steps) == pytest.approx(1e-3)
    assert cfg.model_copy(update={"schedule": "constant"}).lr_at(30) == 1e-2
    lrs = [cfg.lr_at(s) for s in range(10, cfg.schedule_steps)]
    assert lrs == sorted(lrs, reverse=True)
    # a shorter budget trains the same first steps as the calibrated one
    short = cfg.model_copy(update={"budget_steps": 20})
    assert [short.lr_at(s) for s in range(20)] == [cfg.lr_at(s) for s in range(20)]


def test_resumed_run_continues_bitwise(tmp_path: Path) -> None:
    straight = DemoTrainer(SMALL, seed=11)
    for _ in range(12):
        straight.step()

    paused = DemoTrainer(SMALL, seed=11)
    for _ in range(5):
        paused.step()
    path = paused.save(tmp_path / "ckpt" / "pause.pt")
    assert path.is_file() and not list(path.parent.glob(".*tmp"))
    del paused

    resumed = DemoTrainer.load(path)
    assert resumed.step_index == 5 and resumed.config == SMALL and resumed.seed == 11
    for _ in range(7):
        resumed.step()
    _assert_same_state(straight, resumed)
    assert resumed.last_loss == straight.last_loss


def test_saving_the_same_state_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    # The pause statement records the checkpoint's digest; a re-save must not change it.
    trainer = DemoTrainer(SMALL, seed=2)
    trainer.step()
    a = trainer.save(tmp_path / "a.pt").read_bytes()
    b = trainer.save(tmp_path / "b.pt").read_bytes()
    assert a == b


def test_loading_a_bad_checkpoint_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="does not exist"):
        DemoTrainer.load(tmp_path / "missing.pt")

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="cannot be read"):
        DemoTrainer.load(garbage)

    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    with pytest.raises(RunError, match="is not a scalegate-demo-checkpoint/v1 file"):
        DemoTrainer.load(other)

    trainer = DemoTrainer(SMALL, seed=0)
    state = trainer.state()
    del state["optimizer"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(RunError, match="incomplete"):
        DemoTrainer.load(tmp_path / "partial.pt")

    good = trainer.save(tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(RunError, match="cannot be read"):
        DemoTrainer.load(truncated)
    assert zipfile.is_zipfile(good)
