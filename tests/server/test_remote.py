"""A served log used as a ledger: the supervisor and the officers write to it over HTTP,
`runs`, `run status` and `verify` read it through a verified mirror, `ledger sync` keeps a
mirror an auditor can take offline, and a log that shows another history is caught."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scalegate.demo.workspace import create_workspace
from scalegate.errors import AppendRefused, LedgerError, ProofError
from scalegate.evals import Probe, Suite
from scalegate.ledger import (
    ComputePredicate,
    Ledger,
    RemoteLedger,
    SigningKey,
    SplitView,
    sign_statement,
    sync_mirror,
)
from scalegate.policy import load_policy
from scalegate.runs import load_state
from scalegate.server import publish_tiles
from scalegate.supervisor import Supervisor

from .conftest import T0, make_lab
from .serving import SCALEGATE, serving

pytestmark = pytest.mark.slow
DEMO = load_policy("demo")
assert DEMO.evaluation is not None and DEMO.evaluation.first_at is not None
STEP_FLOP = DEMO.evaluation.first_at / 10


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([SCALEGATE, *args], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "COLUMNS": "200", **(env or {})})
    assert "Traceback" not in res.stderr, res.stderr
    return res


def ok(*args: str) -> str:
    res = run(*args)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


def _probe(model: object, ctx: object) -> tuple[float, float, int]:
    flop = ctx.effective_flop  # type: ignore[attr-defined]
    return (min(1.0, (flop / DEMO.evaluation.first_at) ** 0.5 / 9.8), 0.01, 100)  # type: ignore[union-attr]


def _supervisor(ledger: Ledger, key: SigningKey, tmp: Path) -> Supervisor:
    def save(step: int) -> Path:
        path = tmp / f"ckpt-{step}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "weights.bin").write_bytes(f"weights at {step}".encode())
        return path

    return Supervisor.open(
        "run-1", DEMO, ledger, key,
        evaluator=Suite([Probe("cyber-demo-task", "cyber-demo", "accuracy", _probe)]),
        save_checkpoint=save, checkpoint_dir=tmp / "ck", compute_every=5,
        check_interval=1e9, model_name="tiny-demo", clock=lambda: datetime.now(UTC))


def test_a_run_paused_and_resumed_entirely_over_http(tmp_path: Path) -> None:
    ws = create_workspace(tmp_path / "ws")
    ws.close()
    keys = tmp_path / "ws" / "keys"
    with serving(ws.ledger_path, "--checkpoint-interval", "5s") as (url, _):
        assert "published demo" in ok("policy", "publish", "demo", "--key",
                                      str(keys / "rso.key"), "--ledger", url)
        led = Ledger.open(url)
        assert isinstance(led, RemoteLedger) and led.path == url
        sup = _supervisor(led, ws.key("trainer"), tmp_path)
        for _ in range(2000):
            if sup.step(tokens=1000, flop=STEP_FLOP).verdict == "pause":
                break
        else:
            raise AssertionError("the run never paused")
        assert load_state(led, "run-1").active_pause is not None
        led.close()

        status = ok("run", "status", "run-1", "--ledger", url)
        assert "paused since entry" in status and "security-level-demo" in status
        assert "run-1" in ok("runs", "--ledger", url)
        refused = run("resume", "run-1", "--key", str(keys / "trainer.key"), "--ledger", url)
        assert refused.returncode == 1 and "board" in refused.stderr
        ok("attest", "security-level-demo", "--key", str(keys / "ciso.key"), "--ledger", url)
        ok("approve", "run-1", "--key", str(keys / "rso.key"), "-m", "verified", "--ledger", url)
        assert "may resume now" in ok("approve", "run-1", "--key", str(keys / "board.key"),
                                      "-m", "agreed", "--ledger", url)
        ok("resume", "run-1", "--key", str(keys / "trainer.key"), "--ledger", url)

        with Ledger.open(url) as again:
            state = load_state(again, "run-1")
            assert state.active_pause is None and len(state.resumes) == 1
            size = again.size
        with Ledger.open(ws.ledger_path) as local:  # the log itself holds the same entries
            assert local.size >= size and local.root(size) == again_root(url, size)

        audit = run("verify", "--ledger", url, "--trust", str(tmp_path / "ws" / "trust.yaml"),
                    "--no-state")
        assert audit.returncode == 0, audit.stdout + audit.stderr
        mirror = tmp_path / "auditor.db"
        out = ok("ledger", "sync", url, str(mirror), "--log-key", ws.log_key.vkey.text())
        assert f"{size:,} in all" in out
    # The log is gone; the auditor's mirror is audited offline, with the same verdict.
    offline = run("verify", "--ledger", str(mirror), "--trust",
                  str(tmp_path / "ws" / "trust.yaml"), "--no-state")
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert run("ledger", "verify", "--ledger", str(mirror)).returncode in (0, 5)


def again_root(url: str, size: int) -> bytes:
    with Ledger.open(url) as led:
        return led.root(size)


def test_a_mirror_grows_incrementally_and_refuses_appends(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 300)
    site = tmp_path / "site"
    publish_tiles(lab.ledger, site)
    first = sync_mirror(str(site), tmp_path / "m.db", log_key=lab.log_key.vkey)
    assert (first.created, first.added, first.key_from_log) == (True, 300, False)
    lab.fill(700)
    publish_tiles(lab.ledger, site)
    second = sync_mirror(str(site), tmp_path / "m.db")
    assert (second.before, second.added) == (300, 400)
    assert sync_mirror(str(site), tmp_path / "m.db").added == 0
    with Ledger.open(tmp_path / "m.db") as m:
        assert m.root() == lab.ledger.root() and m.verify().problems == []
        assert all(e.appended_at is None for e in m.entries(0, limit=50))
        assert [e.signer for e in m.entries(0)] == [e.signer for e in lab.ledger.entries(0)]
        with pytest.raises(LedgerError, match="mirrors"):
            m.append(sign_statement(ComputePredicate(
                run_id="run-1", step=1, tokens=1.0, flop_by_phase={"pretraining": 1.0},
                effective_flop=1.0, method="6ND", at=T0), lab.trainer))
    (tmp_path / "other").mkdir()
    other = make_lab(tmp_path / "other", 10)
    publish_tiles(other.ledger, tmp_path / "other-site")
    with pytest.raises(LedgerError, match="follows"):
        sync_mirror(str(tmp_path / "other-site"), tmp_path / "m.db")
    lab.ledger.close()
    other.ledger.close()


def test_a_log_that_rewrites_its_history_is_a_split_view_with_evidence(
        tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 600)
    lab.ledger.close()
    shutil.copy(lab.path, tmp_path / "fork.db")
    site = tmp_path / "site"
    with Ledger.open(lab.path) as led:
        publish_tiles(led, site)
    ok("ledger", "sync", str(site), str(tmp_path / "m.db"))
    # The fork: the same first 590 entries, then others, signed by the same log key.
    con = sqlite3.connect(tmp_path / "fork.db")
    con.execute("DELETE FROM entries WHERE idx >= 590")
    con.execute("DELETE FROM nodes")
    con.execute("DELETE FROM checkpoints")
    con.execute("DELETE FROM statements WHERE idx >= 590")
    con.commit()
    con.close()
    _rebuild_nodes(tmp_path / "fork.db")
    with Ledger.open(tmp_path / "fork.db", log_key=lab.log_key) as fork:
        for i in range(20):
            fork.append(sign_statement(ComputePredicate(
                run_id="run-1", step=10_000 + i, tokens=1.0, flop_by_phase={"pretraining": 1.0},
                effective_flop=1.0, method="6ND", at=T0), lab.trainer))
        fork.checkpoint()
        shutil.rmtree(site)
        publish_tiles(fork, site)
    res = subprocess.run([SCALEGATE, "ledger", "sync", str(site), str(tmp_path / "m.db")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode != 0 and "split view" in res.stderr and "Traceback" not in res.stderr
    (evidence,) = tmp_path.glob("split-view-*.txt")
    text = evidence.read_text()
    assert "first differing entry: 590" in text and text.count("— " + lab.log_key.name) >= 2
    with Ledger.open(tmp_path / "m.db") as m:
        assert m.size == 600  # nothing of the other history was written


def _rebuild_nodes(db: Path) -> None:
    """Recompute the interior nodes of a ledger whose tail was cut (a fork's start)."""
    from scalegate.ledger import merkle
    from scalegate.ledger.merkle import CompactRange

    con = sqlite3.connect(db)
    leaves = [r[0] for r in con.execute("SELECT leaf_hash FROM entries ORDER BY idx")]
    compact = CompactRange()
    for leaf in leaves:
        for level, idx, h in compact.append(leaf)[1:]:
            con.execute("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)", (level, idx, h))
    con.commit()
    con.close()
    assert merkle.root(leaves) == compact.root()


def test_a_stale_checkpoint_is_said_and_wrong_tiles_are_refused(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 300)
    old = tmp_path / "old"
    publish_tiles(lab.ledger, old)
    lab.fill(400)
    site = tmp_path / "site"
    publish_tiles(lab.ledger, site)
    sync_mirror(str(site), tmp_path / "m.db")
    shutil.copy(old / "checkpoint", site / "checkpoint")  # a rollback to size 300
    stale = sync_mirror(str(site), tmp_path / "m.db")
    assert stale.stale and stale.size == 400 and stale.added == 0
    lab.fill(500)
    publish_tiles(lab.ledger, site)
    tile = site / "tile" / "0" / "001.p" / "244"
    tile.write_bytes(bytes(32) + tile.read_bytes()[32:])  # one hash changed, tree's right edge
    with pytest.raises(ProofError) as caught:
        sync_mirror(str(site), tmp_path / "m.db")
    assert not isinstance(caught.value, SplitView)
    with Ledger.open(tmp_path / "m.db") as m:
        assert m.size == 400
    lab.ledger.close()


def test_a_sync_killed_mid_copy_loses_nothing_and_resumes(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 30_000)
    site = tmp_path / "site"
    publish_tiles(lab.ledger, site)
    mirror = tmp_path / "m.db"
    killed_at = []
    for delay in (0.8, 1.2, 1.6):
        proc = subprocess.Popen([SCALEGATE, "ledger", "sync", str(site), str(mirror)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if mirror.exists():
            with Ledger.open(mirror) as m:
                killed_at.append(m.size)
                assert m.verify().tree_ok
    out = ok("ledger", "sync", str(site), str(mirror))
    assert "30,000 in all" in out
    assert any(0 < k < 30_000 for k in killed_at), killed_at  # at least one died mid-copy
    with Ledger.open(mirror) as m:
        assert m.root() == lab.ledger.root() and m.verify().problems == []
    lab.ledger.close()


def test_an_entry_without_a_time_outside_a_mirror_is_a_finding(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 10)
    lab.ledger.close()
    con = sqlite3.connect(lab.path)
    con.execute("UPDATE entries SET appended_at = NULL WHERE idx = 3")
    con.commit()
    con.close()
    res = run("ledger", "verify", "--ledger", str(lab.path))
    assert res.returncode != 0 and "no appended_at" in res.stdout + res.stderr


def test_a_refused_submission_says_where_the_batch_stopped(tmp_path: Path) -> None:
    ws = create_workspace(tmp_path / "ws")
    ws.close()
    stranger = SigningKey.generate("demo-lab/stranger")
    good = sign_statement(ComputePredicate(
        run_id="r", step=1, tokens=1.0, flop_by_phase={"pretraining": 1.0},
        effective_flop=1.0, method="6ND", at=datetime.now(UTC)), ws.key("trainer"))
    bad = sign_statement(ComputePredicate(
        run_id="r", step=2, tokens=1.0, flop_by_phase={"pretraining": 1.0},
        effective_flop=1.0, method="6ND", at=datetime.now(UTC)), stranger)
    with serving(ws.ledger_path) as (url, _), Ledger.open(url) as led:
        before = led.size
        with pytest.raises(AppendRefused) as caught:
            led.append_many([good, bad])
        assert caught.value.position == 1
        led.refresh()
        assert led.size == before + 1  # the first stays logged: over HTTP each is its own


def test_two_syncs_of_one_mirror_at_once_both_succeed(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 20_000)
    site = tmp_path / "site"
    publish_tiles(lab.ledger, site)
    procs = [subprocess.Popen([SCALEGATE, "ledger", "sync", str(site), str(tmp_path / "m.db")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs  # one made it, the other followed
    assert ok("ledger", "sync", str(site), str(tmp_path / "m.db")).count("20,000 in all") == 1
    with Ledger.open(tmp_path / "m.db") as m:
        assert m.root() == lab.ledger.root() and m.verify().problems == []
    lab.ledger.close()
