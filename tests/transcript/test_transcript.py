"""A run records its training transcript as it trains (real torch, a real ledger), and a
verifier re-executes the segments a challenge picks: an honest run passes bitwise; hidden
steps, swapped weights, batches other than those committed and a fabricated end snapshot
are caught."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scalegate.demo.workspace import create_workspace
from scalegate.ledger import SegmentPredicate
from scalegate.policy import load_policy
from scalegate.supervisor import Supervisor
from scalegate.transcript import (
    DataManifest,
    Transcript,
    batch_digest,
    catch_probability,
    challenge,
    challenge_seed,
    check_chain,
    commit_seed,
    example_digests,
    snapshot_path,
    verify_segment,
)

torch = pytest.importorskip("torch")
STEPS, SEGMENT = 23, 5
SALT = bytes(range(16))


class TinyReplay:
    """A small MLP, AdamW, a learning-rate schedule, dropout: trained deterministically
    on the CPU, so re-execution is bitwise."""

    def make(self) -> tuple[Any, Any]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                    torch.nn.Dropout(0.1), torch.nn.Linear(16, 1))
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2)

    def batch(self, step: int) -> tuple[Any, Any]:
        g = torch.Generator().manual_seed(1000 + step)
        return torch.randn(4, 8, generator=g), torch.randn(4, 1, generator=g)

    def step(self, model: Any, optimizer: Any, batch: Any) -> None:
        x, y = batch
        model.train()
        loss = ((model(x) - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _manifest(left_out: int | None = None) -> DataManifest:
    """The examples of every batch the run feeds (but those of step ``left_out``)."""
    return DataManifest(d for step in range(STEPS) if step != left_out
                        for d in example_digests(TinyReplay().batch(step)))


def _train(tmp: Path, cheat: Callable[[int, Any, Any], None] | None = None,
           flop_claimed: float = 1.0, manifest: DataManifest | None = None
           ) -> tuple[list[SegmentPredicate], Path, bytes]:
    """Train STEPS steps under the supervisor with a transcript committing to ``manifest``
    (default: every example fed); ``cheat(step, model, optimizer)`` runs after each step.
    Returns the segments, the snapshots, a seed."""
    ws = create_workspace(tmp / "ws")
    replay = TinyReplay()
    model, optimizer = replay.make()
    snapshots = tmp / "snapshots"
    sup = Supervisor.open("tiny", load_policy("eu-ai-act"), ws.ledger, ws.key("trainer"),
                          model=model, optimizer=optimizer, check_interval=1e9,
                          transcript=Transcript(snapshots, segment_steps=SEGMENT,
                                                config_digest="c" * 64, keep_batches=True,
                                                data_root=(manifest or _manifest()).root,
                                                seed_commitment=commit_seed(0, SALT)))
    from torch.utils.flop_counter import FlopCounterMode

    for step in range(STEPS):
        for group in optimizer.param_groups:
            group["lr"] = 1e-2 * 0.95 ** step
        batch = replay.batch(step)
        with FlopCounterMode(display=False) as counted:  # the FLOP the step takes
            replay.step(model, optimizer, batch)
        if cheat is not None:
            cheat(step, model, optimizer)
        sup.step(tokens=4, flop=float(counted.get_total_flops()) * flop_claimed, batch=batch)
    sup.flush()
    entries = ws.ledger.entries(kind="segment")
    ws.ledger.checkpoint()  # fixes the challenge: a root the lab could not choose
    seed = challenge_seed(ws.ledger, entries[-1].index)
    ws.close()
    assert seed is not None
    return [e.statement.predicate for e in entries], snapshots, seed  # type: ignore[misc]


def _verify(segments: list[SegmentPredicate], snapshots: Path) -> list[Any]:
    return [verify_segment(i, segments[i], snapshots, TinyReplay())
            for i in range(len(segments))]


def test_an_honest_run_reexecutes_bitwise_and_chains(tmp_path: Path) -> None:
    segments, snapshots, seed = _train(tmp_path)
    assert [(s.start_step, s.end_step) for s in segments] == [
        (0, 1), (1, 5), (5, 10), (10, 15), (15, 20), (20, 23)]  # compute recorded at step 1
    assert check_chain(segments, last_step=STEPS) == []
    picked = challenge(seed, len(segments), 3)
    assert picked == challenge(seed, len(segments), 3) and len(set(picked)) == 3
    for check in _verify(segments, snapshots):
        assert check.ok, check.problems
    assert segments[2].learning_rates[0] == pytest.approx(1e-2 * 0.95 ** 5)


def test_a_hidden_step_is_caught(tmp_path: Path) -> None:
    replay = TinyReplay()

    def extra(step: int, model: Any, optimizer: Any) -> None:
        if step == 7:  # one more step than logged, on a batch of its own
            replay.step(model, optimizer, replay.batch(10_000))

    segments, snapshots, _ = _train(tmp_path, extra)
    bad = [c for c in _verify(segments, snapshots) if not c.ok]
    assert [c.position for c in bad] == [2]  # steps 5..10
    assert "does not lead to the state" in bad[0].problems[0]


def test_weights_swapped_between_segments_are_caught(tmp_path: Path) -> None:
    def swap(step: int, model: Any, optimizer: Any) -> None:
        if step == 11:  # in the middle of a segment: weights trained elsewhere
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.01)

    segments, snapshots, _ = _train(tmp_path, swap)
    assert [c.position for c in _verify(segments, snapshots) if not c.ok] == [3]


def test_a_fabricated_end_snapshot_and_other_batches_are_caught(tmp_path: Path) -> None:
    segments, snapshots, _ = _train(tmp_path)
    # The lab hands over an end snapshot it made up.
    path = snapshot_path(snapshots, "tiny", 15)
    state = torch.load(path, weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] = state["model"][first] + 1
    torch.save(state, path)
    check = verify_segment(3, segments[3], snapshots, TinyReplay())
    assert any("end snapshot" in p for p in check.problems)

    class OtherData(TinyReplay):
        def batch(self, step: int) -> tuple[Any, Any]:
            x, y = super().batch(step)
            return x, y + (1.0 if step == 21 else 0.0)

    check = verify_segment(5, segments[5], snapshots, OtherData())
    assert any("Merkle root" in p for p in check.problems)


def test_data_outside_the_manifest_is_caught(tmp_path: Path) -> None:
    """The lab committed to a manifest without step 12's examples, and trained on them."""
    declared = _manifest(left_out=12)
    segments, snapshots, _ = _train(tmp_path, manifest=declared)
    checks = [verify_segment(i, s, snapshots, TinyReplay(), manifest=declared)
              for i, s in enumerate(segments)]
    assert [c.position for c in checks if not c.ok] == [3]  # steps 10..15
    assert checks[3].problems == ["step 12 trained on 4 example(s) outside the run's data "
                                  "manifest"]
    assert all(c.ok for c in [verify_segment(3, segments[3], snapshots, TinyReplay(),
                                             manifest=_manifest())])
    # An example's digest is that of the item a dataset returns: (x[i], y[i]).
    assert example_digests(TinyReplay().batch(3))[1] == batch_digest(
        tuple(t[1] for t in TinyReplay().batch(3)))


def test_training_hidden_between_pause_and_resume_is_caught(tmp_path: Path) -> None:
    """The run pauses at its capability trigger; the lab trains on during the pause, then
    resumes with approvals. The resumed transcript starts from weights the paused one did
    not end with: the chain breaks there, and the resumed segment's start does not match
    the paused snapshot. Honestly resumed, the chain holds."""
    for hidden in (0, 3):
        segments, snapshots, pause = _pause_and_resume(tmp_path / f"hidden-{hidden}", hidden)
        problems = check_chain(segments, pauses=[pause])
        after = next(i for i, s in enumerate(segments) if s.start_step == pause)
        resumed = verify_segment(after, segments[after], snapshots, TinyReplay(),
                                 flop_slack=None)
        if not hidden:
            assert problems == [] and resumed.ok, (problems, resumed.problems)
            continue
        assert any(f"segment {after} starts from a state other than" in p for p in problems)
        assert any("start snapshot" in p for p in resumed.problems)


def _pause_and_resume(tmp: Path, hidden: int) -> tuple[list[SegmentPredicate], Path, int]:
    """Train to the pause; train ``hidden`` steps logged nowhere; resume. The resumed
    process opens the run and then loads the paused checkpoint, as the README's loop does
    (a dishonest one keeps the weights it trained on instead)."""
    from scalegate.evals import Probe, Suite
    from scalegate.governance import approve, attest, resume

    demo = load_policy("demo")
    assert demo.evaluation is not None and demo.evaluation.first_at is not None
    step_flop = demo.evaluation.first_at / 10
    score = Suite([Probe("cyber-demo-task", "cyber-demo", "accuracy", lambda model, ctx: (
        min(1.0, (ctx.effective_flop / demo.evaluation.first_at) ** 0.5 / 9.8), 0.01, 100))])
    ws = create_workspace(tmp / "ws")
    replay = TinyReplay()
    model, optimizer = replay.make()
    settings = Transcript(tmp / "snapshots", segment_steps=50)

    def open_run() -> Supervisor:
        return Supervisor.open("tiny", demo, ws.ledger, ws.key("trainer"), evaluator=score,
                               model=model, optimizer=optimizer, check_interval=1e9,
                               checkpoint_dir=tmp / "ck", transcript=settings)

    sup, step = open_run(), 0
    while sup.step(tokens=4, flop=step_flop, batch=_fed(replay, model, optimizer, step)
                   ).verdict != "pause":
        step += 1
    pause = step + 1
    for extra in range(hidden):  # trained while paused, logged nowhere
        replay.step(model, optimizer, replay.batch(50_000 + extra))
    attest(ws.ledger, ws.key("ciso"), "security-level-demo", policy=demo, evidence=b"report")
    for officer in ("rso", "board"):
        approve(ws.ledger, ws.key(officer), "tiny", "the safeguard is attested",
                ceiling="2x")
    resume(ws.ledger, ws.key("trainer"), "tiny")
    if not hidden:
        model, optimizer = replay.make()  # a new process
    sup = open_run()
    if not hidden:
        assert sup.resume_checkpoint is not None
        model.load_state_dict(torch.load(sup.resume_checkpoint / "model.pt"))
        optimizer.load_state_dict(torch.load(sup.resume_checkpoint / "optimizer.pt"))
    for step in range(pause, pause + 20):
        sup.step(tokens=4, flop=step_flop, batch=_fed(replay, model, optimizer, step))
    sup.flush()
    segments = [e.statement.predicate for e in ws.ledger.entries(kind="segment")]
    ws.close()
    return segments, tmp / "snapshots", pause  # type: ignore[return-value]


def _fed(replay: TinyReplay, model: Any, optimizer: Any, step: int) -> Any:
    batch = replay.batch(step)
    replay.step(model, optimizer, batch)
    return batch


def test_compute_under_reported_is_caught(tmp_path: Path) -> None:
    segments, snapshots, _ = _train(tmp_path, flop_claimed=0.5)  # half the FLOP logged
    check = verify_segment(0, segments[0], snapshots, TinyReplay())
    assert any("claims" in p and "measures" in p for p in check.problems), check.problems


def test_a_nondeterministic_run_is_judged_by_its_own_noise(tmp_path: Path) -> None:
    """Re-executing twice calibrates how far apart honest re-executions land (Proof-of-
    Learning's delta): within twice that, a segment passes; bitwise, it could not."""
    segments, snapshots, _ = _train(tmp_path)

    class Noisy(TinyReplay):
        noise = torch.Generator().manual_seed(7)  # never the same twice

        def step(self, model: Any, optimizer: Any, batch: Any) -> None:
            super().step(model, optimizer, batch)
            with torch.no_grad():  # nondeterminism, as a GPU's reductions give
                for p in model.parameters():
                    p.add_(torch.randn(p.shape, generator=self.noise) * 1e-7)

    strict = verify_segment(1, segments[1], snapshots, Noisy())
    assert not strict.ok and strict.distance is not None and strict.distance > 0
    lenient = verify_segment(1, segments[1], snapshots, Noisy(), calibrate=True)
    assert lenient.ok, lenient.problems
    assert lenient.delta is not None and lenient.delta > 0


def test_a_transcript_with_a_gap_or_a_changed_start_is_caught(tmp_path: Path) -> None:
    segments, _, _ = _train(tmp_path)
    gap = [segments[0], *segments[2:]]
    assert any("missing" in p for p in check_chain(gap, last_step=STEPS))
    moved = [segments[0], segments[1].model_copy(update={"start_digest": "0" * 64}),
             *segments[2:]]
    assert any("weights were changed" in p for p in check_chain(moved))
    assert any("outside it" in p for p in check_chain(segments, last_step=STEPS + 5))
    assert check_chain(segments, pauses=[10]) == []
    assert any("paused at step 12" in p for p in check_chain(segments, pauses=[12]))


def test_the_command_line_challenges_and_reexecutes(tmp_path: Path) -> None:
    import inspect
    import subprocess

    from server.serving import SCALEGATE

    _, snapshots, _ = _train(tmp_path)
    (tmp_path / "tiny_replay.py").write_text(
        "from typing import Any\nimport torch\n\n\n" + inspect.getsource(TinyReplay)
        + "\n\nclass Kept:\n    make = TinyReplay.make\n    step = TinyReplay.step\n")
    ledger = str(tmp_path / "ws" / "ledger.db")
    shown = subprocess.run([SCALEGATE, "transcript", "challenge", "tiny", "--ledger", ledger,
                            "-n", "3"], capture_output=True, text=True, timeout=120,
                           cwd=tmp_path)
    assert shown.returncode == 0 and "3 of 6 segments" in " ".join(shown.stdout.split())
    args = [SCALEGATE, "transcript", "verify", "tiny", "--ledger", ledger, "--snapshots",
            str(snapshots), "--replay", "tiny_replay:TinyReplay", "-n", "6"]
    verifier = ["--record", str(tmp_path / "ws" / "keys" / "rso.key")]
    ok = subprocess.run([*args, *verifier], capture_output=True, text=True, timeout=300,
                        cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "reproduces" in ok.stdout and "100%" in ok.stdout and "recorded as entry" in ok.stdout
    lied = subprocess.run([*args, "--seed-reveal", f"7:{SALT.hex()}"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert lied.returncode == 3 and "not the one the run" in " ".join(lied.stdout.split())
    told = subprocess.run([*args, "--seed-reveal", f"0:{SALT.hex()}"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert told.returncode == 0, told.stdout
    assert _transcript_check(tmp_path, ledger) == (True, 0)
    # A replay without batch(): the batches come from those the run kept; every example
    # fed must be in the manifest the run committed to.
    _manifest().write(tmp_path / "manifest.txt")
    kept = [SCALEGATE, *args[1:-4], "--replay", "tiny_replay:Kept", "--data", str(snapshots),
            "--manifest", str(tmp_path / "manifest.txt")]
    fed = subprocess.run(kept, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert fed.returncode == 0 and "reproduces" in fed.stdout, fed.stdout + fed.stderr
    _manifest(left_out=3).write(tmp_path / "other.txt")
    other = subprocess.run([*kept[:-1], str(tmp_path / "other.txt")], capture_output=True,
                           text=True, timeout=300, cwd=tmp_path)
    said = " ".join(other.stdout.replace("│", " ").split())
    assert other.returncode == 3 and "not the one the run committed to" in said
    assert "example(s) outside the run's data manifest" in said
    (tmp_path / "bad.txt").write_text("00ff\n")
    bad = subprocess.run([*kept[:-1], str(tmp_path / "bad.txt")], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode != 0 and "bad.txt:1" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr
    path = snapshot_path(snapshots, "tiny", 10)
    path.unlink()  # the lab withholds a snapshot a challenge asks for
    bad = subprocess.run([*args, *verifier], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert bad.returncode == 3 and "Traceback" not in bad.stderr, bad.stdout + bad.stderr
    assert _transcript_check(tmp_path, ledger) == (False, 1)  # the auditor reports it
    assert catch_probability(5, 2) == pytest.approx(0.4)
    torch.save({"weights": "of another model"}, path)  # a snapshot that does not fit
    odd = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert odd.returncode == 3 and "does not fit" in " ".join(odd.stdout.split())
    assert "Traceback" not in odd.stderr


def _transcript_check(tmp: Path, ledger: str) -> tuple[bool, int]:
    """What `scalegate verify` says of the run's transcript: the check, failed spot-checks."""
    import json
    import subprocess

    from server.serving import SCALEGATE

    res = subprocess.run([SCALEGATE, "verify", "--ledger", ledger, "--trust",
                          str(tmp / "ws" / "trust.yaml"), "--json", "--no-state"],
                         capture_output=True, text=True, timeout=300)
    report = json.loads(res.stdout)
    (check,) = [c for c in report["checks"] if c["name"] == "training transcripts"]
    return check["ok"], report["violation_counts"].get("transcript-failed", 0)


def test_a_transcript_without_its_optimizer_is_refused_before_anything_is_logged(
        tmp_path: Path) -> None:
    from scalegate.errors import RunError

    ws = create_workspace(tmp_path / "ws")
    model, _ = TinyReplay().make()
    with pytest.raises(RunError, match="was given no optimizer"):
        Supervisor.open("tiny", load_policy("eu-ai-act"), ws.ledger, ws.key("trainer"),
                        model=model, transcript=Transcript(tmp_path / "snapshots"))
    assert ws.ledger.entries(run_id="tiny") == []
    ws.close()


CRASHING = """
import os, signal, sys
from pathlib import Path
import torch
sys.path.insert(0, sys.argv[1])
from tiny_replay import TinyReplay
import scalegate.transcript.recorder as recorder
from scalegate.ledger import Ledger, SigningKey
from scalegate.policy import load_policy
from scalegate.supervisor import Supervisor
from scalegate.transcript import Transcript, snapshot_path

tmp, kill_at, steps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
whole = recorder._save

def save(obj, path):
    if kill_at and path == snapshot_path(tmp / "snapshots", "tiny", kill_at):
        torch.save(obj, path.with_name(path.name + ".tmp"))  # written, not yet in place
        os.kill(os.getpid(), signal.SIGKILL)
    whole(obj, path)

recorder._save = save
replay = TinyReplay()
model, optimizer = replay.make()
ledger = Ledger.open(tmp / "ws" / "ledger.db")
sup = Supervisor.open("tiny", load_policy("eu-ai-act"), ledger,
                      SigningKey.load(tmp / "ws" / "keys" / "trainer.key"), model=model,
                      optimizer=optimizer, check_interval=1e9, compute_every=3,
                      record_interval=0, transcript=Transcript(tmp / "snapshots", 5))
if sup.transcript_snapshot is not None:  # restarted: from the snapshot at the ledger's step
    kept = torch.load(sup.transcript_snapshot, weights_only=True)
    model.load_state_dict(kept["model"])
    optimizer.load_state_dict(kept["optimizer"])
for step in range(sup.step_index, steps):
    batch = replay.batch(step)
    replay.step(model, optimizer, batch)
    sup.step(tokens=4, flop=1.0, batch=batch)
sup.flush()
ledger.close()
"""


def test_a_run_killed_while_writing_a_snapshot_restarts_its_transcript(tmp_path: Path) -> None:
    """SIGKILL half-way through writing a snapshot; the restarted run loads the snapshot at
    the step the ledger last recorded (compute statements end segments) and trains on: the
    transcript chains, covers every step, and every segment re-executes bitwise."""
    import inspect
    import signal
    import subprocess
    import sys

    create_workspace(tmp_path / "ws").close()
    (tmp_path / "tiny_replay.py").write_text(
        "from typing import Any\nimport torch\n\n\n" + inspect.getsource(TinyReplay))
    (tmp_path / "train.py").write_text(CRASHING)
    run = [sys.executable, str(tmp_path / "train.py"), str(tmp_path)]
    killed = subprocess.run([*run, "10", "23"], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "snapshots" / "tiny-step00000010.pt.tmp").exists()
    done = subprocess.run([*run, "0", "23"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from scalegate.ledger import Ledger

    with Ledger.open(tmp_path / "ws" / "ledger.db") as led:
        segments = [e.statement.predicate for e in led.entries(kind="segment")]
        last = max(e.statement.predicate.step for e in led.entries(kind="compute"))
    assert last == 23 and check_chain(segments, last_step=last) == []  # type: ignore[arg-type]
    checks = [verify_segment(i, s, tmp_path / "snapshots", TinyReplay(), flop_slack=None)
              for i, s in enumerate(segments)]  # type: ignore[arg-type]
    assert [c.problems for c in checks if not c.ok] == []
