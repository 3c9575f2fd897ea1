"""``torch.distributed``: two real processes on the gloo backend train one run.

examples/distributed_loop.py runs on 2 ranks (forked processes, each given the environment
torchrun gives a rank: RANK, WORLD_SIZE, MASTER_ADDR/PORT), pauses by itself on both ranks
at the same step, is refused while paused, is resumed by the officers, and trains to the
end from the paused checkpoint. The ledger must hold one consistent record written by one
signer, whose compute is the sum of both ranks' work. In-process tests pin the sync
planning and the one-process equivalence.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import socket
import sys
import traceback
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from scalegate.demo.workspace import Workspace  # noqa: E402
from scalegate.integrations import DistributedSupervisor  # noqa: E402
from scalegate.integrations.distributed import SoloCollective  # noqa: E402
from scalegate.manifest import manifest_of  # noqa: E402
from scalegate.policy import load_policy  # noqa: E402
from scalegate.runs import load_state, run_log_entries  # noqa: E402
from scalegate.supervisor import Supervisor  # noqa: E402

from .conftest import EXAMPLES, POLICY, replayed, resume_run  # noqa: E402

pytestmark = pytest.mark.slow

RUN = "ddp-run"
STEPS, BATCH = 400, 64  # the example's global batch, split between the ranks


def rank_flop(rows: int) -> float:
    """Matmul FLOP of one training step of the example's MLP on ``rows`` samples."""
    return 6.0 * rows * (2 * 32 * 128 + 128 * 16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, argv: list[str], cwd: Path, log: Path) -> None:
    """One rank, forked from this process (torch is imported already: no start-up cost):
    the environment torchrun gives a rank, then the example as ``python`` would run it."""
    out = open(log, "w", buffering=1)  # noqa: SIM115 - the process ends with os._exit
    sys.stdout = sys.stderr = out
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    os.chdir(cwd)
    sys.argv = argv
    code = 0
    try:
        path = argv[0]
        exec(compile(Path(path).read_text(), path, "exec"), {"__name__": "__main__"})
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(stop.code, file=out)
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc(file=out)
        code = 2
    out.flush()
    os._exit(code)  # no finalizers: the parent's objects (its ledger connection) are its own


def launch(ws: Workspace, cwd: Path, world: int = 2) -> list[tuple[int, str]]:
    """The example on ``world`` gloo ranks; each rank's exit code and output."""
    argv = [str(EXAMPLES / "distributed_loop.py"), str(ws.ledger_path),
            str(ws.root / "keys" / "trainer.key"), str(POLICY)]
    import torch._dynamo  # noqa: F401 - DDP imports it: once here, not in every child

    port = free_port()
    ctx = multiprocessing.get_context("fork")
    logs = [cwd / f"rank{r}.log" for r in range(world)]
    procs = [ctx.Process(target=_rank, args=(r, world, port, argv, cwd, logs[r]))
             for r in range(world)]
    for p in procs:
        p.start()
    for rank, p in enumerate(procs):
        p.join(timeout=120)
        if p.exitcode is None:
            for q in procs:
                q.kill()
            raise AssertionError(f"rank {rank} hung: {logs[rank].read_text()}")
    return [(p.exitcode, log.read_text()) for p, log in zip(procs, logs, strict=True)]


def test_two_gloo_ranks_stop_together_and_the_ledger_sums_their_work(
    ws: Workspace, tmp_path: Path
) -> None:
    steps = []
    for rank, (code, out) in enumerate(launch(ws, tmp_path)):
        assert code == 1 and "Traceback" not in out, out
        found = re.search(rf"rank {rank} paused at step (\d+)", out)
        assert found, out
        steps.append(int(found.group(1)))
    assert steps[0] == steps[1], f"ranks stopped at different steps: {steps}"
    paused_at = steps[0]

    # One consistent record: one signer, the pause at that step, every decision replays.
    state = load_state(ws.ledger, RUN)
    written = ws.ledger.entries(run_id=RUN)
    assert written and {e.signer for e in written} == {ws.key("trainer").vkey.keyid}
    pause = state.active_pause
    assert pause is not None and pause.predicate.step == paused_at
    assert state.evals[-1].predicate.value >= 0.95 > state.evals[0].predicate.value
    ck = state.find(pause.predicate.checkpoint)
    assert ck is not None and manifest_of(tmp_path / ck.predicate.uri).digest == ck.predicate.digest
    assert replayed(ws, RUN) >= 3

    # Compute is the sum of both ranks' shares (32 rows each), not one rank's.
    last = state.compute[-1].predicate
    assert last.step == paused_at and last.tokens == paused_at * BATCH
    assert last.method == "measured"
    assert last.flop_by_phase["pretraining"] == pytest.approx(
        paused_at * (rank_flop(32) + rank_flop(32)), rel=1e-12)
    assert all(c.predicate.step % 100 == 0 or any(
        d.predicate.step == c.predicate.step for d in state.decisions) for c in state.compute)

    # Still paused: refused on every rank, each saying what is missing.
    for code, out in launch(ws, tmp_path):
        assert code == 1 and "Traceback" not in out, out
        assert "may not train until" in out and "security-level-demo" in out

    resume_run(ws, RUN)
    for rank, (code, out) in enumerate(launch(ws, tmp_path)):
        assert code == 0, out
        assert f"rank {rank} trained {STEPS} steps" in out
    state = load_state(ws.ledger, RUN)
    assert state.active_pause is None and len(state.resumes) == 1
    after = [e.predicate.value for e in state.evals if e.index > state.resumes[0].index]
    assert after and min(after) >= 0.95, "both ranks resumed from the trained weights"
    final = state.compute[-1].predicate
    assert final.step == STEPS and final.tokens == STEPS * BATCH
    assert final.flop_by_phase["pretraining"] == pytest.approx(STEPS * rank_flop(BATCH),
                                                               rel=1e-12)
    assert ws.ledger.verify().ok


def test_sync_steps_are_planned_to_the_next_milestone(ws: Workspace, tmp_path: Path) -> None:
    """Rank 0 plans the next sync at the first step where compute reaches the gate's next
    milestone, or the next compute statement, whichever comes first."""
    policy = load_policy(POLICY)
    ds = DistributedSupervisor.open("plan", policy, ws.ledger, ws.key("trainer"),
                                    flop_per_token=1.0, compute_every=1000, trackers=None,
                                    checkpoint_dir=tmp_path)
    sup = ds.supervisor
    assert sup is not None
    ds.step(tokens=1e6)  # the first step always consults the gate
    milestone = sup.decision.next_eval_at_flop
    assert milestone == policy.evaluation.first_at
    f = 3e5  # FLOP per step
    left = milestone - sup.effective_flop
    assert sup.steps_until_check(f, 0.0) == -(-left // f)
    assert sup.steps_until_check(1.0, 0.0) == 1000 - 0  # the next compute statement first
    assert sup.steps_until_check(f, 60.0) == 1  # the 30 s calendar check is due next step
    ds.close()


def test_one_process_records_what_a_plain_supervisor_records(ws: Workspace,
                                                              tmp_path: Path) -> None:
    """With one process the distributed front syncs every step: the same statements, the
    same decisions at the same steps as Supervisor.step on the same work, up to the pause
    both declare when the run trains past a due evaluation it has no evaluator for."""
    policy = load_policy(POLICY)
    per_step = [3.1e6, 3.9e6, 4.4e6] * 40

    def save(step: int) -> Path:
        path = tmp_path / f"ck-{step}"
        path.mkdir(exist_ok=True)
        (path / "weights.bin").write_bytes(b"w" * step)
        return path

    plain = Supervisor.open("plain", policy, ws.ledger, ws.key("trainer"),
                            checkpoint_dir=tmp_path, compute_every=25, save_checkpoint=save)
    ds = DistributedSupervisor.open("solo", policy, ws.ledger, ws.key("trainer"),
                                    collective=SoloCollective(), checkpoint_dir=tmp_path,
                                    compute_every=25, trackers=None, save_checkpoint=save)
    for f in per_step:
        a = plain.step(tokens=64, flop=f)
        b = ds.step(tokens=64, flop=f)
        assert (a.verdict, a.next_eval_at_flop) == (b.verdict, b.next_eval_at_flop)
        if a.verdict == "pause":
            break
    assert a.verdict == "pause" and "evaluation-missing:compute" in a.rules

    def story(run: str) -> list[tuple[str, int]]:
        return [(e.statement.kind, getattr(e.statement.predicate, "step", -1))
                for e in run_log_entries(ws.ledger, run)][1:]

    assert story("plain") == story("solo")
    a, b = load_state(ws.ledger, "plain"), load_state(ws.ledger, "solo")
    assert a.compute[-1].predicate.flop_by_phase == b.compute[-1].predicate.flop_by_phase
    assert b.compute[-1].predicate.method == "declared"
