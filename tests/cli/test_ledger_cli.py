"""`scalegate ledger ...` end to end: init, register-key, append, checkpoint, show, prove, verify,
and every kind of bad input refused with a clear message, a non-zero exit and nothing written."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalegate.cli import app
from scalegate.errors import ScalegateError
from scalegate.ledger.checkpoint import open_checkpoint
from scalegate.ledger.keys import SigningKey, VerifierKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import ComputePredicate, sign_statement
from scalegate.ledger.tlog_proof import verify_receipt

SCALEGATE = str(Path(sys.executable).with_name("scalegate"))
ORIGIN = "example.org/cli-test"


def real(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script."""
    return subprocess.run([SCALEGATE, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=120)


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(*args: str) -> Result:
    """In-process run that turns ScalegateError into message + exit code, as `main` does."""
    res = CliRunner().invoke(app, list(args))
    if isinstance(res.exception, ScalegateError):
        return Result(res.exception.exit_code, res.stdout, str(res.exception))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return Result(res.exit_code, res.stdout, res.stderr)


@dataclass
class Lab:
    dir: Path
    db: Path
    log_vkey: VerifierKey
    trainer: SigningKey

    def envelope(self, step: int, key: SigningKey | None = None, name: str = "") -> Path:
        pred = ComputePredicate(run_id="run-1", step=step, tokens=1.0, effective_flop=1.0,
                                flop_by_phase={"pretraining": 1.0}, method="6ND",
                                at=datetime(2026, 1, 1, tzinfo=UTC))
        path = self.dir / (name or f"env-{step}.json")
        path.write_bytes(sign_statement(pred, key or self.trainer).to_bytes())
        return path

    def size(self) -> int:
        with Ledger.open(self.db) as led:
            return led.size


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    """A ledger made through the CLI: keys new (log, root, trainer), init, register-key."""

    def go(*args: str) -> str:
        r = cli(*args)
        assert r.code == 0, r.err
        return r.out

    for name, out in [(ORIGIN, "log.key"), ("acme/root", "root.key"), ("acme/trainer", "t.key")]:
        vkey = go("keys", "new", name, "--out", str(tmp_path / out)).strip().splitlines()[-1]
        (tmp_path / (out + ".pub")).write_text(vkey + "\n")
    log_vkey = go("ledger", "init", str(tmp_path / "lab.db"), "--origin", ORIGIN, "--log-key",
                  str(tmp_path / "log.key"), "--org-root",
                  (tmp_path / "root.key.pub").read_text().strip()).strip().splitlines()[-1]
    out = go("ledger", "register-key", "--root-key", str(tmp_path / "root.key"), "--vkey",
             str(tmp_path / "t.key.pub"), "--roles", "trainer,evaluator", "--valid-until", "365d",
             "--ledger", str(tmp_path / "lab.db"))
    assert "entry 0" in out
    return Lab(tmp_path, tmp_path / "lab.db", VerifierKey.parse(log_vkey),
               SigningKey.load(tmp_path / "t.key"))


def test_the_whole_tour_through_the_console_script(lab: Lab) -> None:
    env = {"SCALEGATE_LEDGER": str(lab.db)}
    files = [lab.envelope(i) for i in range(3)]
    res = real("ledger", "append", *map(str, files), cwd=lab.dir, env=env)
    assert res.returncode == 0, res.stderr
    assert "entry 1" in res.stdout and "entry 3" in res.stdout

    note = real("ledger", "checkpoint", cwd=lab.dir, env=env)
    assert note.returncode == 0, note.stderr
    cp, _ = open_checkpoint(note.stdout, lab.log_vkey, origin=ORIGIN)
    assert cp.size == 4

    receipt = real("ledger", "prove", "2", cwd=lab.dir, env=env)
    assert receipt.returncode == 0, receipt.stderr
    verify_receipt(receipt.stdout, files[1].read_bytes(), lab.log_vkey, origin=ORIGIN)

    shown = real("ledger", "show", "--json", "--kind", "compute", cwd=lab.dir, env=env)
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [r["index"] for r in rows] == [1, 2, 3]
    assert rows[0]["statement"]["predicate"]["step"] == 0
    assert rows[0]["signer"] == lab.trainer.vkey.keyid

    ok = real("ledger", "verify", "--full", cwd=lab.dir, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ledger verifies" in ok.stdout and "4 entries" in ok.stdout


def test_ledger_path_defaults_to_scalegate_db_in_the_working_directory(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCALEGATE_LEDGER", raising=False)
    monkeypatch.chdir(lab.dir)
    lab.db.rename(lab.dir / "scalegate.db")
    for suffix in ("-wal", "-shm"):
        if Path(f"{lab.db}{suffix}").exists():
            Path(f"{lab.db}{suffix}").rename(lab.dir / f"scalegate.db{suffix}")
    res = cli("ledger", "show")
    assert res.code == 0 and "1 of 1 entries" in " ".join(res.out.split())


def test_show_table_filters_by_kind_and_run(lab: Lab) -> None:
    cli("ledger", "append", str(lab.envelope(1)), "--ledger", str(lab.db))
    res = cli("ledger", "show", "--ledger", str(lab.db), "--run", "run-1")
    assert res.code == 0
    assert "compute" in res.out and "1 of 2 entries" in " ".join(res.out.split())
    res = cli("ledger", "show", "--ledger", str(lab.db), "--kind", "key")
    assert "key" in res.out and "1 of 2 entries" in " ".join(res.out.split())
    # A mistyped kind or run is an error naming the real ones, not an empty table.
    res = cli("ledger", "show", "--ledger", str(lab.db), "--kind", "computes")
    assert res.code != 0 and "'computes' is no statement kind" in res.err
    assert "compute" in res.err and "approval" in res.err
    res = cli("ledger", "show", "--ledger", str(lab.db), "--run", "run-2")
    assert res.code != 0 and "no entry" in res.err and "concerns run 'run-2'" in res.err


def test_verify_exits_non_zero_on_a_tampered_ledger(lab: Lab) -> None:
    cli("ledger", "append", str(lab.envelope(1)), str(lab.envelope(2)), "--ledger", str(lab.db))
    con = sqlite3.connect(lab.db)
    con.execute("UPDATE entries SET data = replace(data, 'e', 'f') WHERE idx = 2")
    con.commit()
    con.close()
    res = real("ledger", "verify", "--ledger", str(lab.db), cwd=lab.dir)
    assert res.returncode == 1
    assert "entry 2" in res.stderr and "problem(s)" in res.stdout
    js = cli("ledger", "verify", "--json", "--ledger", str(lab.db))
    assert js.code == 1 and json.loads(js.out)["ok"] is False


# --- bad input: a clear message, a non-zero exit, nothing written ---------------------------


def _refused(lab: Lab, args: list[str], message: str, *, via_script: bool = False) -> None:
    before = lab.size()
    if via_script:
        res = real(*args, cwd=lab.dir)
        code, err = res.returncode, res.stderr
        assert "Traceback" not in err
        assert err.startswith("error:"), err
    else:
        r = cli(*args)
        code, err = r.code, r.err
    assert code != 0
    assert message in " ".join(err.split()), err
    assert lab.size() == before


def test_append_refuses_malformed_and_truncated_envelopes(lab: Lab) -> None:
    good = lab.envelope(1).read_bytes()
    (lab.dir / "trunc.json").write_bytes(good[: len(good) // 2])
    (lab.dir / "b64.json").write_bytes(good.replace(b'"payload":"', b'"payload":"@@'))
    _refused(lab, ["ledger", "append", "trunc.json", "--ledger", "lab.db"],
             "DSSE envelope is not valid JSON", via_script=True)
    _refused(lab, ["ledger", "append", str(lab.dir / "b64.json"), "--ledger", str(lab.db)],
             "not valid base64")
    _refused(lab, ["ledger", "append", str(lab.dir / "missing.json"), "--ledger", str(lab.db)],
             "cannot read envelope file")
    # A line of `ledger show --json` is an entry, not an envelope: said so, with the fix.
    line = cli("ledger", "show", "--json", "--ledger", str(lab.db)).out.splitlines()[0]
    (lab.dir / "line.json").write_text(line)
    _refused(lab, ["ledger", "append", str(lab.dir / "line.json"), "--ledger", str(lab.db)],
             'ledger show --json` prints it, not a DSSE envelope: the envelope is its "envelope"')


def test_append_refuses_wrong_signature_and_unknown_key(lab: Lab) -> None:
    env = json.loads(lab.envelope(1).read_bytes())
    other = json.loads(lab.envelope(2).read_bytes())
    env["signatures"] = other["signatures"]
    (lab.dir / "wrongsig.json").write_text(json.dumps(env))
    _refused(lab, ["ledger", "append", "wrongsig.json", "--ledger", "lab.db"],
             "does not verify", via_script=True)
    stranger = SigningKey.generate("acme/stranger")
    path = lab.envelope(3, key=stranger)
    _refused(lab, ["ledger", "append", str(path), "--ledger", str(lab.db)],
             "not a registered key")


def test_a_batch_with_one_bad_envelope_writes_nothing(lab: Lab) -> None:
    good = lab.envelope(1)
    bad = lab.envelope(2, key=SigningKey.generate("acme/stranger"), name="bad.json")
    _refused(lab, ["ledger", "append", str(good), str(bad), "--ledger", str(lab.db)],
             "envelope 1 of the batch")


def test_expired_and_revoked_keys_are_refused(lab: Lab) -> None:
    past = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = SigningKey.generate("acme/old")
    res = cli("ledger", "register-key", "--root-key", str(lab.dir / "root.key"), "--vkey",
              old.vkey.text(), "--roles", "trainer", "--valid-from", past, "--valid-until", "1d",
              "--ledger", str(lab.db))
    assert res.code == 0, res.err
    _refused(lab, ["ledger", "append", str(lab.envelope(1, key=old)), "--ledger", str(lab.db)],
             "expired at")
    res = cli("ledger", "revoke-key", "--root-key", str(lab.dir / "root.key"), "--vkey",
              str(lab.dir / "t.key.pub"), "--reason", "left the lab", "--ledger", str(lab.db))
    assert res.code == 0, res.err
    _refused(lab, ["ledger", "append", str(lab.envelope(2)), "--ledger", str(lab.db)],
             "was revoked")


def test_register_key_refusals(lab: Lab) -> None:
    other_root = SigningKey.generate("other/root")
    other_root.save(lab.dir / "other.key")
    _refused(lab, ["ledger", "register-key", "--root-key", str(lab.dir / "other.key"), "--vkey",
                   SigningKey.generate("other/x").vkey.text(), "--roles", "trainer",
                   "--ledger", str(lab.db)], "not an organisation root of this ledger")
    for roles in ([], ["--roles", ""], ["--roles", " , "]):
        _refused(lab, ["ledger", "register-key", "--root-key", str(lab.dir / "root.key"),
                       "--vkey", SigningKey.generate("acme/w").vkey.text(), *roles,
                       "--ledger", str(lab.db)], "--roles is missing or empty")
    _refused(lab, ["ledger", "register-key", "--root-key", str(lab.dir / "root.key"), "--vkey",
                   "acme/x+0000+garbage", "--ledger", str(lab.db)], "--vkey")
    _refused(lab, ["ledger", "register-key", "--root-key", str(lab.dir / "root.key"), "--vkey",
                   SigningKey.generate("acme/y").vkey.text(), "--valid-until", "someday",
                   "--roles", "trainer", "--ledger", str(lab.db)], "is neither an RFC 3339 time")
    os.chmod(lab.dir / "root.key", 0o640)
    _refused(lab, ["ledger", "register-key", "--root-key", "root.key", "--vkey",
                   SigningKey.generate("acme/z").vkey.text(), "--roles", "trainer",
                   "--ledger", "lab.db"], "has mode 0640", via_script=True)


def test_prove_refuses_an_index_out_of_range(lab: Lab) -> None:
    _refused(lab, ["ledger", "prove", "7", "--ledger", "lab.db"], "cannot prove entry 7",
             via_script=True)
    _refused(lab, ["ledger", "prove", "--ledger", str(lab.db), "--", "-1"], "cannot prove entry -1")


def test_damaged_and_missing_ledger_files_are_refused(lab: Lab, tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"not a database at all, just some bytes " * 50)
    res = real("ledger", "show", "--ledger", "junk.db", cwd=tmp_path)
    assert res.returncode != 0 and "not an SQLite database" in res.stderr
    r = cli("ledger", "verify", "--ledger", str(tmp_path / "nowhere.db"))
    assert r.code != 0 and "does not exist" in r.err
    assert not (tmp_path / "nowhere.db").exists()
    # Truncated: cut the ledger file in half after its WAL was folded in.
    with Ledger.open(lab.db) as led:
        led.append_many([sign_statement(ComputePredicate(
            run_id="r", step=i, tokens=1.0, effective_flop=1.0,
            flop_by_phase={"pretraining": 1.0}, method="6ND",
            at=datetime(2026, 1, 1, tzinfo=UTC)), lab.trainer) for i in range(120)])
    data = lab.db.read_bytes()
    lab.db.write_bytes(data[: len(data) // 2])
    r = cli("ledger", "verify", "--ledger", str(lab.db))
    assert r.code != 0 and "truncated" in r.err
    assert lab.db.stat().st_size == len(data) // 2


def test_init_refuses_an_existing_ledger_and_bad_roots(lab: Lab) -> None:
    res = cli("ledger", "init", str(lab.db), "--origin", ORIGIN, "--log-key",
              str(lab.dir / "log.key"), "--org-root", (lab.dir / "root.key.pub").read_text())
    assert res.code != 0 and "already exists" in res.err
    res = cli("ledger", "init", str(lab.dir / "new.db"), "--origin", ORIGIN, "--log-key",
              str(lab.dir / "log.key"), "--org-root", "not-a-key")
    assert res.code != 0 and "--org-root" in res.err
    assert not (lab.dir / "new.db").exists()


@pytest.mark.parametrize("args", [["runs"], ["run", "status", "r"], ["ledger", "verify"],
                                  ["ledger", "prove", "0"], ["verify", "--trust", "t.yaml"],
                                  ["attest", "sg", "--key", "k.key"], ["ledger", "sync"],
                                  ["serve"]])
def test_a_url_with_no_log_behind_it_is_a_message(args: list[str], tmp_path: Path) -> None:
    # Every --ledger takes a served log; nothing listens on port 9 of this machine.
    url = "http://127.0.0.1:9/"
    cmd = [*args, url, str(tmp_path / "m.db")] if args == ["ledger", "sync"] else \
        [*args, "--ledger", url]
    done = subprocess.run([SCALEGATE, *cmd], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    said = " ".join(done.stderr.split())
    assert any(m in said for m in ("cannot fetch http://127.0.0.1:9/", "t.yaml", "k.key",
                                   "served already")), said


def test_a_log_that_cannot_be_reached_is_a_message() -> None:
    # `ledger show` reads a served log through its tiles (tests/server); an address with
    # no log behind it (here: nothing listens on port 9 of this machine) is one line.
    done = subprocess.run([SCALEGATE, "ledger", "show", "--ledger", "http://127.0.0.1:9/"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "cannot fetch http://127.0.0.1:9/log.vkey" in " ".join(done.stderr.split())
