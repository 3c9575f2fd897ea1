"""`ledger verify` and `run status` do not vouch for what no signed checkpoint covers: a
ledger without checkpoints, or whose checkpoints went missing, is *unverified* (exit 5), and
entries after the latest checkpoint are reported as an unverified tail."""

from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from tampering import delete_entries
from typer.testing import CliRunner

from scalegate.cli import app
from scalegate.errors import ScalegateError

sys.path.insert(0, str(Path(__file__).parents[1]))  # the audit tests' run world
from audit.runworld import RUN, World, new_world

EXIT_UNVERIFIED = 5


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(*args: str) -> Result:
    res = CliRunner().invoke(app, list(args))
    if isinstance(res.exception, ScalegateError):
        return Result(res.exception.exit_code, res.stdout, str(res.exception))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return Result(res.exit_code, res.stdout, res.stderr)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def paused(tmp_path: Path) -> World:
    """A run that paused itself (its last entry is the pause), the ledger closed cleanly."""
    w = new_world(tmp_path)
    w.train(lambda d: False)
    assert w.state().active_pause is not None
    return w


def _db(w: World, *, sign: bool = True) -> str:
    """Close the world's ledger (``sign=False``: without the checkpoint a writer holding
    the log key signs on closing)."""
    w.ledger.checkpoint_on_close = sign
    w.ledger.close()
    return str(w.ws.ledger_path)


def test_no_checkpoint_at_all_is_unverified(paused: World) -> None:
    """Written by keyless writers only (the log operator never signed)."""
    db = _db(paused)
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM checkpoints")
        con.execute("UPDATE meta SET value = '0' WHERE key = 'checkpoints_issued'")
    con.close()
    res = cli("ledger", "verify", "--ledger", db)
    assert res.code == EXIT_UNVERIFIED, res.out + res.err
    assert "no signed checkpoint covers any of its 33 entries" in flat(res.err)
    assert "ledger unverified" in flat(res.out) and "verifies" not in res.out
    js = json.loads(cli("ledger", "verify", "--json", "--ledger", db).out)
    assert js["ok"] is True and js["verified"] is False and js["unverified"]
    status = cli("run", "status", RUN, "--ledger", db)
    assert status.code == 0 and "ledger unverified" in flat(status.out)
    as_json = json.loads(cli("run", "status", RUN, "--json", "--ledger", db).out)
    assert as_json["ledger_unverified"]


def test_a_deleted_pause_with_its_checkpoints_is_unverified_not_running(paused: World) -> None:
    """The attack of issue 14 §3: delete the pause and the checkpoints, rebuild the tree."""
    pause = paused.state().active_pause
    assert pause is not None
    paused.ledger.checkpoint()
    db = _db(paused)
    assert cli("ledger", "verify", "--ledger", db).code == 0

    delete_entries(Path(db), [pause.index])
    res = cli("ledger", "verify", "--ledger", db)
    assert res.code == EXIT_UNVERIFIED, res.out + res.err
    assert "the log issued 1 checkpoint but 0 are stored: 1 went missing" in flat(res.err)
    # run status no longer shows the pause, but says first that nothing vouches for it.
    status = json.loads(cli("run", "status", RUN, "--json", "--ledger", db).out)
    assert status["summary"]["status"] == "running"
    assert any("went missing" in r for r in status["ledger_unverified"])
    shown = cli("run", "status", RUN, "--ledger", db).out
    assert flat(shown).startswith("ledger unverified: the log issued 1 checkpoint")
    runs = cli("runs", "--ledger", db)
    assert "went missing" in flat(runs.err)


def test_entries_after_the_latest_checkpoint_are_an_unverified_tail(paused: World) -> None:
    paused.ledger.checkpoint()
    covered = paused.ledger.size
    paused.more_compute(3)
    db = _db(paused, sign=False)
    res = cli("ledger", "verify", "--ledger", db)
    assert res.code == 0, res.out + res.err
    assert (f"entries {covered}..{covered + 2} (3 entries) after the latest checkpoint (size "
            f"{covered}) are an unverified tail") in flat(res.err)
    assert f"verifies up to size {covered}" in flat(res.out)
    strict = cli("ledger", "verify", "--strict", "--ledger", db)
    assert strict.code == EXIT_UNVERIFIED
    js = json.loads(cli("ledger", "verify", "--json", "--ledger", db).out)
    assert js["verified"] is True and js["checkpoints_issued"] == 1
    assert js["unverified_tail"] == {"first": covered, "last": covered + 2, "count": 3}
    status = json.loads(cli("run", "status", RUN, "--json", "--ledger", db).out)
    assert status["ledger_unverified"] == [] and status["unverified_entries"] == 3
    assert "3 of this run's entries come after the latest signed checkpoint" in flat(
        cli("run", "status", RUN, "--ledger", db).out)


def test_a_tail_entry_deleted_and_the_tree_rebuilt_stays_in_the_tail(paused: World) -> None:
    paused.ledger.checkpoint()
    covered = paused.ledger.size
    paused.more_compute(3)
    db = _db(paused, sign=False)
    delete_entries(Path(db), [covered + 1], checkpoints=False)
    res = cli("ledger", "verify", "--ledger", db)
    assert res.code == 0 and "2 entries" in flat(res.err) and "unverified tail" in res.err


def test_the_issued_count_missing_or_below_the_stored_checkpoints(paused: World) -> None:
    paused.ledger.checkpoint()
    paused.more_compute(1)
    paused.ledger.checkpoint()
    db = _db(paused)
    con = sqlite3.connect(db)
    with con:
        assert con.execute("SELECT value FROM meta WHERE key = 'checkpoints_issued'"
                           ).fetchone() == ("2",)
        con.execute("UPDATE meta SET value = '1' WHERE key = 'checkpoints_issued'")
    res = cli("ledger", "verify", "--ledger", db)
    assert res.code == 1 and "holds 2 checkpoints but the log meta records 1" in flat(res.err)
    with con:
        con.execute("DELETE FROM meta WHERE key = 'checkpoints_issued'")
    con.close()
    res = cli("ledger", "verify", "--ledger", db)
    assert res.code == EXIT_UNVERIFIED
    assert "does not record how many checkpoints were issued" in flat(res.err)
