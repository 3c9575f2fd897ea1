"""Where a ledger keeps its entries and tree: SQLAlchemy Core over SQLite (default) or PostgreSQL.

The tables are described in :mod:`scalegate.ledger._tables`; both backends are tested
(PostgreSQL through a ``postgresql+psycopg://`` URL).

Durability: SQLite runs in WAL mode with ``synchronous=FULL``, so a committed batch is
on disk before :meth:`LedgerStore.writer` returns; on PostgreSQL a writer turns a
``synchronous_commit = off`` setting back on for its transaction. Sequencing: a writer
takes the write lock first (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped
advisory lock on PostgreSQL, both given up after :data:`BUSY_TIMEOUT_S`) and only then
reads the log size, so concurrent processes get distinct, gap-free indices. Readers see
one snapshot (WAL on SQLite, ``REPEATABLE READ`` on PostgreSQL). Proofs and roots read
O(log n) rows through one indexed query.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from scalegate.errors import StoreError
from scalegate.ledger._tables import (
    SCHEMA_VERSION,
    EntryRow,
    blob,
    checkpoints_t,
    column_int,
    column_text,
    entries_t,
    entry_row,
    key_row,
    keys_t,
    meta_t,
    metadata,
    nodes_t,
    registered_key,
    statements_t,
)
from scalegate.ledger.merkle import CompactRange, perfect_subtrees
from scalegate.ledger.registry import RegisteredKey

__all__ = ["BUSY_TIMEOUT_S", "LedgerStore", "Writer", "shown_location"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
# Several writer processes wait this long for the write lock before giving up.
BUSY_TIMEOUT_S = 60.0
_ADVISORY_LOCK = 0x5CA1E6A7E  # PostgreSQL: one lock id for "the sequencer"

_SIZE_SQL = "SELECT max(idx) FROM entries"
# PostgreSQL writer, before the lock: wait for it at most BUSY_TIMEOUT_S (SQLite's busy
# timeout), and never acknowledge an append before its commit is flushed.
_PG_WRITE_SETTINGS_SQL = (
    f"SELECT set_config('lock_timeout', '{int(BUSY_TIMEOUT_S * 1000)}ms', true), "
    "set_config('synchronous_commit', CASE current_setting('synchronous_commit') "
    "WHEN 'off' THEN 'on' ELSE current_setting('synchronous_commit') END, true)"
)


@lru_cache(maxsize=512)
def _hashes_sql(n_leaves: int, n_inner: int) -> str:
    """One statement fetching leaf hashes and node hashes by key (``?`` parameters).

    Node keys come in as a VALUES list joined to the primary key: one index probe per
    key. (A row-value IN makes SQLite scan the table; an OR of equalities costs more.)
    """
    parts = []
    head = ""
    if n_inner:
        head = "WITH v(l, i) AS (VALUES " + ", ".join(["(?, ?)"] * n_inner) + ") "
        parts.append("SELECT n.level, n.idx, n.hash FROM v JOIN nodes n "
                     "ON n.level = v.l AND n.idx = v.i")
    if n_leaves:
        keys = ", ".join(["?"] * n_leaves)
        parts.append(f"SELECT 0, idx, leaf_hash FROM entries WHERE idx IN ({keys})")
    return head + " UNION ALL ".join(parts)


def shown_location(location: str) -> str:
    """A ledger location fit for messages and reports: a database URL's password masked."""
    if "://" not in location:
        return location
    try:
        parsed = make_url(location)
    except Exception:  # not a URL SQLAlchemy reads: nothing in it is known to be secret
        return location
    return location if parsed.password is None else parsed.render_as_string(hide_password=True)


_shown = shown_location


def _location(path: str | os.PathLike[str]) -> tuple[str | URL, Path | None]:
    """An SQLAlchemy URL and, for SQLite files, the file path."""
    text = os.fspath(path)
    if "://" in text:
        if text.startswith("sqlite:///"):
            return text, Path(text[len("sqlite:///") :])
        scheme = text.split("://", 1)[0]
        if scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
            raise StoreError(
                f"cannot open ledger {shown_location(text)}: {scheme}:// is not a database "
                "scalegate opens (a ledger is a file, sqlite:///PATH, or a PostgreSQL URL).",
                hint="Point --ledger at the ledger's database; a log served over HTTP is "
                "checked from its checkpoints and tiles, not opened as a ledger.",
            )
        return text, None
    p = Path(text)
    # Built, not formatted: a path may hold what a URL string would read as syntax (#, %, ?).
    return URL.create("sqlite", database=str(p)), p


def check_sqlite_file(p: Path) -> None:
    """Fail with a clear message on a missing, empty, foreign or truncated database file."""
    if not p.exists():
        raise StoreError(
            f"no ledger at {p}: the file does not exist.",
            hint="Create one with `scalegate ledger init PATH --origin ... --log-key ... "
            "--org-root ...`, or point $SCALEGATE_LEDGER at an existing ledger.",
        )
    if not p.is_file():
        raise StoreError(f"ledger path {p} is not a regular file.")
    try:
        with p.open("rb") as f:
            header = f.read(100)
        size = p.stat().st_size
    except OSError as exc:
        raise StoreError(f"cannot read ledger {p}: {exc.strerror or exc}.") from exc
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise StoreError(
            f"{p} is not a scalegate ledger: it is not an SQLite database "
            f"({'empty' if size == 0 else 'unknown header'}).",
            hint="Check the path; restore the ledger from a backup if the file was overwritten.",
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    change_counter = header[24:28]
    valid_for = header[92:96]
    # The in-header page count is authoritative when the two counters agree (SQLite ≥ 3.7),
    # except while a checkpoint copies pages from the write-ahead log: it writes page 1 (the
    # header) first, so a writer killed then leaves a file shorter than its header says and
    # a log that still holds the rest; SQLite recovers from it. What the log could hold is
    # allowed for, with SQLite's own bound (walCheckpoint: file + log + 64 KiB).
    wal = p.with_name(p.name + "-wal")
    held = wal.stat().st_size + 65536 if wal.is_file() else 0
    if valid_for == change_counter and pages and size + held < pages * page_size:
        raise StoreError(
            f"ledger {p} is truncated: its header declares {pages * page_size} bytes "
            f"but the file has {size}.",
            hint="Restore the ledger from a backup or a mirror; do not append to it.",
        )


class LedgerStore:
    """The database behind a :class:`~scalegate.ledger.log.Ledger` (no signature checks here).

    Open with :meth:`create` or :meth:`open`; ``location`` is a file path (SQLite) or an
    SQLAlchemy URL. Write through :meth:`writer`; everything else reads.
    """

    def __init__(self, engine: Engine, where: str, location: str | None = None) -> None:
        self.engine = engine
        self.where = where
        #: What opens this store again (the path, or the URL with its password: never
        #: show it; see :attr:`where`): helper processes open their own connections with it.
        self.location = location or where
        self._is_sqlite = engine.dialect.name == "sqlite"

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def _engine(cls, url: str | URL) -> Engine:
        if make_url(url).get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                # We issue BEGIN ourselves (IMMEDIATE for writers), so pysqlite must not.
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                write = conn.get_execution_options().get("scalegate_write", False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

            return engine
        return create_engine(url, pool_pre_ping=True)

    @classmethod
    def create(cls, location: str | os.PathLike[str], meta: dict[str, str]) -> LedgerStore:
        """Create a new, empty ledger database holding ``meta``; refuse an existing file."""
        url, p = _location(location)
        if p is not None:
            if p.exists():
                raise StoreError(
                    f"cannot create a ledger at {p}: the file already exists.",
                    hint="Choose another path, or open the existing ledger.",
                )
            if not p.parent.is_dir():
                raise StoreError(f"cannot create a ledger at {p}: no directory {p.parent}.")
        store = cls(cls._engine(url), str(p) if p is not None else _shown(str(url)),
                    os.fspath(location))
        try:
            if p is None and cls._has_schema(store.engine):
                store.engine.dispose()
                raise StoreError(f"cannot create a ledger at {store.where}: it already holds one.")
            # One transaction: a server database is never left with tables but no metadata.
            with store.engine.begin() as conn:
                metadata.create_all(conn)
                values = {**meta, "schema": SCHEMA_VERSION}
                conn.execute(insert(meta_t), [{"key": k, "value": v} for k, v in values.items()])
        except SQLAlchemyError as exc:
            store.engine.dispose()
            if p is not None:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{p}{suffix}").unlink(missing_ok=True)
            raise StoreError(f"cannot create a ledger at {store.where}: {_db_reason(exc)}") from exc
        return store

    @staticmethod
    def _has_schema(engine: Engine) -> bool:
        from sqlalchemy import inspect

        return "entries" in inspect(engine).get_table_names()

    @classmethod
    def open(cls, location: str | os.PathLike[str]) -> LedgerStore:
        """Open an existing ledger database; :class:`StoreError` if it is missing or damaged."""
        url, p = _location(location)
        if p is not None:
            check_sqlite_file(p)
        store = cls(cls._engine(url), str(p) if p is not None else _shown(str(url)),
                    os.fspath(location))
        try:
            meta = store.meta()
        except StoreError:
            store.engine.dispose()
            raise
        if meta.get("schema") != SCHEMA_VERSION:
            store.engine.dispose()
            raise StoreError(
                f"ledger {store.where} has schema version {meta.get('schema')!r}; this scalegate "
                f"reads version {SCHEMA_VERSION}."
            )
        store._index_statements()
        return store

    def _index_statements(self) -> None:
        """Build the statement-digest index of a ledger made before it existed (once)."""
        from sqlalchemy import inspect

        if "statements" in inspect(self.engine).get_table_names():
            return
        from scalegate.ledger.envelope import statement_digest

        try:
            with self.writer() as w:
                statements_t.create(w.conn, checkfirst=True)
                seen: dict[bytes, int] = {}
                for start in range(0, w.size, 5000):
                    for r in self.scan(w.conn, start, min(w.size, start + 5000)):
                        d = statement_digest(r.data)
                        if d is not None:
                            seen.setdefault(d, r.index)  # a duplicate stays for the auditor
                if seen:
                    w.conn.execute(insert(statements_t),
                                   [{"digest": d, "idx": i} for d, i in seen.items()])
        except StoreError:
            pass  # a read-only copy: readers do not need the index; appends will say why

    def close(self) -> None:
        """Release every database connection."""
        self.engine.dispose()

    # --- reading ---------------------------------------------------------------------------

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot on SQLite WAL and PostgreSQL)."""
        try:
            with self.engine.connect() as conn:
                if not self._is_sqlite:  # READ COMMITTED would see commits between statements
                    conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                                  postgresql_readonly=True)
                with conn.begin():
                    yield conn
        except (DBAPIError, sqlite3.Error) as exc:  # sqlite3: the raw-driver fast paths
            raise StoreError(f"cannot read ledger {self.where}: {_db_reason(exc)}") from exc

    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict."""
        with self.reader() as conn:
            return self.meta_in(conn)

    @staticmethod
    def meta_in(conn: Connection) -> dict[str, str]:
        """The ``meta`` table as a dict, read in ``conn``'s transaction."""
        rows = conn.execute(select(meta_t.c.key, meta_t.c.value))
        return {str(r.key): str(r.value) for r in rows}

    @staticmethod
    def size_in(conn: Connection) -> int:
        """Number of entries (the next index), read in ``conn``'s transaction."""
        ((top,),) = _run(conn, _SIZE_SQL, ())
        return 0 if top is None else int(top) + 1

    def size(self) -> int:
        """Number of entries now."""
        with self.reader() as conn:
            return self.size_in(conn)

    def read_hashes(
        self, conn: Connection, wanted: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """Hashes of perfect subtrees ``(level, idx)``: one query, O(len(wanted)) indexed rows."""
        wanted = list(dict.fromkeys(wanted))
        if not wanted:
            return {}
        leaves = [i for lvl, i in wanted if lvl == 0]
        inner = [(lvl, i) for lvl, i in wanted if lvl > 0]
        params = [x for key in inner for x in key] + leaves
        rows = _run(conn, _hashes_sql(len(leaves), len(inner)), params)
        out = {(int(r[0]), int(r[1])): r[2] if type(r[2]) is bytes else blob(r[2]) for r in rows}
        missing = [w for w in wanted if w not in out]
        if missing:
            raise StoreError(
                f"ledger {self.where} is damaged: tree node(s) {missing[:4]} (level, index) "
                "are missing.",
                hint="Run `scalegate ledger verify` and restore the ledger from a backup.",
            )
        return out

    def subtree_hashes(
        self, conn: Connection, ranges: Sequence[tuple[int, int]]
    ) -> list[list[bytes]]:
        """For each leaf range, the hashes of its perfect subtrees left to right (one read)."""
        parts = [perfect_subtrees(a, b) for a, b in ranges]
        found = self.read_hashes(conn, (p for part in parts for p in part))
        return [[found[p] for p in part] for part in parts]

    def compact_range(self, conn: Connection, size: int) -> CompactRange:
        """The right edge of the tree of ``size`` leaves, restored from stored nodes."""
        if size == 0:
            return CompactRange()
        (hashes,) = self.subtree_hashes(conn, [(0, size)])
        return CompactRange(size, hashes)

    def entries(
        self,
        conn: Connection,
        start: int,
        end: int,
        *,
        kind: str | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> list[EntryRow]:
        """Entries with ``start <= idx < end`` (optionally of one kind / run), in index order."""
        q = select(entries_t).where(and_(entries_t.c.idx >= start, entries_t.c.idx < end))
        if kind is not None:
            q = q.where(entries_t.c.kind == kind)
        if run_id is not None:
            q = q.where(entries_t.c.run_id == run_id)
        q = q.order_by(entries_t.c.idx)
        if limit is not None:
            q = q.limit(limit)
        return [entry_row(r) for r in conn.execute(q)]

    def scan(self, conn: Connection, start: int, end: int) -> list[EntryRow]:
        """Entries ``[start, end)`` in index order, read as fast as the driver allows."""
        sql = ("SELECT idx, leaf_hash, data, kind, run_id, signer, appended_at FROM entries "
               "WHERE idx >= {a} AND idx < {b} ORDER BY idx")
        if self._is_sqlite:
            # Bypassing Core's row processing triples the rate of this O(n) read.
            dbapi = conn.connection.driver_connection
            assert dbapi is not None
            rows = dbapi.execute(sql.format(a="?", b="?"), (start, end)).fetchall()
        else:
            rows = conn.execute(text(sql.format(a=":a", b=":b")), {"a": start, "b": end}).all()
        if all(type(r[1]) is bytes and type(r[2]) is bytes and type(r[6]) is str for r in rows):
            return [EntryRow(*r) for r in rows]
        # A tampered file may hold other types; normalise them and let the checks report it.
        return [EntryRow(column_int(r[0]), blob(r[1]), blob(r[2]), column_text(r[3]),
                         None if r[4] is None else column_text(r[4]), column_text(r[5]),
                         column_text(r[6])) for r in rows]

    @staticmethod
    def entries_by_index(conn: Connection, indices: Sequence[int]) -> list[EntryRow]:
        """The entries at the given indices, in index order."""
        out: list[EntryRow] = []
        for a in range(0, len(indices), 500):
            q = select(entries_t).where(entries_t.c.idx.in_(list(indices[a : a + 500])))
            out.extend(entry_row(r) for r in conn.execute(q.order_by(entries_t.c.idx)))
        return out

    @staticmethod
    def nodes_at(conn: Connection, level: int, start: int, end: int) -> list[tuple[int, bytes]]:
        """Stored ``(idx, hash)`` of ``level`` with ``start <= idx < end``, in order."""
        if conn.dialect.name == "sqlite":  # the O(n) pass of verify: skip Core's row processing
            dbapi = conn.connection.driver_connection
            assert dbapi is not None
            rows = dbapi.execute("SELECT idx, hash FROM nodes WHERE level = ? AND idx >= ? AND "
                                 "idx < ? ORDER BY idx", (level, start, end)).fetchall()
            if all(type(r[0]) is int and type(r[1]) is bytes for r in rows):
                return rows
            return [(column_int(r[0]), blob(r[1])) for r in rows]
        q = (
            select(nodes_t.c.idx, nodes_t.c.hash)
            .where(nodes_t.c.level == level, nodes_t.c.idx >= start, nodes_t.c.idx < end)
            .order_by(nodes_t.c.idx)
        )
        return [(column_int(r[0]), blob(r[1])) for r in conn.execute(q)]

    def structure_problems(self, limit: int = 20) -> list[str]:
        """SQLite's own structural check of every page and index (``PRAGMA quick_check``)."""
        if not self._is_sqlite:
            return []
        with self.reader() as conn:
            rows = conn.exec_driver_sql(f"PRAGMA quick_check({int(limit)})").fetchall()
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

    @staticmethod
    def node_counts(conn: Connection) -> dict[int, int]:
        """How many nodes each level holds (a level that is no integer counts as -1)."""
        q = select(nodes_t.c.level, func.count()).group_by(nodes_t.c.level)
        counts: dict[int, int] = {}
        for lvl, n in conn.execute(q):
            counts[column_int(lvl)] = counts.get(column_int(lvl), 0) + int(n)
        return counts

    def statement_indices(self, conn: Connection, digests: Sequence[bytes]) -> dict[bytes, int]:
        """Where each of ``digests`` (SHA-256 of a signed payload) already is in the log."""
        out: dict[bytes, int] = {}
        for a in range(0, len(digests), 500):
            part = list(digests[a : a + 500])
            if self._is_sqlite:  # the driver directly: Core's compilation costs more per append
                dbapi = conn.connection.driver_connection
                assert dbapi is not None
                rows = dbapi.execute("SELECT digest, idx FROM statements WHERE digest IN ("
                                     + ",".join("?" * len(part)) + ")", part).fetchall()
            else:
                q = select(statements_t.c.digest, statements_t.c.idx).where(
                    statements_t.c.digest.in_(part))
                rows = conn.execute(q).all()
            out.update((blob(r[0]), int(r[1])) for r in rows)
        return out

    @staticmethod
    def key_statement_indices(conn: Connection) -> list[int]:
        """Indices of entries whose ``kind`` column says key or key-revocation."""
        q = select(entries_t.c.idx).where(entries_t.c.kind.in_(["key", "key-revocation"]))
        return [int(r[0]) for r in conn.execute(q.order_by(entries_t.c.idx))]

    @staticmethod
    def load_keys(conn: Connection) -> list[RegisteredKey]:
        """The cached key registry."""
        q = select(keys_t).order_by(keys_t.c.registered_index)
        return [registered_key(r) for r in conn.execute(q)]

    @staticmethod
    def count_entries(conn: Connection, start: int, *, run_id: str | None = None) -> int:
        """How many entries from index ``start`` on (optionally of one run) the log holds."""
        q = select(func.count()).select_from(entries_t).where(entries_t.c.idx >= start)
        if run_id is not None:
            q = q.where(entries_t.c.run_id == run_id)
        return int(conn.execute(q).scalar_one())

    @staticmethod
    def checkpoints(conn: Connection) -> list[tuple[int, bytes, str, str]]:
        """Every stored checkpoint ``(size, root_hash, note, issued_at)``, oldest first."""
        q = select(checkpoints_t).order_by(checkpoints_t.c.size)
        return [_checkpoint(r) for r in conn.execute(q)]

    @staticmethod
    def checkpoint_at(conn: Connection, size: int) -> str | None:
        """The stored checkpoint note of ``size``, if any."""
        row = conn.execute(
            select(checkpoints_t.c.note).where(checkpoints_t.c.size == size)).first()
        return None if row is None else column_text(row[0])

    @staticmethod
    def latest_checkpoint(conn: Connection) -> tuple[int, bytes, str, str] | None:
        """The largest stored checkpoint, if any."""
        q = select(checkpoints_t).order_by(checkpoints_t.c.size.desc()).limit(1)
        r = conn.execute(q).first()
        return None if r is None else _checkpoint(r)

    # --- writing ---------------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[Writer]:
        """One write transaction holding the sequencing lock; commits (durably) on exit.

        Any exception rolls everything back: nothing of the batch is written.
        """
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(scalegate_write=True)
                if not self._is_sqlite:
                    # Whatever the server's default: the size read after the lock must see
                    # the previous writer's commit (a snapshot from before the wait would not).
                    conn = conn.execution_options(isolation_level="READ COMMITTED")
                with conn.begin():
                    if not self._is_sqlite:
                        conn.exec_driver_sql(_PG_WRITE_SETTINGS_SQL)
                        conn.execute(select(func.pg_advisory_xact_lock(_ADVISORY_LOCK)))
                    yield Writer(self, conn, self.size_in(conn))
        except DBAPIError as exc:
            raise StoreError(f"cannot write ledger {self.where}: {_db_reason(exc)}") from exc

    def add_checkpoint(self, size: int, root: bytes, note: str, issued_at: str) -> str:
        """Store a signed checkpoint unless one of that size exists; return the stored note.

        The same transaction counts it in the meta (:data:`~scalegate.ledger._coverage.
        ISSUED_KEY`), so checkpoints deleted later show as missing.
        """
        with self.writer() as w:
            row = w.conn.execute(
                select(checkpoints_t.c.note).where(checkpoints_t.c.size == size)
            ).first()
            if row is not None:
                return str(row[0])
            w.conn.execute(
                insert(checkpoints_t),
                [{"size": size, "root_hash": root, "note": note, "issued_at": issued_at}],
            )
            self._count_issued(w.conn)
            return note

    @staticmethod
    def _count_issued(conn: Connection) -> None:
        from scalegate.ledger._coverage import ISSUED_KEY, issued_count

        meta = LedgerStore.meta_in(conn)
        issued = issued_count(meta)
        if issued is None:  # unrecorded (an older ledger) or unreadable: count what is stored
            issued = int(conn.execute(select(func.count()).select_from(checkpoints_t))
                         .scalar_one()) - 1
        value = str(issued + 1)
        if ISSUED_KEY in meta:
            conn.execute(update(meta_t).where(meta_t.c.key == ISSUED_KEY).values(value=value))
        else:
            conn.execute(insert(meta_t), [{"key": ISSUED_KEY, "value": value}])


class Writer:
    """The open write transaction: ``size`` is the next index, read under the lock."""

    def __init__(self, store: LedgerStore, conn: Connection, size: int) -> None:
        self.store = store
        self.conn = conn
        self.size = size

    def add(
        self,
        rows: Sequence[EntryRow],
        nodes: Sequence[tuple[int, int, bytes]],
        keys: Iterable[RegisteredKey] = (),
        digests: Sequence[bytes] = (),
    ) -> None:
        """Insert entries (their indices must continue the log), interior nodes and keys.

        ``digests`` are the entries' statement digests, in order (the unique index that
        makes the log admit a statement once).
        """
        if rows and rows[0].index != self.size:
            raise StoreError(f"internal: batch starts at {rows[0].index}, log size is {self.size}")
        if self.store._is_sqlite:
            # The driver's executemany is several times faster than per-row Core compilation.
            dbapi = self.conn.connection.driver_connection
            assert dbapi is not None
            dbapi.executemany(
                "INSERT INTO entries (idx, leaf_hash, data, kind, run_id, signer, appended_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.index, r.leaf_hash, r.data, r.kind, r.run_id, r.signer, r.appended_at)
                 for r in rows],
            )
            if nodes:
                dbapi.executemany("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
            if digests:
                dbapi.executemany("INSERT INTO statements (digest, idx) VALUES (?, ?)",
                                  [(d, r.index) for d, r in zip(digests, rows, strict=True)])
        else:
            if rows:
                self.conn.execute(
                    insert(entries_t),
                    [{"idx": r.index, "leaf_hash": r.leaf_hash, "data": r.data, "kind": r.kind,
                      "run_id": r.run_id, "signer": r.signer, "appended_at": r.appended_at}
                     for r in rows],
                )
            if nodes:
                self.conn.execute(
                    insert(nodes_t), [{"level": lv, "idx": i, "hash": h} for lv, i, h in nodes]
                )
            if digests:
                self.conn.execute(insert(statements_t), [
                    {"digest": d, "idx": r.index} for d, r in zip(digests, rows, strict=True)])
        self.put_keys(keys)
        self.size += len(rows)

    def put_keys(self, keys: Iterable[RegisteredKey]) -> None:
        """Insert or replace key-registry cache rows."""
        rows = [key_row(k) for k in keys]
        if not rows:
            return
        self.conn.execute(delete(keys_t).where(keys_t.c.keyid.in_([r["keyid"] for r in rows])))
        self.conn.execute(insert(keys_t), rows)

    def checkpoint_note(self, size: int) -> str | None:
        """The stored checkpoint note of ``size``, if there is one."""
        row = self.conn.execute(
            select(checkpoints_t.c.note).where(checkpoints_t.c.size == size)).first()
        return None if row is None else column_text(row[0])

    def set_checkpoint_note(self, size: int, note: str) -> None:
        """Replace the stored note of checkpoint ``size`` (the same checkpoint, with more
        cosignatures)."""
        self.conn.execute(
            update(checkpoints_t).where(checkpoints_t.c.size == size).values(note=note))

    def replace_keys(self, keys: Iterable[RegisteredKey]) -> None:
        """Replace the whole key-registry cache (after rebuilding it from the entries)."""
        self.conn.execute(delete(keys_t))
        self.put_keys(keys)


def _checkpoint(r: Any) -> tuple[int, bytes, str, str]:
    return (column_int(r.size), blob(r.root_hash), column_text(r.note), column_text(r.issued_at))


def _run(conn: Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """Run ``?``-parameter SQL; on SQLite straight through the driver.

    The hot paths (size, proof hashes) are tiny indexed look-ups where SQLAlchemy's
    per-call parameter processing would cost several times the query itself.
    """
    if conn.dialect.name == "sqlite":
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        return dbapi.execute(sql, tuple(params)).fetchall()
    named = sql
    for k in range(len(params)):
        named = named.replace("?", f":p{k}", 1)
    return list(conn.execute(text(named), {f"p{k}": v for k, v in enumerate(params)}))


def _db_reason(exc: SQLAlchemyError | sqlite3.Error) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    if "not a database" in text or "malformed" in text:
        return f"the database file is damaged ({text})"
    if "no such table" in text or ("relation " in text and "does not exist" in text):
        return f"it is not a scalegate ledger ({text.splitlines()[0]})"
    if "locked" in text or "busy" in text or "lock timeout" in text:
        return f"the ledger stayed locked by another writer for {BUSY_TIMEOUT_S:.0f} s ({text})"
    return text
