"""A ledger file edited by hand gives clear findings and messages, never a traceback: the
rows of issue 14 §4 (a naive or garbled ``appended_at``, a ``kind`` column that lies, the
``org_roots`` meta set to null, a damaged keys cache) through every command that reads them."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalegate.cli import app
from scalegate.errors import ScalegateError

sys.path.insert(0, str(Path(__file__).parents[1]))  # the audit tests' run world
from audit.runworld import RUN, World, new_world


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A paused run, witnessed: (ledger file, trust file, audit time)."""
    w: World = new_world(tmp_path_factory.mktemp("world"))
    w.train(lambda d: False)
    w.witness()
    trust, at = w.trust_file(), w.clock.t.isoformat()
    w.ledger.close()
    return w.ws.ledger_path, trust, at


def run(*args: str) -> tuple[int, str]:
    """Exit code and message of an in-process command; any other exception propagates."""
    res = CliRunner().invoke(app, list(args))
    if isinstance(res.exception, ScalegateError):
        return res.exception.exit_code, str(res.exception)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, " ".join((res.stdout + res.stderr).split())


def tampered(built: tuple[Path, Path, str], tmp_path: Path, sql: str) -> str:
    db = tmp_path / "copy.db"
    shutil.copy(built[0], db)
    con = sqlite3.connect(db)
    with con:
        con.execute(sql)
    con.close()
    return str(db)


CASES = [
    ("UPDATE entries SET appended_at = '2026-03-01T00:00:10' WHERE idx = 5",
     "entry 5", "appended_at '2026-03-01T00:00:10' is not an RFC 3339 time with a UTC offset"),
    ("UPDATE entries SET appended_at = 'not a date' WHERE idx = 5",
     "entry 5", "appended_at 'not a date' is not an RFC 3339 time"),
    ("UPDATE entries SET kind = 'key' WHERE idx = 5", "entry 5",
     "indexed kind/run (key, run-1) differ from the statement's (run, run-1)"),
    ("UPDATE entries SET kind = 'pause' WHERE idx = 5", "entry 5", "differ from the statement's"),
    ("UPDATE meta SET value = 'null' WHERE key = 'org_roots'", "damaged metadata",
     "org_roots is 'null', not a list of verifier keys"),
    ("UPDATE keys SET roles = 'null'", "keys table (registry cache) is damaged",
     "roles 'None' is not a list of names"),
    ("UPDATE keys SET valid_from = 'x'", "keys table (registry cache) is damaged",
     "'x' is not an RFC 3339 time"),
]


@pytest.mark.parametrize(("sql", "where", "what"), CASES, ids=[c[0][:48] for c in CASES])
def test_every_command_reports_a_tampered_row_clearly(
    built: tuple[Path, Path, str], tmp_path: Path, sql: str, where: str, what: str
) -> None:
    db = tampered(built, tmp_path, sql)
    code, out = run("ledger", "verify", "--ledger", db)
    assert code == 1 and where in out and what in out, out
    for cmd in (["ledger", "show"], ["ledger", "show", "--json"], ["run", "status", RUN],
                ["runs"]):
        code, out = run(*cmd, "--ledger", db)
        assert code in (0, 1), (cmd, out)
        if code:
            assert where in out and "Traceback" not in out, (cmd, out)
    code, out = run("verify", "--trust", str(built[1]), "--no-state", "--at", built[2],
                    "--ledger", db)
    assert code in (0, 3, 4), out


def test_the_untampered_copy_passes(built: tuple[Path, Path, str], tmp_path: Path) -> None:
    db = tampered(built, tmp_path, "SELECT 1")
    assert run("verify", "--trust", str(built[1]), "--no-state", "--at", built[2],
               "--ledger", db)[0] == 0
    assert run("ledger", "verify", "--ledger", db)[0] == 0
