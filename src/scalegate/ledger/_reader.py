"""Read-only access to a ledger's raw rows, in one consistent snapshot, trusting none of them.

A verifier must not write to what it checks, and must not depend on the ledger's own
code path for opening (which checks the head against its own metadata and raises on
damage a verification should *report*). SQLite files are opened with
``mode=ro`` through :mod:`sqlite3` (fast, and no write is possible); other URLs
(PostgreSQL) go through SQLAlchemy in a repeatable-read transaction. Values of a
tampered file may have any type, so everything is coerced and left to the checks.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from scalegate.errors import StoreError
from scalegate.ledger._store import check_sqlite_file
from scalegate.ledger._tables import EntryRow, blob
from scalegate.ledger._tables import column_int as _int
from scalegate.ledger._tables import column_text as text

_new = tuple.__new__  # a named view of the driver's own tuple, without copying fields


def _row(r: Any) -> EntryRow:
    i, leaf, data, kind, run, signer, at = r
    # Fast path for what an untampered SQLite file holds; coerce anything else.
    if type(i) is int and type(leaf) is bytes and type(data) is bytes \
            and type(kind) is str and type(signer) is str and (type(at) is str or at is None) \
            and (run is None or type(run) is str):
        return _new(EntryRow, r) if type(r) is tuple else EntryRow(i, leaf, data, kind, run,
                                                                    signer, at)
    if type(leaf) is not bytes or type(data) is not bytes:
        leaf, data = blob(leaf), blob(data)
    if type(kind) is not str or type(signer) is not str or (
            at is not None and type(at) is not str) or (run is not None and type(run) is not str):
        kind, signer = text(kind), text(signer)
        at = None if at is None else text(at)
        run = None if run is None else text(run)
    return EntryRow(_int(i), leaf, data, kind, run, signer, at)


class LedgerReader:
    """The raw tables of a ledger, read in one snapshot. Use :meth:`open` and :meth:`close`."""

    def __init__(self, where: str) -> None:
        self.where = where  # for messages (a password masked)
        self.location = where  # what opens it again (a password included: never show it)

    @staticmethod
    def open(location: str | os.PathLike[str]) -> LedgerReader:
        """Open ``location`` (an SQLite file, or an SQLAlchemy URL) read-only."""
        loc = os.fspath(location)
        if "://" in loc and not loc.startswith("sqlite:///"):
            reader: LedgerReader = _SqlAlchemyReader(loc)
        else:
            reader = _SqliteReader(Path(loc[len("sqlite:///"):] if loc.startswith("sqlite:///")
                                        else loc))
        reader.location = loc
        return reader

    def _q(self, sql: str, args: dict[str, Any] | None = None) -> list[Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection (ending the snapshot)."""
        raise NotImplementedError

    def meta(self) -> dict[str, str]:
        """The ``meta`` table (what the ledger says about itself: informative only)."""
        return {text(k): text(v) for k, v in self._q("SELECT key, value FROM meta")}

    def size(self) -> int:
        """One more than the largest entry index (gaps are for the checks to find)."""
        top = self._q("SELECT max(idx) FROM entries")[0][0]
        return 0 if top is None else _int(top) + 1

    def entries(self, start: int, end: int) -> list[EntryRow]:
        """Entry rows with ``start <= idx < end`` in index order."""
        rows = self._q("SELECT idx, leaf_hash, data, kind, run_id, signer, appended_at "
                       "FROM entries WHERE idx >= :a AND idx < :b ORDER BY idx",
                       {"a": start, "b": end})
        return [_row(r) for r in rows]

    def key_entries(self) -> list[tuple[int, bytes]]:
        """``(idx, data)`` of the entries whose ``kind`` column says key or key-revocation."""
        rows = self._q("SELECT idx, data FROM entries WHERE kind IN ('key', 'key-revocation') "
                       "ORDER BY idx")
        return [(_int(i), blob(d)) for i, d in rows]

    def nodes(self, level: int, start: int, end: int) -> list[tuple[int, bytes]]:
        """Stored ``(idx, hash)`` of tree ``level`` with ``start <= idx < end``."""
        rows = self._q("SELECT idx, hash FROM nodes WHERE level = :l AND idx >= :a AND idx < :b "
                       "ORDER BY idx", {"l": level, "a": start, "b": end})
        return [(_int(i), blob(h)) for i, h in rows]

    def node_counts(self) -> dict[int, int]:
        """How many nodes each stored level holds."""
        out: dict[int, int] = {}
        for lv, n in self._q("SELECT level, count(*) FROM nodes GROUP BY level"):
            out[_int(lv)] = out.get(_int(lv), 0) + _int(n)
        return out

    def checkpoints(self) -> list[tuple[int, bytes, str, str]]:
        """Every stored ``(size, root_hash, note, issued_at)``, by size."""
        rows = self._q("SELECT size, root_hash, note, issued_at FROM checkpoints ORDER BY size")
        return [(_int(s), blob(r), text(n), text(t)) for s, r, n, t in rows]

    def timestamps(self) -> list[tuple[int, str, bytes]]:
        """Every stored time-stamp ``(size, tsa, response)`` (none in a ledger without the
        table: it is created when the first token is stored)."""
        if not self._has_table("timestamps"):
            return []
        rows = self._q("SELECT size, tsa, response FROM timestamps ORDER BY size, tsa")
        return [(_int(s), text(t), blob(r)) for s, t, r in rows]

    def _has_table(self, name: str) -> bool:
        raise NotImplementedError

    def __enter__(self) -> LedgerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SqliteReader(LedgerReader):
    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        check_sqlite_file(path)  # missing, foreign or truncated: said before SQLite opens it
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        try:
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("BEGIN")  # one snapshot for the whole audit (WAL readers)
            self._db.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read ledger {path} as an SQLite database: {exc}.") from exc

    def _q(self, sql: str, args: dict[str, Any] | None = None) -> list[Any]:
        try:
            return self._db.execute(sql, args or {}).fetchall()
        except (sqlite3.Error, OverflowError) as exc:
            raise StoreError(f"cannot read ledger {self.where}: {exc}.") from exc

    def _has_table(self, name: str) -> bool:
        return bool(self._q("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :n",
                            {"n": name}))

    def close(self) -> None:
        self._db.close()


class _SqlAlchemyReader(LedgerReader):
    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import SQLAlchemyError

        super().__init__(url)
        try:
            parsed = make_url(url)
            if parsed.password is not None:  # never print it
                self.where = url = parsed.render_as_string(hide_password=True)
            self._engine = create_engine(parsed)
            self._conn = self._engine.connect()
            if self._engine.dialect.name == "postgresql":  # one snapshot, and no writes
                self._conn = self._conn.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True)
            self._tx = self._conn.begin()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read ledger {url}: {exc}.") from exc

    def _q(self, sql: str, args: dict[str, Any] | None = None) -> list[Any]:
        from sqlalchemy import text as sql_text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return list(self._conn.execute(sql_text(sql), args or {}))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read ledger {self.where}: {exc}.") from exc

    def _has_table(self, name: str) -> bool:
        from sqlalchemy import inspect

        return bool(inspect(self._conn).has_table(name))

    def close(self) -> None:
        self._tx.rollback()
        self._conn.close()
        self._engine.dispose()
