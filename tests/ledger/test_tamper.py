"""Random edits of a real ledger's SQLite file: no command crashes on what it reads, and the
auditor either reports a finding or the edit touched only data the README names unsigned.

A real run (paused by its gate, then witnessed) is written once; each edit changes one
value, or deletes one row, of a random table of a *copy* of the file, and then runs
``ledger verify``, ``ledger show --json``, ``run status --json`` and ``scalegate verify``
with the auditor's trust file, in process. ``SCALEGATE_TAMPER_EDITS`` sets how many edits
(default 200), ``SCALEGATE_TAMPER_SEED`` the seed (default 14).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import sys
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scalegate.cli import app
from scalegate.errors import ScalegateError

sys.path.insert(0, str(Path(__file__).parents[1]))  # the audit tests' run world
from audit.runworld import RUN, World, new_world

EDITS = int(os.environ.get("SCALEGATE_TAMPER_EDITS", "200"))
SEED = int(os.environ.get("SCALEGATE_TAMPER_SEED", "14"))

#: What no signature covers and no audit relies on (README, "What the auditor relies on"):
#: the ledger's own caches and notes about itself. An edit here may pass the auditor; so may
#: deleting a checkpoint that a later (cosigned) one covers (`ledger verify` notices that).
UNSIGNED: dict[str, set[str] | None] = {
    "meta": None,  # every column: the auditor trusts its trust file, not the ledger's meta
    "keys": None,  # the registry cache: the auditor re-folds the key statements
    "statements": None,  # admission's digest index: the auditor finds duplicates in entries
    "timestamps": None,  # outside evidence, checked only against authorities it trusts
    "checkpoints": {"issued_at"},
    # The operator's word on when it logged the entry: the auditor bounds it by the
    # witnesses' cosignatures and keeps it in order, within the 5-minute clock skew.
    "entries": {"appended_at"},
}


@dataclass(frozen=True)
class Built:
    db: Path
    trust: Path
    at: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A run paused by its gate, checkpointed, a safeguard attested, witnessed: every table
    has rows (entries, nodes, two checkpoints, one cosigned, keys, meta)."""
    w: World = new_world(tmp_path_factory.mktemp("world"))
    w.train(lambda d: False)
    w.ledger.checkpoint()
    w.attest()  # the CISO attests the missing safeguard: a second checkpoint follows
    w.witness()
    trust, at = w.trust_file(), (w.clock.t + timedelta(seconds=1)).isoformat()
    w.ledger.close()
    return Built(w.ws.ledger_path, trust, at)


@dataclass(frozen=True)
class Edit:
    table: str
    column: str | None  # None: the row was deleted
    key: tuple[Any, ...]
    old: Any
    new: Any
    superseded: bool = False  # a deleted checkpoint that a later one covers

    def __str__(self) -> str:
        what = "DELETE" if self.column is None else f"{self.column}: {_short(self.old)} -> " \
            f"{_short(self.new)}"
        return f"{self.table}{list(self.key)} {what}"

    @property
    def unsigned(self) -> bool:
        if self.superseded:
            return True
        cols = UNSIGNED.get(self.table, set())
        return cols is None or (self.column is not None and self.column in cols)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _tables(con: sqlite3.Connection) -> dict[str, tuple[list[str], list[str]]]:
    """table -> (columns, primary-key columns)."""
    out = {}
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND "
                               "name NOT LIKE 'sqlite_%'"):
        info = con.execute(f"PRAGMA table_info({name})").fetchall()
        cols = [r[1] for r in info]
        pk = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
        if con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]:
            out[name] = (cols, pk)
    return out


def _variants(rng: random.Random, old: Any, others: list[Any]) -> Any:
    """A new value for ``old``: type-confused, off by one, garbled, truncated, borrowed."""
    choices: list[Any] = [None, 0, -1, 2**62, "", "x", "null", "[]", "2026-03-01T00:00:00",
                          "not a date", b"", bytes(32)]
    choices += [o for o in others if o != old][:3]
    if isinstance(old, int):
        choices += [old + 1, old - 1, str(old)]
    if isinstance(old, str) and old:
        i = rng.randrange(len(old))
        choices += [old[:i] + chr((ord(old[i]) + 1) % 0x250 or 1) + old[i + 1:],
                    old[: len(old) // 2], old + " ", old.encode()]
    if isinstance(old, bytes) and old:
        i = rng.randrange(len(old))
        choices += [old[:i] + bytes([old[i] ^ (1 << rng.randrange(8))]) + old[i + 1:],
                    old[: len(old) // 2], old.hex(), old.decode("latin-1")]
    return rng.choice(choices)


class _Unchanged(Exception):
    pass


def _stored(con: sqlite3.Connection, table: str, column: str, pk: list[str],
            key: tuple[Any, ...], new: Any) -> Any:
    """The value as stored after the update (the row found by its new key if it moved)."""
    key = tuple(new if k == column else v for k, v in zip(pk, key, strict=True))
    where = " AND ".join(f"{k} = ?" for k in pk)
    return con.execute(f"SELECT {column} FROM {table} WHERE {where}", key).fetchone()[0]


def _same(a: Any, b: Any) -> bool:
    """The same value whatever its storage class (text and blob of the same bytes)."""
    def norm(v: Any) -> Any:
        return v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v
    return (type(a) is type(b) and a == b) or (isinstance(a, str | bytes) and isinstance(
        b, str | bytes) and norm(a) == norm(b))


def tamper(src: Path, dst: Path, rng: random.Random) -> Edit:
    """Copy ``src`` to ``dst`` and change one thing in the copy (SQLite must accept it)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
    shutil.copy(src, dst)
    con = sqlite3.connect(dst)
    try:
        tables = _tables(con)
        for _ in range(100):
            table = rng.choice(sorted(tables))
            cols, pk = tables[table]
            rows = con.execute(f"SELECT {', '.join(pk + cols)} FROM {table}").fetchall()
            row = rng.choice(rows)
            key, values = tuple(row[: len(pk)]), dict(zip(cols, row[len(pk):], strict=True))
            where = " AND ".join(f"{k} = ?" for k in pk)
            try:
                with con:
                    if rng.random() < 0.05:
                        con.execute(f"DELETE FROM {table} WHERE {where}", key)
                        later = table == "checkpoints" and con.execute(
                            "SELECT count(*) FROM checkpoints WHERE size > ?", key).fetchone()[0]
                        return Edit(table, None, key, None, None, superseded=bool(later))
                    column = rng.choice(cols)
                    old = values[column]
                    new = _variants(rng, old, [r[len(pk) + cols.index(column)] for r in rows])
                    con.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (new, *key))
                    if _same(old, _stored(con, table, column, pk, key, new)):
                        raise _Unchanged  # e.g. '9' in an INTEGER column is stored as 9
                    return Edit(table, column, key, old, new)
            except (sqlite3.IntegrityError, _Unchanged):
                continue  # NOT NULL, a duplicate key, or no change: no edit
        raise AssertionError("no edit SQLite accepts")
    finally:
        con.close()


def run(*args: str) -> int:
    """The exit code of an in-process command; anything but a clean exit is a crash."""
    res = CliRunner().invoke(app, list(args))
    exc = res.exception
    if isinstance(exc, ScalegateError):
        return exc.exit_code
    if exc is not None and not isinstance(exc, SystemExit):
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if "scalegate" in f.filename]
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
        raise AssertionError(f"`{' '.join(args[:2])}` crashed at {where}: "
                             f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return res.exit_code


def check(built: Built, db: Path) -> tuple[int, int]:
    """(``ledger verify`` exit, ``scalegate verify`` exit); raises on any crash."""
    led = ["--ledger", str(db)]
    verify = run("ledger", "verify", "--workers", "1", *led)
    assert verify in (0, 1, 5), verify
    run("ledger", "show", "--json", *led)
    run("run", "status", RUN, "--json", *led)
    audit = run("verify", "--trust", str(built.trust), "--no-state", "--workers", "1",
                "--at", built.at, *led)
    assert audit in (0, 3, 4), audit
    return verify, audit


def test_the_untouched_copy_verifies(built: Built, tmp_path: Path) -> None:
    shutil.copy(built.db, tmp_path / "copy.db")
    assert check(built, tmp_path / "copy.db") == (0, 0)


def test_random_edits_never_crash_and_the_auditor_finds_every_signed_one(
    built: Built, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    db = tmp_path / "copy.db"
    failures: list[str] = []
    tally = {"found": 0, "unsigned, passed": 0, "ledger verify non-zero": 0}
    for n in range(EDITS):
        edit = tamper(built.db, db, rng)
        try:
            verify, audit = check(built, db)
        except AssertionError as exc:
            failures.append(f"edit {n} ({edit}): {exc}")
            continue
        if audit == 0 and not edit.unsigned:
            failures.append(f"edit {n} ({edit}): the auditor passed an edit of signed data")
        tally["found" if audit else "unsigned, passed"] += 1
        tally["ledger verify non-zero"] += verify != 0
    print(f"{EDITS} edits (seed {SEED}): {tally}")
    assert not failures, f"{len(failures)} of {EDITS} edits:\n" + "\n".join(failures[:60])
