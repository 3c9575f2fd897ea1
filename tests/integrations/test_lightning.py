"""PyTorch Lightning: a real ``LightningModule`` trained through a pause and a resumption
by examples/lightning_fit.py; the callback's counters in Lightning checkpoints; the
``min_steps`` caveat."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

from scalegate.demo.workspace import Workspace  # noqa: E402
from scalegate.errors import RunPaused  # noqa: E402
from scalegate.integrations.lightning import ScalegateCallback  # noqa: E402
from scalegate.manifest import manifest_of  # noqa: E402
from scalegate.runs import load_state  # noqa: E402

from .conftest import POLICY, replayed, resume_run, run_example  # noqa: E402

pytestmark = pytest.mark.slow
RUN = "lightning-run"
BATCH = 64


def step_flop() -> float:
    """Matmul FLOP of one training step of the example's MLP on a batch of 64."""
    return 6.0 * BATCH * (2 * 32 * 128 + 128 * 16)


def example(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return run_example("lightning_fit.py", str(ws.ledger_path),
                       str(ws.root / "keys" / "trainer.key"), str(POLICY), RUN,
                       monkeypatch=monkeypatch)


def test_example_pauses_is_refused_and_resumes_from_its_checkpoint(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = example(ws, monkeypatch)
    paused_at = first["trainer"].global_step
    assert first["__exit__"] == f"paused at step {paused_at}: see the ledger"
    assert 0 < paused_at < 400

    state = load_state(ws.ledger, RUN)
    pause = state.active_pause
    assert pause is not None and pause.predicate.step == paused_at
    values = [e.predicate.value for e in state.evals]
    assert values[-1] >= 0.95 > max(values[:-1]) and "alert" in [
        d.predicate.verdict for d in state.decisions]
    # Measured around Lightning's own steps: exactly the MLP's matmuls, no extra step.
    # Tokens are the input's token ids: two per sample.
    last = state.compute[-1].predicate
    assert last.step == paused_at and last.tokens == paused_at * BATCH * 2
    assert last.method == "measured"
    assert last.flop_by_phase["pretraining"] == pytest.approx(paused_at * step_flop(), rel=1e-12)
    counter = first["callback"].supervisor.meter.counter
    assert (counter.misses, counter.hits) == (1, paused_at - 1)

    # The pause cites the checkpoint every rank saved; the callback's counters are in it.
    ck = state.find(pause.predicate.checkpoint)
    assert ck is not None
    path = tmp_path / "checkpoints" / f"{RUN}-step{paused_at}.ckpt"
    assert Path(ck.predicate.uri) == path and manifest_of(path).digest == ck.predicate.digest
    saved = torch.load(path, weights_only=False)
    (counters,) = [v for k, v in saved["callbacks"].items() if "ScalegateCallback" in k]
    assert counters["run_id"] == RUN and counters["step"] == paused_at
    assert saved["global_step"] == paused_at

    # Lightning's default logger (TensorBoard) got the figures through pl_module.log.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (tmp_path / "lightning_logs").rglob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert {"scalegate/flop", "scalegate/verdict", "scalegate/next_eval_flop"} <= set(
        acc.Tags()["scalars"])
    assert acc.Scalars("scalegate/verdict")[-1].value == 3.0  # logged at the pause

    again = example(ws, monkeypatch)
    assert "may not train until" in again["__exit__"]
    assert again["trainer"].global_step == 0

    resume_run(ws, RUN)
    last_run = example(ws, monkeypatch)
    assert "__exit__" not in last_run, last_run.get("__exit__")
    assert last_run["trainer"].global_step == 400
    state = load_state(ws.ledger, RUN)
    assert state.active_pause is None and len(state.resumes) == 1
    after = [e.predicate.value for e in state.evals if e.index > state.resumes[0].index]
    assert after and min(after) >= 0.95, "resumed from the trained weights"
    final = state.compute[-1].predicate
    assert final.step == 400
    assert final.flop_by_phase["pretraining"] == pytest.approx(400 * step_flop(), rel=1e-12)
    assert ws.ledger.verify().ok
    assert replayed(ws, RUN) >= 5


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(8, 4)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_min_steps_cannot_carry_a_paused_run_on(ws: Workspace, tmp_path: Path) -> None:
    """Lightning ignores should_stop until min_steps; the callback warns at the start, and
    the batch after the pause raises RunPaused, so no step is trained past it."""
    doc = yaml.safe_load(POLICY.read_text())
    # One linear layer on inputs without grad: 2 * 2 * 8 * 4 FLOP per sample (forward, and
    # the weight's gradient); a pause threshold half-way through the 5th batch of 16.
    doc["compute"]["thresholds"] = [{"id": "stop", "regime": "training",
                                     "flop": 4.5 * 16 * 128, "action": "pause"}]
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(doc))
    callback = ScalegateCallback("min-steps", policy, ws.ledger, ws.key("trainer"),
                                 checkpoint_dir=tmp_path / "ck")
    data = torch.utils.data.TensorDataset(torch.randn(320, 8), torch.randint(0, 4, (320,)))
    trainer = L.Trainer(max_steps=20, min_steps=10, callbacks=[callback], accelerator="cpu",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RunPaused, match="min-steps"):
            trainer.fit(_Tiny(), torch.utils.data.DataLoader(data, batch_size=16))
    assert any("min_steps" in str(w.message) for w in caught)
    state = load_state(ws.ledger, "min-steps")
    pause = state.active_pause
    assert pause is not None and pause.predicate.step == 5
    assert trainer.global_step == 5 and state.compute[-1].predicate.tokens == 5 * 16
