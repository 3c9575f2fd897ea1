"""`scalegate attest | approve | resume | runs | run status` on a real run that paused itself.

A real workspace (keys for root, log, trainer, CISO, RSO, board; a SQLite ledger), a real
supervisor under the demo policy with declared FLOP and a probe whose value grows with
compute: the run crosses the alert, then the trigger without the safeguard, and pauses.
Everything after that goes through the command line, as the officers would do it; every
refusal must be a clear message, a non-zero exit, no traceback and nothing written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from scalegate.cli import _runs
from scalegate.demo.workspace import create_workspace
from scalegate.errors import RunPaused, ScalegateError
from scalegate.evals import Probe, Suite
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import ApprovalPredicate, AttestationPredicate
from scalegate.policy import load_policy
from scalegate.runs import load_state
from scalegate.supervisor import Supervisor

DEMO = load_policy("demo")
assert DEMO.evaluation is not None and DEMO.evaluation.first_at is not None
FIRST_AT = DEMO.evaluation.first_at
((TRIGGER,),) = [level.evaluations for cap in DEMO.capabilities for level in cap.levels]
(NOTIFY,) = DEMO.compute.thresholds
STEP_FLOP = FIRST_AT / 10  # ten steps to the first evaluation: milestones fall on whole steps
ROOT = Path(__file__).resolve().parents[2]
REGISTERED = "_runs" in (ROOT / "src/scalegate/cli/__init__.py").read_text()

APP = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
_runs.register(APP)


# --- the world: a run that paused itself -------------------------------------------------------


class Clock:
    """Starts 20 days ago (so the 14-day notification is overdue now), one second a tick."""

    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


def capability(flop: float) -> float:
    """sqrt(flop / first_at) / 9.8: below the demo's alert 0.3 up to 8x first_at, alert at
    16x, trigger 0.6 at 36x (the milestones 1x, 2x, 4x, 8x, 16x, then 1.5x: 24x, 36x)."""
    return min(1.0, max(0.0, (flop / FIRST_AT) ** 0.5 / 9.8))


def _supervisor(ledger: Ledger, key: SigningKey, clock: Clock, tmp: Path,
                run_id: str = "run-1") -> Supervisor:
    def probe(model, ctx):
        return (capability(ctx.effective_flop), 0.01, 100)

    def save(step: int) -> Path:
        path = tmp / f"{run_id}-ckpt-{step}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "weights.bin").write_bytes(f"weights at {step}".encode())
        return path

    return Supervisor.open(
        run_id, load_policy("demo"), ledger, key,
        evaluator=Suite([Probe("cyber-demo-task", "cyber-demo", "accuracy", probe)]),
        save_checkpoint=save, checkpoint_dir=tmp / "ck", compute_every=5, clock=clock,
        check_interval=1e9, model_name="tiny-demo",
    )


def _train_until_pause(sup: Supervisor) -> None:
    for _ in range(2000):
        if sup.step(tokens=1000, flop=STEP_FLOP).verdict == "pause":
            return
    raise AssertionError("the run never paused")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace where run-1 paused at its trigger and run-2 is running (built once)."""
    root = tmp_path_factory.mktemp("template")
    clock = Clock(datetime.now(UTC) - timedelta(days=20))
    ws = create_workspace(root / "ws", clock=clock)
    try:
        _train_until_pause(_supervisor(ws.ledger, ws.key("trainer"), clock, root / "ws"))
        other = _supervisor(ws.ledger, ws.key("trainer"), clock, root / "ws", "run-2")
        for _ in range(3):
            other.step(tokens=10, flop=1e9)
        other.flush()
    finally:
        ws.close()
    return root / "ws"


@dataclass
class Lab:
    dir: Path
    db: Path

    def key(self, who: str) -> Path:
        return self.dir / "keys" / f"{who}.key"

    def size(self) -> int:
        with Ledger.open(self.db) as led:
            return led.size

    def state(self, run_id: str = "run-1"):
        with Ledger.open(self.db) as led:
            return load_state(led, run_id)


@pytest.fixture()
def lab(template: Path, tmp_path: Path) -> Lab:
    """A private copy of the template workspace (key files keep their 0600 mode)."""
    shutil.copytree(template, tmp_path / "ws")
    return Lab(tmp_path / "ws", tmp_path / "ws" / "ledger.db")


# --- running the commands ----------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(lab: Lab, *args: str) -> Result:
    """In process, turning a ScalegateError into message + exit code as `cli.main` does."""
    res = CliRunner().invoke(APP, [*args, "--ledger", str(lab.db)])
    if isinstance(res.exception, ScalegateError):
        return Result(res.exception.exit_code, res.stdout, str(res.exception))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return Result(res.exit_code, res.stdout, res.stderr)


_BOOT = """
import sys, typer
from scalegate.cli import _runs
from scalegate.cli._console import print_error
from scalegate.errors import ScalegateError
app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
_runs.register(app)
try:
    app(sys.argv[1:])
except ScalegateError as exc:
    print_error(exc)
    sys.exit(exc.exit_code)
"""


def real(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """As a user runs it: the installed console script once the commands are registered in
    it, until then a fresh app with the same error handling as `cli.main`."""
    exe = str(Path(sys.executable).with_name("scalegate"))
    cmd = [exe] if REGISTERED else [sys.executable, "-c", _BOOT]
    return subprocess.run([*cmd, *args, "--ledger", str(lab.db)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})


def refused(lab: Lab, *args: str) -> str:
    """Run a command that must be refused: non-zero exit, nothing written; its message."""
    before = lab.size()
    res = cli(lab, *args)
    assert res.code != 0, res.out
    assert lab.size() == before, "a refused command wrote to the ledger"
    return res.err


# --- the pause, through to resumption ----------------------------------------------------------


def test_pause_attest_approve_resume_then_pause_again_at_the_ceiling(lab: Lab) -> None:
    state = lab.state()
    pause = state.active_pause
    assert pause is not None
    paused_at = pause.predicate.effective_flop

    res = cli(lab, "run", "status", "run-1")
    assert res.code == 0, res.err
    assert f"paused since entry {pause.index}" in res.out
    lacks = res.out.split("the resumption still lacks:")[1]
    assert "security-level-demo" in lacks and "rso" in lacks and "board" in lacks
    # Each missing item says how to supply it.
    assert "scalegate attest security-level-demo --key KEY" in lacks
    assert "scalegate approve run-1 --key KEY" in lacks

    # Refused, listing the attestation and both roles; nothing written.
    before = lab.size()
    res = cli(lab, "resume", "run-1", "--key", str(lab.key("trainer")))
    assert res.code == 1 and lab.size() == before
    lines = [ln for ln in res.err.splitlines() if ln.startswith("  - ")]
    assert any("security-level-demo" in ln for ln in lines), res.err
    assert any("rso" in ln for ln in lines) and any("board" in ln for ln in lines), res.err

    # The CISO attests, organisation-wide; the policy is found in the ledger.
    evidence = lab.dir / "pentest.pdf"
    evidence.write_bytes(b"penetration test report")
    res = cli(lab, "attest", "security-level-demo", "--key", str(lab.key("ciso")),
              "--evidence", str(evidence), "--evidence-uri", "https://example.org/pentest")
    assert res.code == 0, res.err
    assert lab.size() == before + 1 and "(30d)" in res.out
    att = lab.state().attestations[-1]
    assert isinstance(att.predicate, AttestationPredicate)
    assert att.predicate.evidence_digest == hashlib.sha256(b"penetration test report").hexdigest()
    assert att.predicate.scope == "org" and att.signer == "demo-lab/ciso"
    assert att.predicate.valid_until - att.predicate.valid_from == timedelta(days=30)

    # The RSO approves with a 2x ceiling: only the board is missing now.
    res = cli(lab, "approve", "run-1", "--key", str(lab.key("rso")), "--rationale",
              "safeguard verified", "--ceiling", "2x")
    assert res.code == 0, res.err
    assert "as rso" in res.out and "board" in res.out.split("still lacks:")[1]
    approval = lab.state().approvals[-1].predicate
    assert isinstance(approval, ApprovalPredicate)
    assert approval.ceiling_flop == pytest.approx(2 * paused_at)
    assert approval.pause == pause.ref
    res = cli(lab, "resume", "run-1", "--key", str(lab.key("trainer")))
    assert res.code == 1
    missing = [ln for ln in res.err.splitlines() if ln.startswith("  - ")]
    assert len(missing) == 1 and "board" in missing[0], res.err

    res = cli(lab, "approve", "run-1", "--key", str(lab.key("board")), "-m", "agreed")
    assert res.code == 0, res.err
    assert "may resume now: run `scalegate resume run-1`" in res.out
    assert "may resume" in cli(lab, "run", "status", "run-1").out

    res = cli(lab, "resume", "run-1", "--key", str(lab.key("trainer")))
    assert res.code == 0, res.err
    state = lab.state()
    assert state.active_pause is None and len(state.resumes) == 1
    ck_ref = state.resumes[0].predicate.checkpoint
    assert ck_ref == pause.predicate.checkpoint
    ck = state.find(ck_ref)
    assert ck is not None
    out = res.out
    assert f"checkpoint entry: {ck_ref.index}\n" in out
    assert f"checkpoint digest: sha256:{ck.predicate.digest}\n" in out
    assert f"checkpoint uri: {ck.predicate.uri}\n" in out and Path(ck.predicate.uri).is_dir()
    assert f"ceiling: {2 * paused_at:.1e}".replace("e+", "e") in out

    rows = {r["run_id"]: r for r in json.loads(cli(lab, "runs", "--json").out)}
    assert rows["run-1"]["status"] == "resumed"
    assert rows["run-1"]["ceiling_flop"] == pytest.approx(2 * paused_at)
    assert rows["run-1"]["status_text"].startswith("resumed (ceiling ")
    assert rows["run-2"]["status"] == "running"

    # The resumed run trains on and pauses again when it reaches the ceiling.
    with Ledger.open(lab.db) as led:
        clock = Clock(datetime.now(UTC))
        sup = _supervisor(led, SigningKey.load(lab.key("trainer")), clock, lab.dir)
        _train_until_pause(sup)
        assert sup.effective_flop == pytest.approx(2 * paused_at, rel=0.02)
    again = lab.state().active_pause
    assert again is not None and again.index > pause.index
    rows = {r["run_id"]: r for r in json.loads(cli(lab, "runs", "--json").out)}
    assert rows["run-1"]["status_text"] == f"paused since entry {again.index}"
    status = json.loads(cli(lab, "run", "status", "run-1", "--json").out)
    assert status["may_resume"] is False
    assert any("ceiling" in r for r in status["decisions"][-1]["rules"])
    assert [e["kind"] for e in status["events"]].count("pause") == 2


def test_run_status_shows_compute_evaluations_obligations_and_what_is_missing(lab: Lab) -> None:
    res = cli(lab, "run", "status", "run-1", "--json")
    assert res.code == 0, res.err
    v = json.loads(res.out)
    state = lab.state()
    assert v["summary"]["status"] == "paused"
    assert v["summary"]["steps"] == state.step
    (regime,) = v["regimes"]
    assert regime["regime"] == "training"
    assert regime["total_flop"] == pytest.approx(state.step * STEP_FLOP)
    assert regime["thresholds"] == [{"id": "demo-notify", "flop": NOTIFY.flop, "basis": "reached",
                                     "action": "notify", "recipient": "demo regulator",
                                     "met": True}]
    evals = v["evaluations"]
    assert len(evals) == len(state.evals) >= 3
    assert evals[0]["met"] == "below" and evals[-1]["met"] == "TRIGGER cyber-demo-1"
    assert any(e["met"] == "alert cyber-demo-1" for e in evals)
    assert evals[-1]["lines"] == [f"cyber-demo-1: {TRIGGER.alert:g} / {TRIGGER.trigger:g}"]
    assert v["decisions"][-1]["verdict"] == "pause"
    assert "safeguard-missing" in " ".join(v["decisions"][-1]["rules"])
    (notify,) = v["obligations"]
    assert notify["id"] == "demo-notify" and notify["overdue"] is True
    assert v["safeguards"] == [{"id": "security-level-demo", "attested_by": ["ciso"],
                                "entry": None, "state": "not attested", "ok": False}]
    assert v["may_resume"] is False
    assert any("security-level-demo" in m for m in v["missing"])

    shown = real(lab, "run", "status", "run-1")
    assert shown.returncode == 0, shown.stderr
    for text in ("compute by regime", "demo-notify", "OVERDUE", "TRIGGER cyber-demo-1",
                 "the resumption still lacks:", "security-level-demo", "not attested",
                 f"paused since entry {state.active_pause.index}",
                 "demo-notify: notify when reached compute reaches"):
        assert text in " ".join(shown.stdout.split()), text
    assert "— REACHED" in shown.stdout and "✓" not in shown.stdout.split("safeguards")[0]


def test_runs_table_and_json(lab: Lab) -> None:
    rows = json.loads(cli(lab, "runs", "--json").out)
    assert [r["run_id"] for r in rows] == ["run-1", "run-2"]
    one, two = rows
    state = lab.state()
    assert one["status_text"] == f"paused since entry {state.active_pause.index}"
    assert one["policy_id"] == "demo" and one["model"] == "tiny-demo"
    assert one["org"] == "demo-lab" and one["last_verdict"] == "pause"
    assert one["effective_flop"] == pytest.approx(state.step * STEP_FLOP)
    assert one["last_evaluations"]["cyber-demo-task"] >= TRIGGER.trigger
    assert two["status_text"] == "running" and two["steps"] == 3
    shown = real(lab, "runs")
    assert shown.returncode == 0, shown.stderr
    assert "paused since entry" in shown.stdout and "run-2" in shown.stdout


def test_the_default_ledger_comes_from_the_environment(lab: Lab) -> None:
    res = CliRunner(env={"SCALEGATE_LEDGER": str(lab.db)}).invoke(APP, ["runs", "--json"])
    assert res.exit_code == 0, res.output
    assert [r["run_id"] for r in json.loads(res.stdout)] == ["run-1", "run-2"]


# --- refusals ----------------------------------------------------------------------------------


def test_resume_refused_as_a_user_sees_it(lab: Lab) -> None:
    before = lab.size()
    res = real(lab, "resume", "run-1", "--key", str(lab.key("trainer")))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert lab.size() == before
    lines = res.stderr.splitlines()
    assert lines[0].startswith("error: run 'run-1' may not resume yet")
    items = [ln for ln in lines if ln.startswith("  - ")]
    assert len(items) >= 3, res.stderr  # the attestation, the RSO, the board: one a line
    assert any("security-level-demo" in i for i in items)


def test_only_the_trainer_resumes_and_attestations_last_as_the_policy_says(lab: Lab) -> None:
    """An officer's key may not write the trainer's resume (the trust file would refuse it);
    an attestation's validity is positive and within the safeguard's max_age."""
    msg = refused(lab, "resume", "run-1", "--key", str(lab.key("board")))
    assert "demo-lab/board may not resume run 'run-1'" in msg and "trainer" in msg
    # A namesake of the trainer's key (same name, another key, another role) is not it.
    from scalegate.ledger.statements import KeyPredicate, sign_statement

    namesake = SigningKey.generate("demo-lab/trainer")
    namesake.save(lab.dir / "keys" / "namesake.key")
    with Ledger.open(lab.db) as led:
        led.append(sign_statement(KeyPredicate(
            vkey=namesake.vkey.text(), org="demo-lab", roles=["auditor"],
            valid_from=datetime.now(UTC) - timedelta(minutes=1)),
            SigningKey.load(lab.dir / "keys" / "root.key")))
    msg = refused(lab, "resume", "run-1", "--key", str(lab.dir / "keys" / "namesake.key"))
    assert "may not resume run 'run-1'" in msg and "auditor" in msg
    for bad, said in (("0d", "must be positive"), ("100y", "lasts at most")):
        msg = refused(lab, "attest", "security-level-demo", "--key", str(lab.key("ciso")),
                      "--valid-for", bad)
        assert said in msg, msg


def test_a_loose_key_file_is_refused_with_the_fix(lab: Lab) -> None:
    os.chmod(lab.key("ciso"), 0o644)
    before = lab.size()
    res = real(lab, "attest", "security-level-demo", "--key", str(lab.key("ciso")))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "mode 0644" in res.stderr and f"chmod 600 {lab.key('ciso')}" in res.stderr
    assert lab.size() == before


def test_unknown_run_lists_the_known_runs(lab: Lab) -> None:
    for args in (("approve", "nope", "--key", str(lab.key("rso")), "-m", "x"),
                 ("resume", "nope", "--key", str(lab.key("trainer"))),
                 ("attest", "security-level-demo", "--key", str(lab.key("ciso")), "--run", "nope"),
                 ("run", "status", "nope")):
        msg = refused(lab, *args)
        assert "run 'nope' is not registered" in msg and "runs: run-1, run-2" in msg, msg


def test_missing_key_file(lab: Lab) -> None:
    msg = refused(lab, "approve", "run-1", "--key", str(lab.dir / "nope.key"), "-m", "x")
    assert "nope.key does not exist" in msg


def test_a_key_without_the_role(lab: Lab) -> None:
    msg = refused(lab, "approve", "run-1", "--key", str(lab.key("ciso")), "--role", "board",
                  "-m", "me too")
    assert "demo-lab/ciso does not hold role 'board'" in msg and "it holds: ciso" in msg
    msg = refused(lab, "approve", "run-1", "--key", str(lab.key("ciso")), "-m", "me too")
    assert "demo-lab/ciso holds none of the roles the quorum counts" in msg
    assert "quorum takes: rso, board" in msg
    # A role the quorum does not count is refused even when the key holds it.
    msg = refused(lab, "approve", "run-1", "--key", str(lab.key("trainer")), "--role",
                  "trainer", "-m", "I approve myself")
    assert "'trainer' is not a role the quorum counts" in msg and "rso, board" in msg


def test_one_key_approves_a_pause_once(lab: Lab) -> None:
    assert cli(lab, "approve", "run-1", "--key", str(lab.key("rso")), "-m", "ok").code == 0
    msg = refused(lab, "approve", "run-1", "--key", str(lab.key("rso")), "-m", "again")
    assert "demo-lab/rso already approved pause #" in msg and "as rso" in msg and "one seat" in msg
    msg = refused(lab, "attest", "security-level-demo", "--key", str(lab.key("rso")))
    assert "demo-lab/rso may not attest security-level-demo" in msg and "ciso" in msg


def test_unknown_safeguard_lists_the_policys(lab: Lab) -> None:
    msg = refused(lab, "attest", "firewall", "--key", str(lab.key("ciso")), "--run", "run-1")
    assert "no safeguard 'firewall'" in msg and "security-level-demo" in msg
    msg = refused(lab, "attest", "firewall", "--key", str(lab.key("ciso")))
    assert "names safeguard 'firewall'" in msg and "demo 1: security-level-demo" in msg
    msg = refused(lab, "attest", "firewall", "--key", str(lab.key("ciso")), "--policy", "nope")
    assert "no bundled policy named 'nope'" in msg


def test_bad_ceilings(lab: Lab) -> None:
    rso = str(lab.key("rso"))
    msg = refused(lab, "approve", "run-1", "--key", rso, "-m", "ok", "--ceiling", "two")
    assert "--ceiling 'two'" in msg and "2x" in msg
    msg = refused(lab, "approve", "run-1", "--key", rso, "-m", "ok", "--ceiling", "0.5x")
    assert "not above" in msg
    msg = refused(lab, "approve", "run-1", "--key", rso, "-m", "ok", "--ceiling", "1e3")
    assert "not above" in msg
    res = cli(lab, "approve", "run-1", "--key", rso, "-m", "ok", "--ceiling", "2X")
    assert res.code == 0 and "2x the" in " ".join(res.out.split()), res.out  # X as x


def test_other_bad_input(lab: Lab) -> None:
    rso, ciso = str(lab.key("rso")), str(lab.key("ciso"))
    assert "not paused" in refused(lab, "approve", "run-2", "--key", rso, "-m", "ok")
    assert "not paused" in refused(lab, "resume", "run-2", "--key", str(lab.key("trainer")))
    assert "rationale is empty" in refused(lab, "approve", "run-1", "--key", rso, "-m", " ")
    msg = refused(lab, "attest", "security-level-demo", "--key", ciso, "--valid-for", "soon")
    assert "--valid-for" in msg and "14d" in msg
    msg = refused(lab, "attest", "security-level-demo", "--key", ciso, "--evidence",
                  str(lab.dir / "missing.pdf"))
    assert "missing.pdf does not exist" in msg
    msg = refused(lab, "resume", "run-1", "--key", str(lab.key("trainer")), "--policy",
                  "eu-ai-act")
    assert "registered under policy demo" in msg
    root = SigningKey.generate("demo-lab/stranger")
    root.save(lab.dir / "stranger.key")
    msg = refused(lab, "approve", "run-1", "--key", str(lab.dir / "stranger.key"), "-m", "hi")
    assert "not a registered key" in msg


def test_a_missing_ledger(tmp_path: Path) -> None:
    res = CliRunner().invoke(APP, ["runs", "--ledger", str(tmp_path / "none.db")])
    assert isinstance(res.exception, ScalegateError)
    assert "none.db" in str(res.exception)
    assert not (tmp_path / "none.db").exists()


def test_resume_refusal_keeps_the_missing_list(lab: Lab) -> None:
    res = CliRunner().invoke(APP, ["resume", "run-1", "--key", str(lab.key("trainer")),
                                   "--ledger", str(lab.db)])
    assert isinstance(res.exception, RunPaused)
    assert len(res.exception.missing) >= 3


def test_notify_meets_an_open_obligation(lab: Lab) -> None:
    (row,) = [r for r in json.loads(cli(lab, "runs", "--json").out) if r["run_id"] == "run-1"]
    assert [o["id"] for o in row["obligations"]] == ["demo-notify"]
    assert "demo-notify OVERDUE since" in real(lab, "runs").stdout
    notice = lab.dir / "notice.txt"
    notice.write_text("Dear regulator, run-1 reached 1e11 FLOP of training compute.")
    key = str(lab.key("trainer"))
    base = ("notify", "run-1", "--evidence", str(notice), "--key", key)

    assert "owes no obligation 'nope'" in refused(lab, *base, "--obligation", "nope")
    assert "demo-notify" in refused(lab, *base, "--obligation", "nope")  # the open ones named
    assert "owed to 'demo regulator'" in refused(
        lab, *base, "--obligation", "demo-notify", "--recipient", "someone else")
    assert "still to come" in refused(
        lab, *base, "--obligation", "demo-notify", "--sent-at", "2999-01-01T00:00")
    assert "not a date" in refused(lab, *base, "--obligation", "demo-notify", "--sent-at", "soon")
    assert "does not exist" in refused(lab, "notify", "run-1", "--obligation", "demo-notify",
                                       "--evidence", str(lab.dir / "missing.txt"), "--key", key)

    res = cli(lab, *base, "--obligation", "demo-notify")
    assert res.code == 0, res.err
    (n,) = lab.state().notifications
    assert n.predicate.obligation_id == "demo-notify"
    assert n.predicate.recipient == "demo regulator"
    assert n.predicate.content_digest == hashlib.sha256(notice.read_bytes()).hexdigest()
    assert lab.state().find(n.predicate.obligation).predicate.obligations[0].id == "demo-notify"
    assert "already met by notification" in refused(lab, *base, "--obligation", "demo-notify")
    status = json.loads(cli(lab, "run", "status", "run-1", "--json").out)
    assert status["obligations"] == []
    assert "obligations: none open" in real(lab, "run", "status", "run-1").stdout


def test_an_obligation_shows_its_time_left(lab: Lab, tmp_path: Path) -> None:
    from scalegate.cli._runs_view import time_left

    assert time_left(timedelta(days=13, hours=23, minutes=59)) == "13d 23h"
    assert time_left(timedelta(hours=5, minutes=12, seconds=30)) == "5h 12min"
    assert time_left(timedelta(minutes=42)) == "42min"
    assert time_left(timedelta(seconds=-5)) == "0min"
