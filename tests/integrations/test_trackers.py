"""Experiment trackers, for real: MLflow's local file store and TensorBoard's writer read
back after a supervised run; a Lightning run through its MLFlowLogger; and no tracker run
is ever created for the user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from scalegate.demo.workspace import Workspace  # noqa: E402
from scalegate.evals import Probe, Suite  # noqa: E402
from scalegate.integrations import DistributedSupervisor, Trackers  # noqa: E402
from scalegate.integrations.trackers import VERDICT_CODES  # noqa: E402
from scalegate.runs import load_state  # noqa: E402

from .conftest import POLICY  # noqa: E402

STEP_FLOP = 3.9e6  # ~10 steps to the example policy's first evaluation


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """MLflow's local file store (mlflow-skinny has no database backend)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    yield MlflowClient(uri)
    mlflow.set_tracking_uri(None)


def scores() -> Suite:
    """Accuracy that rises with the step, as a learning model's would."""
    return Suite([Probe("heldout-next-token", "next-token", "accuracy",
                        lambda m, ctx: min(1.0, ctx.step / 120))])


def train(ws: Workspace, run_id: str, steps: int, trackers: Any, tmp_path: Path) -> Any:
    ds = DistributedSupervisor.open(run_id, POLICY, ws.ledger, ws.key("trainer"),
                                    evaluator=scores(), trackers=trackers,
                                    checkpoint_dir=tmp_path / "ck",
                                    save_checkpoint=lambda step: _saved(tmp_path, step))
    for _ in range(steps):
        if ds.step(tokens=64, flop=STEP_FLOP).verdict == "pause":
            break
    return ds


def _saved(tmp_path: Path, step: int) -> Path:
    path = tmp_path / "ck" / f"step{step}.bin"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(step.to_bytes(8, "big"))
    return path


def test_reports_to_the_active_mlflow_run_and_a_tensorboard_writer(
    ws: Workspace, tmp_path: Path, store: MlflowClient
) -> None:
    writer = SummaryWriter(str(tmp_path / "tb"))
    with mlflow.start_run() as run:
        ds = train(ws, "tracked", 200, Trackers(writer), tmp_path)
    writer.close()
    assert ds.paused, "the rising score met the trigger"
    state = load_state(ws.ledger, "tracked")
    decided = {d.predicate.step: d.predicate for d in state.decisions}
    computed = {c.predicate.step: c.predicate for c in state.compute}

    flop = store.get_metric_history(run.info.run_id, "scalegate/flop")
    assert [m.step for m in flop] == list(decided)
    assert all(m.value == pytest.approx(computed[m.step].flop_by_phase["pretraining"])
               for m in flop)
    verdicts = store.get_metric_history(run.info.run_id, "scalegate/verdict")
    assert [m.value for m in verdicts] == [VERDICT_CODES[d.verdict] for d in decided.values()]
    nxt = store.get_metric_history(run.info.run_id, "scalegate/next_eval_flop")
    assert [m.value for m in nxt] == [d.next_eval_at_flop for d in decided.values()
                                      if d.next_eval_at_flop is not None]
    acc = store.get_metric_history(run.info.run_id, "scalegate/eval/heldout-next-token/accuracy")
    assert [(m.step, m.value) for m in acc] == [(e.predicate.step, e.predicate.value)
                                               for e in state.evals]
    tags = store.get_run(run.info.run_id).data.tags
    assert tags["scalegate.run_id"] == "tracked" and tags["scalegate.verdict"].startswith(
        f"step {state.pauses[-1].predicate.step}: pause")

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tb = events.Scalars("scalegate/flop")
    assert [s.step for s in tb] == list(decided)
    assert tb[-1].value == pytest.approx(flop[-1].value, rel=1e-6)  # float32 in TensorBoard
    assert [s.value for s in events.Scalars("scalegate/eval/heldout-next-token/accuracy")] == \
        pytest.approx([e.predicate.value for e in state.evals], rel=1e-6)
    assert any(t.startswith("scalegate/decision") for t in events.Tags()["tensors"])


def test_never_creates_a_tracker_run(ws: Workspace, tmp_path: Path,
                                     store: MlflowClient) -> None:
    """mlflow is imported and configured, but no run is active: nothing is reported and no
    run appears in the store."""
    assert mlflow.active_run() is None
    ds = train(ws, "untracked", 40, "auto", tmp_path)
    assert len(load_state(ws.ledger, "untracked").decisions) >= 3
    report = ds.report()
    assert report is not None and Trackers().send(report) == []
    experiments = [e.experiment_id for e in store.search_experiments()]
    assert not experiments or store.search_runs(experiments) == []
    assert mlflow.active_run() is None


def test_lightning_reports_through_its_mlflow_logger(ws: Workspace, tmp_path: Path,
                                                     store: MlflowClient) -> None:
    L = pytest.importorskip("lightning")
    from lightning.pytorch.loggers import MLFlowLogger

    from scalegate.integrations.lightning import ScalegateCallback

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(8, 4)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    logger = MLFlowLogger(experiment_name="lab", tracking_uri=store.tracking_uri)
    callback = ScalegateCallback("lightning-tracked", POLICY, ws.ledger, ws.key("trainer"),
                                 flop_per_token=STEP_FLOP / 16)
    data = torch.utils.data.TensorDataset(torch.randn(256, 8), torch.randint(0, 4, (256,)))
    trainer = L.Trainer(max_steps=12, callbacks=[callback], logger=logger,
                        log_every_n_steps=1, accelerator="cpu", enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=16))

    state = load_state(ws.ledger, "lightning-tracked")
    flop = store.get_metric_history(logger.run_id, "scalegate/flop")
    assert [m.step for m in flop] == list(range(12))  # Lightning's step, every step
    assert flop[-1].value == pytest.approx(12 * STEP_FLOP, rel=1e-6)
    assert state.compute[-1].predicate.flop_by_phase["pretraining"] == pytest.approx(
        12 * STEP_FLOP)
    verdicts = store.get_metric_history(logger.run_id, "scalegate/verdict")
    assert verdicts[0].value == VERDICT_CODES["continue"]
    assert verdicts[-1].value == VERDICT_CODES[state.decisions[-1].predicate.verdict]
