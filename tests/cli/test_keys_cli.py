"""`scalegate keys ...`: key files with mode 0600, verifier key on the last line, clear refusals."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalegate.cli import app
from scalegate.ledger.keys import SigningKey, VerifierKey

SCALEGATE = str(Path(sys.executable).with_name("scalegate"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real console script, as a user runs it."""
    return subprocess.run([SCALEGATE, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_keys_new_writes_a_0600_key_and_prints_the_verifier_key_last(tmp_path: Path) -> None:
    out = tmp_path / "trainer.key"
    res = run("keys", "new", "acme/trainer", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    vkey = VerifierKey.parse(res.stdout.strip().splitlines()[-1])
    assert vkey.name == "acme/trainer"
    assert SigningKey.load(out).vkey == vkey


def test_keys_new_defaults_to_a_file_named_after_the_key(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["keys", "new", "acme/rso"])
    assert res.exit_code == 0, res.output
    key = SigningKey.load(tmp_path / "acme-rso.key")
    assert res.stdout.strip().splitlines()[-1] == key.vkey.text()
    shown = CliRunner().invoke(app, ["keys", "show", "acme-rso.key"])
    assert shown.stdout.strip() == key.vkey.text()


def test_keys_new_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "k.key"
    assert run("keys", "new", "acme/a", "--out", str(out)).returncode == 0
    before = out.read_bytes()
    res = run("keys", "new", "acme/b", "--out", str(out))
    assert res.returncode != 0
    assert "already exists" in res.stderr and "Traceback" not in res.stderr
    # The CLI user is told the flag, not the library's argument.
    err = " ".join(res.stderr.split())
    assert "pass --overwrite" in err and "overwrite=True" not in err
    assert "refusing to overwrite it. Choose another path with --out" in err
    assert out.read_bytes() == before
    res = run("keys", "new", "acme/b", "--out", str(out), "--overwrite")
    assert res.returncode == 0, res.stderr
    assert SigningKey.load(out).name == "acme/b"


def test_keys_new_refuses_a_directory_as_out(tmp_path: Path) -> None:
    res = run("keys", "new", "acme/a", "--out", str(tmp_path))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    err = " ".join(res.stderr.split())
    assert f"{tmp_path} is a directory, not a key file" in err
    assert f"--out {tmp_path / 'acme-a.key'}" in err
    assert list(tmp_path.iterdir()) == []


def test_keys_new_refuses_a_bad_name(tmp_path: Path) -> None:
    res = run("keys", "new", "acme/has space", "--out", str(tmp_path / "k.key"))
    assert res.returncode != 0 and "contains ' '" in res.stderr
    assert not (tmp_path / "k.key").exists()


def test_a_key_file_with_loose_permissions_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "k.key"
    SigningKey.generate("acme/a").save(out)
    os.chmod(out, 0o644)
    res = run("keys", "show", str(out))
    assert res.returncode != 0
    assert "mode 0644" in res.stderr and "chmod 600" in res.stderr
    assert "Traceback" not in res.stderr


def test_keys_show_of_a_verifier_key_file_prints_that_key(tmp_path: Path) -> None:
    """A .pub file (mode 0644, as `create_workspace` writes them) is not a leaked private key:
    `keys show` prints the verifier key it holds, with a note on standard error."""
    key = SigningKey.generate("acme/rso")
    key.save(tmp_path / "rso.key")
    pub = tmp_path / "rso.pub"
    pub.write_text(key.vkey.text() + "\n")
    os.chmod(pub, 0o644)
    res = run("keys", "show", str(pub))
    assert res.returncode == 0, res.stderr
    assert res.stdout == key.vkey.text() + "\n"
    assert "verifier (public) key file" in res.stderr
    assert "chmod" not in res.stderr and "leaked" not in res.stderr
    assert run("keys", "show", str(tmp_path / "rso.key")).stdout == res.stdout


def test_a_verifier_key_file_given_as_a_signing_key_is_named(tmp_path: Path) -> None:
    """Where a private key is needed (here `policy publish --key`), a .pub file is refused
    with what it is and which file to give instead, not with 'chmod 600'."""
    key = SigningKey.generate("acme/rso")
    key.save(tmp_path / "rso.key")
    pub = tmp_path / "rso.pub"
    pub.write_text(key.vkey.text() + "\n")
    os.chmod(pub, 0o644)
    res = run("policy", "publish", "demo", "--key", str(pub), "--ledger",
              str(tmp_path / "ledger.db"))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    err = " ".join(res.stderr.split())
    assert f"key file {pub} holds the verifier (public) key {key.vkey.keyid}" in err
    assert f"Use the private key file {tmp_path / 'rso.key'} instead" in err
    assert "chmod" not in err
    assert not (tmp_path / "ledger.db").exists()
