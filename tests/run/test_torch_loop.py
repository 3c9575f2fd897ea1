"""A plain PyTorch loop under a policy, end to end with a real model and a real ledger.

A small next-token model learns a synthetic task; its held-out accuracy is the
capability the policy watches. FLOP is measured by the compute counter on the batches
the loop passes to ``Supervisor.step``. The run crosses the policy's alert, then its
trigger without the required safeguard, and pauses by itself because the model really
learned; the supervisor saves the checkpoint and declares the pause; the CISO attests,
the RSO and a board member approve, the trainer resumes; a new process (here: a new
model and a new supervisor) reloads the paused checkpoint and trains to the end. The
ledger must then tell exactly that story, and every entry in it must verify.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")
F = torch.nn.functional
nn = torch.nn

from scalegate.audit.replay import replay_decisions  # noqa: E402
from scalegate.compute.counter import count  # noqa: E402
from scalegate.demo.workspace import Workspace, create_workspace  # noqa: E402
from scalegate.errors import RunPaused  # noqa: E402
from scalegate.evals import EvalContext, Probe, Suite  # noqa: E402
from scalegate.governance import approve, attest, resume  # noqa: E402
from scalegate.ledger.statements import CheckpointPredicate  # noqa: E402
from scalegate.manifest import manifest_of  # noqa: E402
from scalegate.policy import Policy, load_policy  # noqa: E402
from scalegate.policy.library import bundled_text  # noqa: E402
from scalegate.runs import load_state, run_log_entries, to_entries  # noqa: E402
from scalegate.supervisor import Supervisor  # noqa: E402

pytestmark = pytest.mark.slow  # trains real models, spawns processes (~20 s in all)

REPO = Path(__file__).resolve().parents[2]
RUN = "torch-loop-1"
EVAL_ID = "heldout-next-token"
VOCAB, BATCH, HELD_OUT = 16, 64, 1024
ALERT, TRIGGER = 0.5, 0.95
FIRST_EVAL_STEP = 10  # the policy's first milestone, in steps of measured FLOP
STEPS = 400  # the whole run; the pause comes near step 120


# --- the task and the model ---------------------------------------------------------------


def windows(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two consecutive terms of a random arithmetic progression mod VOCAB, and the next."""
    start = torch.randint(0, VOCAB, (n,))
    stride = torch.randint(1, VOCAB, (n,))
    return torch.stack([start, (start + stride) % VOCAB], 1), (start + 2 * stride) % VOCAB


class NextTokenMLP(nn.Module):
    """An MLP language model over a two-token context; dropout makes training draw on the RNG."""

    def __init__(self, d: int = 32, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, d)
        self.up = nn.Linear(2 * d, hidden)
        self.drop = nn.Dropout(dropout)
        self.down = nn.Linear(hidden, VOCAB)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.down(self.drop(F.gelu(self.up(self.emb(context).flatten(1)))))


def analytic_step_flop(d: int = 32, hidden: int = 128) -> float:
    """Matmul FLOP of one training step: forward 2·B·(in·out) per linear, backward twice that."""
    return 6.0 * BATCH * (2 * d * hidden + hidden * VOCAB)


def new_model(seed: int = 0) -> tuple[NextTokenMLP, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = NextTokenMLP()
    # Plain SGD keeps no state, so weights alone resume the run exactly.
    return model, torch.optim.SGD(model.parameters(), lr=0.5)


def train_step(model: nn.Module, opt: torch.optim.Optimizer) -> tuple[torch.Tensor, float]:
    x, y = windows(BATCH)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return x, loss.item()


# --- the capability evaluation and the policy ---------------------------------------------


class HeldOut:
    """Accuracy on freshly drawn held-out windows (drawn from the global RNG on purpose:
    the suite must keep that from perturbing training). Remembers what it measured."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float, bool]] = []  # step, accuracy, model.training

    def __call__(self, model: nn.Module, ctx: EvalContext) -> tuple[float, float, int]:
        x, y = windows(HELD_OUT)
        with torch.no_grad():
            acc = (model(x).argmax(-1) == y).float().mean().item()
        self.seen.append((ctx.step, acc, model.training))
        return acc, (acc * (1 - acc) / HELD_OUT) ** 0.5, HELD_OUT


def suite(probe: HeldOut) -> Suite:
    return Suite([Probe(EVAL_ID, "next-token", "accuracy", probe)])


def write_policy(path: Path, step_flop: float) -> Path:
    """The demo policy, retargeted: first evaluation after FIRST_EVAL_STEP steps, this
    task's evaluation, alert and trigger."""
    doc = yaml.safe_load(bundled_text("demo"))
    doc["id"], doc["title"] = "torch-loop-test", "torch loop test policy"
    # Half a step's margin, so float summation cannot move the milestone by a step.
    doc["evaluation"]["first_at"] = (FIRST_EVAL_STEP - 0.5) * step_flop
    (cap,) = doc["capabilities"]
    cap["id"], cap["name"] = "next-token", "held-out next-token accuracy"
    (level,) = cap["levels"]
    level["evaluations"] = [
        {"evaluation": EVAL_ID, "metric": "accuracy", "alert": ALERT, "trigger": TRIGGER}
    ]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: a model this small only loses time to a busy second core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def ws(tmp_path: Path):
    workspace = create_workspace(tmp_path / "ws")
    yield workspace
    workspace.close()


@pytest.fixture()
def policy(tmp_path: Path) -> Policy:
    return load_policy(write_policy(tmp_path / "policy.yaml", analytic_step_flop()))


def open_run(ws: Workspace, policy: Policy, model: nn.Module, probe: HeldOut,
             tmp_path: Path) -> Supervisor:
    return Supervisor.open(
        RUN, policy, ws.ledger, ws.key("trainer"), model=model, evaluator=suite(probe),
        checkpoint_dir=tmp_path / "checkpoints", compute_every=25,
    )


# --- checks on the ledger ------------------------------------------------------------------


def kinds(ws: Workspace) -> list[str]:
    return [e.statement.kind for e in run_log_entries(ws.ledger, RUN)]


def replays(ws: Workspace, policy: Policy) -> int:
    """Every decision of the run, replayed from the log: same verdict, same rules."""
    entries = to_entries(run_log_entries(ws.ledger, RUN), ws.ledger.registry())
    replayed = replay_decisions(policy, entries, RUN)
    assert all(r.matches for r in replayed), [r for r in replayed if not r.matches]
    return len(replayed)


# --- the tests -----------------------------------------------------------------------------


def test_pause_attest_approve_resume_with_a_real_model(ws: Workspace, policy: Policy,
                                                       tmp_path: Path) -> None:
    step_flop = analytic_step_flop()
    model, opt = new_model()
    x0, _ = windows(BATCH)
    assert count(model, x0).model_flop == step_flop  # the counter counts what we think
    probe = HeldOut()
    sup = open_run(ws, policy, model, probe, tmp_path)
    verdicts = []
    for _ in range(STEPS):
        x, _ = train_step(model, opt)
        verdicts.append(sup.step(tokens=BATCH, batch=x).verdict)
        if verdicts[-1] == "pause":
            break
    paused_step = len(verdicts)

    # It paused because the model learned: alert first, then the trigger was measured.
    assert verdicts[-1] == "pause" and paused_step < STEPS
    assert "alert" in verdicts[:-1]
    accuracies = [acc for _, acc, _ in probe.seen]
    assert accuracies[0] < ALERT and accuracies[-1] >= TRIGGER
    assert all(a < TRIGGER for a in accuracies[:-1])
    assert not any(training for _, _, training in probe.seen), "evaluated in eval mode"
    assert [s for s, _, _ in probe.seen][:3] == [10, 20, 40]  # first_at, then every 2x
    state = load_state(ws.ledger, RUN)
    assert [e.predicate.value for e in state.evals] == accuracies
    assert [e.predicate.step for e in state.evals] == [s for s, _, _ in probe.seen]

    # FLOP was measured once (one input signature), then multiplied.
    counter = sup.counter
    assert counter.misses == 1  # later steps: the supervisor's own cache or the counter's
    (measured,) = counter.cache.values()
    assert measured.model_flop == step_flop and measured.complete
    assert state.compute, "compute statements were written"
    for c in state.compute:
        p = c.predicate
        assert p.method == "measured"
        assert p.flop_by_phase["pretraining"] == pytest.approx(p.step * step_flop, rel=1e-12)
        assert p.tokens == p.step * BATCH

    # The supervisor saved the checkpoint and declared it, then the pause.
    ck_entry, pause_entry = state.checkpoints[-1], state.pauses[-1]
    ck: CheckpointPredicate = ck_entry.predicate
    assert pause_entry.predicate.checkpoint == ck_entry.ref
    assert pause_entry.predicate.step == ck.step == paused_step
    assert state.decisions[-1].predicate.verdict == "pause"
    assert pause_entry.predicate.decision == state.decisions[-1].ref
    ck_path = Path(ck.uri)
    assert ck_path.parent == tmp_path / "checkpoints"
    assert manifest_of(ck_path).digest == ck.digest
    saved = torch.load(ck_path / "model.pt")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())

    # Paused: no more training, here or in a new process, until the quorum says so.
    with pytest.raises(RunPaused):
        sup.step(tokens=BATCH, batch=x)
    with pytest.raises(RunPaused) as info:
        open_run(ws, policy, model, probe, tmp_path)
    assert "security-level-demo" in " ".join(info.value.missing)

    attest(ws.ledger, ws.key("ciso"), "security-level-demo", policy=policy,
           evidence=b"weights are encrypted at rest")
    approve(ws.ledger, ws.key("rso"), RUN, "the security safeguard is attested")
    approve(ws.ledger, ws.key("board"), RUN, "agreed")
    resume(ws.ledger, ws.key("trainer"), RUN)

    # A new process: fresh model, weights loaded from the checkpoint the resume cites.
    model, opt = new_model(seed=1)
    state = load_state(ws.ledger, RUN)
    cited = state.find(state.resumes[-1].predicate.checkpoint)
    assert cited is not None and cited.ref == ck_entry.ref
    assert manifest_of(cited.predicate.uri).digest == cited.predicate.digest
    model.load_state_dict(torch.load(Path(cited.predicate.uri) / "model.pt"))
    sup = open_run(ws, policy, model, probe, tmp_path)
    assert sup.step_index == paused_step
    for _ in range(sup.step_index, STEPS):
        x, _ = train_step(model, opt)
        assert sup.step(tokens=BATCH, batch=x).verdict != "pause"
    sup.flush()
    assert sup.counter.misses == 1
    assert len(probe.seen) > len(accuracies), "evaluations went on after the resumption"

    # The ledger tells the story, in order, and every entry verifies.
    story = " ".join(kinds(ws))
    assert re.fullmatch(
        r"run( compute| eval| decision)* compute( eval)+ decision checkpoint pause"
        r" attestation approval approval decision resume compute( compute| eval| decision)*",
        story,
    ), story
    state = load_state(ws.ledger, RUN)
    assert state.resumes[-1].predicate.checkpoint == state.pauses[-1].predicate.checkpoint
    assert state.resumes[-1].predicate.pause == state.pauses[-1].ref
    steps = [c.predicate.step for c in state.compute]
    assert steps == sorted(steps) and steps[-1] == STEPS
    assert state.compute[-1].predicate.flop_by_phase["pretraining"] == pytest.approx(
        STEPS * step_flop, rel=1e-12
    )
    report = ws.ledger.verify()
    assert report.ok, report.problems
    assert report.signatures_checked == ws.ledger.size
    assert replays(ws, policy) >= 4


def test_supervision_does_not_perturb_training(ws: Workspace, policy: Policy,
                                               tmp_path: Path) -> None:
    """Same seed, same losses and weights with and without the supervisor, up to the pause:
    the counter's extra step, the evaluations (eval mode, global RNG draws) and the
    checkpoint leave training's RNG and modes exactly as they were."""
    model, opt = new_model()
    probe = HeldOut()
    sup = open_run(ws, policy, model, probe, tmp_path)
    supervised = []
    while not sup.paused:
        x, loss = train_step(model, opt)
        supervised.append(loss)
        sup.step(tokens=BATCH, batch=x)
    assert len(probe.seen) >= 4 and sup.counter.misses == 1

    bare_model, bare_opt = new_model()
    bare = [train_step(bare_model, bare_opt)[1] for _ in supervised]
    assert supervised == bare
    assert all(torch.equal(a, b) for a, b in
               zip(model.state_dict().values(), bare_model.state_dict().values(), strict=True))
    assert model.training and all(m.training for m in model.modules())


EXAMPLE = REPO / "examples" / "torch_loop.py"
EXAMPLE_POLICY = REPO / "examples" / "torch_loop_policy.yaml"


def scalegate(*args: str) -> str:
    """Run a `scalegate` command in-process, as the README shows it; its output."""
    from typer.testing import CliRunner

    from scalegate.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


def test_readme_example_runs_pauses_and_resumes(ws: Workspace, tmp_path: Path) -> None:
    """examples/torch_loop.py (the README's loop) in a subprocess against a real workspace,
    with the README's policy and officers' commands: it pauses by itself, is refused while
    paused, and trains to the end from the paused checkpoint once resumed."""
    policy = load_policy(EXAMPLE_POLICY)
    assert policy.evaluation is not None and policy.evaluation.first_at is not None
    # The policy's first milestone is ~10 steps of the example's measured FLOP.
    assert 5 < policy.evaluation.first_at / analytic_step_flop() < 20
    keys = tmp_path / "ws" / "keys"
    ledger = str(ws.ledger_path)
    ws.close()  # the example is another process with its own connection
    scalegate("policy", "publish", str(EXAMPLE_POLICY), "--key", str(keys / "rso.key"),
              "--ledger", ledger)  # as the README does: the run cites what its RSO published
    cmd = [sys.executable, str(EXAMPLE), ledger, str(keys / "trainer.key"), str(EXAMPLE_POLICY)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=120)

    first = run()
    assert first.returncode == 1 and "paused at step" in first.stderr, first.stderr
    assert "Traceback" not in first.stderr
    again = run()  # still paused: refused, saying what is missing
    assert again.returncode == 1 and "Traceback" not in again.stderr, again.stderr
    assert "may not train until" in again.stderr and "security-level-demo" in again.stderr
    assert "scalegate attest security-level-demo --key" in again.stderr
    # The paused checkpoint evaluated again (the weights loaded from the recorded files).
    redo = subprocess.run([*cmd, "--evaluate-paused"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert redo.returncode == 1 and "Traceback" not in redo.stderr, redo.stderr
    assert "evaluated; the resumption still lacks:" in redo.stderr
    assert "security-level-demo" in redo.stderr

    from scalegate.ledger.log import Ledger

    with Ledger.open(ledger) as led:
        state = load_state(led, "example-run")
    pause = state.active_pause
    assert pause is not None and state.evals[-1].predicate.value >= TRIGGER
    redone, first = state.evals[-1].predicate, state.evals[-2].predicate
    assert redone.checkpoint == pause.predicate.checkpoint and redone.step == first.step
    assert redone.value == first.value and redone.checkpoint_digest == first.checkpoint_digest
    ck = state.find(pause.predicate.checkpoint)
    assert ck is not None
    assert manifest_of(tmp_path / ck.predicate.uri).digest == ck.predicate.digest

    scalegate("attest", "security-level-demo", "--key", str(keys / "ciso.key"), "--ledger", ledger)
    scalegate("approve", "example-run", "--key", str(keys / "rso.key"), "-m", "attested",
              "--ledger", ledger)
    scalegate("approve", "example-run", "--key", str(keys / "board.key"), "-m", "agreed",
              "--ledger", ledger)
    out = scalegate("resume", "example-run", "--key", str(keys / "trainer.key"),
                    "--ledger", ledger)
    assert ck.predicate.digest in out

    last = run()
    assert last.returncode == 0, last.stderr
    assert "trained 400 steps" in last.stdout
    with Ledger.open(ledger) as led:
        state = load_state(led, "example-run")
        assert led.verify().ok
    assert state.active_pause is None and len(state.resumes) == 1
    after = [e.predicate.value for e in state.evals if e.index > state.resumes[0].index]
    assert after and min(after) >= TRIGGER, "resumed from the trained weights"
    final = state.compute[-1].predicate
    assert final.step == 400 and final.tokens == 400 * BATCH and final.method == "measured"
    assert final.flop_by_phase["pretraining"] == pytest.approx(400 * analytic_step_flop())
    # The README's last command: the auditor's audit, clean (the log was checkpointed by
    # the processes that wrote it; nobody ran `scalegate ledger checkpoint`).
    audit = scalegate("verify", "--ledger", ledger, "--trust", str(tmp_path / "ws" / "trust.yaml"),
                      "--state", str(tmp_path / "ws" / "auditor.json"))
    assert "nothing violated" in audit


def test_readme_shows_the_example_verbatim() -> None:
    """The README's loop is examples/torch_loop.py, so the code a reader copies is tested."""
    example = EXAMPLE.read_text()
    assert len(example.splitlines()) <= 45
    readmes = [REPO / "README.md", REPO / "README-loop.md"]
    sections = [t for t in (r.read_text() for r in readmes if r.is_file())
                if "## A plain PyTorch loop" in t]
    assert sections, "no README has the section 'A plain PyTorch loop'"
    section = sections[0].split("## A plain PyTorch loop", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None and code.group(1) == example


def test_compute_adds_up_when_the_counting_method_changes(ws: Workspace, tmp_path: Path) -> None:
    """Measured before a reopening, declared after it: the run's total keeps growing, and
    the ``compute`` statement says which method counted how much."""
    policy = load_policy(REPO / "examples" / "torch_loop_policy.yaml")
    model, opt = new_model()
    sup = Supervisor.open("methods", policy, ws.ledger, ws.key("trainer"), model=model,
                          checkpoint_dir=tmp_path, check_interval=1e9)
    for _ in range(3):
        x, _loss = train_step(model, opt)
        sup.step(tokens=BATCH, batch=x)
    sup.flush()
    measured = load_state(ws.ledger, "methods").compute[-1].predicate
    assert measured.method == "measured" and measured.methods == {}
    assert measured.flop_by_phase["pretraining"] == pytest.approx(3 * analytic_step_flop())

    sup = Supervisor.open("methods", policy, ws.ledger, ws.key("trainer"), model=model,
                          checkpoint_dir=tmp_path, check_interval=1e9)
    for _ in range(2):
        sup.step(tokens=BATCH, flop=1e5)
    sup.flush()
    both = load_state(ws.ledger, "methods").compute[-1].predicate
    assert both.step == 5 and both.method == "measured+declared"
    assert both.flop_by_phase["pretraining"] == pytest.approx(
        measured.flop_by_phase["pretraining"] + 2e5)
    assert both.methods == pytest.approx({"measured": 3 * analytic_step_flop(),
                                          "declared": 2e5})
