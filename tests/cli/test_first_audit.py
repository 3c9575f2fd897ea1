"""Getting to a first clean audit without surprises: plain CLI commands leave the log
checkpointed, `scalegate trust init` writes the trust file `scalegate verify` reads, the
auditor's default state path is said when first used, and the README's ledger walkthrough
reaches a clean audit exactly as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from scalegate.audit.trust import load_trust
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import (
    ComputePredicate,
    PolicyRef,
    Ref,
    RunPredicate,
    sign_statement,
)
from scalegate.policy import load_policy

BIN = Path(sys.executable).parent
SCALEGATE = str(BIN / "scalegate")
REPO = Path(__file__).resolve().parents[2]
ORIGIN = "example.org/first-audit"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """The installed console script in a subprocess (its own process, as a user runs it)."""
    return subprocess.run([SCALEGATE, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=120)


def ok(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    res = run(*args, cwd=cwd, env=env)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """Keys, a ledger, two registered keys and a published policy: CLI commands only, none
    of them `ledger checkpoint`."""
    for name, out in [(ORIGIN, "log.key"), ("acme/root", "root.key"),
                      ("acme/trainer", "trainer.key"), ("acme/rso", "rso.key")]:
        vkey = ok("keys", "new", name, "--out", out, cwd=tmp_path).strip().splitlines()[-1]
        (tmp_path / out.replace(".key", ".pub")).write_text(vkey + "\n")
    ok("ledger", "init", "lab.db", "--origin", ORIGIN, "--log-key", "log.key", "--org-root",
       "root.pub", cwd=tmp_path)
    for who in ("trainer", "rso"):
        ok("ledger", "register-key", "--root-key", "root.key", "--vkey", f"{who}.pub",
           "--roles", who, "--ledger", "lab.db", cwd=tmp_path)
    ok("policy", "publish", "demo", "--key", "rso.key", "--ledger", "lab.db", cwd=tmp_path)
    return tmp_path


def _run_envelopes(lab: Path) -> list[Path]:
    """A run registered under the published policy, and its first compute: envelopes the
    trainer signed elsewhere, for `ledger append`."""
    trainer = SigningKey.load(lab / "trainer.key")
    policy = load_policy("demo")
    with Ledger.open(lab / "lab.db") as led:
        published = led.entries(kind="policy")[0]
    now = datetime.now(UTC)
    run = RunPredicate(run_id="run-1", org="acme", model="tiny", started_at=now,
                       policy=PolicyRef(id=policy.id, version=policy.version,
                                        digest=policy.digest(),
                                        ref=Ref(index=published.index,
                                                leaf_hash=published.leaf_hash.hex())))
    compute = ComputePredicate(run_id="run-1", step=1, tokens=10.0,
                               flop_by_phase={"pretraining": 1e3}, effective_flop=1e3,
                               method="declared", at=now)
    out = []
    for name, pred in [("run.json", run), ("compute.json", compute)]:
        (lab / name).write_bytes(sign_statement(pred, trainer).to_bytes())
        out.append(lab / name)
    return out


def test_plain_cli_commands_leave_the_log_ready_for_a_clean_audit(lab: Path) -> None:
    ok("ledger", "append", *map(str, _run_envelopes(lab)), "--ledger", "lab.db", cwd=lab)
    with Ledger.open(lab / "lab.db") as led:
        assert [s for s, _ in led.checkpoints()][-1] == led.size == 5
    ok("trust", "init", "--ledger", "lab.db", "--org-root", "root.pub", "--role",
       "policy=rso", "--role", "run,compute=trainer", cwd=lab)
    (lab / "trust.yaml").write_text(ok("trust", "init", "--ledger", "lab.db", "--org-root",
                                       "root.pub", "--role", "policy=rso", cwd=lab))
    res = run("verify", "--ledger", "lab.db", "--trust", "trust.yaml", "--state", "a.json",
              "--json", cwd=lab)
    report = json.loads(res.stdout)
    assert res.returncode == 0, report["checks"]
    assert report["checkpoint"]["size"] == 5 and report["runs"][0]["replayed"]


def test_trust_init_round_trips_into_verify_with_a_witness(lab: Path) -> None:
    ok("keys", "new", "witness.example/w1", "--out", "w1.key", cwd=lab)
    (lab / "w1.pub").write_text(ok("witness", "init", "--key", "w1.key", "--log", "log.pub",
                                   "--state", "w1.json", cwd=lab))
    trust = ok("trust", "init", "--ledger", "lab.db", "--org-root", "root.pub", "--witness",
               "w1.pub", "--role", "policy=rso,board", cwd=lab)
    (lab / "trust.yaml").write_text(trust)
    loaded = load_trust(lab / "trust.yaml")
    log_vkey = (lab / "log.pub").read_text().strip()
    assert loaded.origin == ORIGIN and loaded.log_verifier.text() == log_vkey
    assert [w.name for w in loaded.witness_verifiers] == ["witness.example/w1"]
    assert loaded.quorum == 1 and loaded.allowed_roles("policy") == {"rso", "board"}
    assert [k.text() for k in loaded.roots] == [(lab / "root.pub").read_text().strip()]
    assert yaml.safe_load(trust) == yaml.safe_load(loaded.to_yaml())  # the comments aside
    # Not yet cosigned: the audit cannot anchor the log (exit 4), and says why.
    early = run("verify", "--ledger", "lab.db", "--trust", "trust.yaml", "--no-state", cwd=lab)
    assert early.returncode == 4 and "no checkpoint carries 1 of 1" in " ".join(
        early.stdout.split())
    ok("witness", "cosign", "--ledger", "lab.db", "--state", "w1.json", cwd=lab)
    res = run("verify", "--ledger", "lab.db", "--trust", "trust.yaml", "--state", "a.json",
              cwd=lab)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "nothing violated" in res.stdout
    # The same key given as the operator publishes it is accepted; another is refused.
    ok("trust", "init", "--ledger", "lab.db", "--org-root", "root.pub", "--log", "log.pub",
       cwd=lab)
    wrong = run("trust", "init", "--ledger", "lab.db", "--org-root", "root.pub", "--log",
                "rso.pub", cwd=lab)
    assert wrong.returncode != 0 and "is not the key ledger" in wrong.stderr, wrong.stderr


@pytest.mark.parametrize(("args", "said"), [
    (["--org-root", "root.pub", "--witness", "nonsense"], "--witness 'nonsense'"),
    (["--org-root", "root.pub", "--witness", "w.pub", "--quorum", "2"],
     "a quorum of 2 is impossible with 1 witness"),
    (["--org-root", "root.pub", "--role", "decision"], "is not KIND=ROLE"),
    (["--org-root", "root.pub", "--role", "pause-everything=rso"], "unknown statement kind"),
    (["--org-root", "not-a-key"], "--org-root"),
    (["--org-root", "root.pub", "--ledger", "missing.db"], "missing.db"),
])
def test_trust_init_refuses_mistakes_clearly(lab: Path, args: list[str], said: str) -> None:
    ok("keys", "new", "witness.example/w", "--out", "w.key", cwd=lab)
    (lab / "w.pub").write_text(ok("witness", "init", "--key", "w.key", "--log", "log.pub",
                                  "--state", "w.json", cwd=lab))
    res = run("trust", "init", *(["--ledger", "lab.db"] if "--ledger" not in args else []),
              *args, cwd=lab)
    assert res.returncode != 0 and not res.stdout, res.stdout
    assert said in " ".join(res.stderr.split()) and "Traceback" not in res.stderr, res.stderr


def test_the_default_state_path_is_said_when_first_used(lab: Path) -> None:
    (lab / "trust.yaml").write_text(ok("trust", "init", "--ledger", "lab.db", "--org-root",
                                       "root.pub", cwd=lab))
    env = {"XDG_STATE_HOME": str(lab / "xdg")}
    state = lab / "xdg" / "scalegate" / "auditor.json"
    first = run("verify", "--ledger", "lab.db", "--trust", "trust.yaml", cwd=lab, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    said = " ".join(first.stderr.split())
    assert f"auditor state: recording the checkpoints this audit accepts in {state}" in said
    assert "--state FILE" in said and state.is_file()
    again = run("verify", "--ledger", "lab.db", "--trust", "trust.yaml", cwd=lab, env=env)
    assert again.returncode == 0 and "auditor state:" not in again.stderr
    chosen = run("verify", "--ledger", "lab.db", "--trust", "trust.yaml", "--state", "mine.json",
                 cwd=lab, env={"XDG_STATE_HOME": str(lab / "xdg2")})
    assert chosen.returncode == 0 and "auditor state:" not in chosen.stderr
    assert (lab / "mine.json").is_file() and not (lab / "xdg2").exists()


def _readme_block(title: str) -> str:
    section = (REPO / "README.md").read_text().split(title, 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, f"README section {title!r} has no sh block"
    return block.group(1)


def test_the_readme_ledger_walkthrough_reaches_a_clean_audit_as_written(tmp_path: Path) -> None:
    script = _readme_block("## The ledger\n")
    assert "scalegate verify" in script and "--state" in script
    assert "ledger checkpoint" not in script, "the walkthrough needs no manual checkpoint"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "XDG_STATE_HOME": str(tmp_path / "xdg")}
    env.pop("SCALEGATE_LEDGER", None)
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "nothing violated" in res.stdout
    trust = load_trust(tmp_path / "trust.yaml")
    assert trust.quorum == 1 and (tmp_path / "auditor.json").is_file()
    assert not (tmp_path / "xdg").exists(), "the walkthrough names its state file"


def test_every_audit_example_in_the_readme_names_its_state_file() -> None:
    for line in (REPO / "README.md").read_text().splitlines():
        if re.match(r"\s*scalegate verify\b", line):
            assert "--state" in line, line
