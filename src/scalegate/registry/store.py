"""What a registry has found, kept in its own database (SQLite by default, PostgreSQL by
URL): per followed log its latest verified checkpoint, when it was last checked and last
verified, its status and the audit's summary; split-view evidence; and the events
(pauses, resumptions, violations) its feed lists. Each check of a log is written in one
transaction, so a registry killed at any moment has lost nothing it had reported."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    delete,
    insert,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from scalegate.errors import RegistryError

__all__ = ["Event", "LogRecord", "RegistryStore"]

metadata = MetaData()
logs_t = Table(
    "logs", metadata,
    Column("name", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    Column("origin", Text, nullable=False, default=""),
    Column("size", BigInteger, nullable=False, default=0),
    Column("root_hash", String(64), nullable=False, default=""),
    Column("checkpoint", Text, nullable=False, default=""),
    Column("status", String(32), nullable=False),
    Column("problem", Text, nullable=False, default=""),
    Column("checked_at", String(40), nullable=False),
    Column("verified_at", String(40), nullable=True),
    Column("witnessed_at", String(40), nullable=True),
    Column("audit", Text, nullable=False, default="{}"),
)
split_views_t = Table(
    "split_views", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("found_at", String(40), nullable=False),
    Column("entry", BigInteger, nullable=True),
    Column("evidence", Text, nullable=False),
)
events_t = Table(
    "events", metadata,
    Column("name", String(64), nullable=False),
    Column("entry", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("run_id", String(256), nullable=True),
    Column("at", String(40), nullable=False),
    Column("summary", Text, nullable=False),
    PrimaryKeyConstraint("name", "kind", "entry"),
)

commitments_t = Table(
    "commitments", metadata,
    Column("id", String(64), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("state", String(32), nullable=False),
    Column("summary", Text, nullable=False),
    Column("checked_at", String(40), nullable=False),
    Column("status", Text, nullable=False),
)
meta_t = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


@dataclass(frozen=True)
class LogRecord:
    """A followed log as the registry last found it."""

    name: str
    url: str
    origin: str
    size: int
    root_hash: str
    checkpoint: str
    status: str
    problem: str
    checked_at: str
    verified_at: str | None
    witnessed_at: str | None
    audit: dict[str, Any]


@dataclass(frozen=True)
class Event:
    """A pause, a resumption or a violation found in a followed log."""

    name: str
    entry: int
    kind: str
    run_id: str | None
    at: str
    summary: str


class RegistryStore:
    """The registry's database (see the module docstring)."""

    def __init__(self, location: str | os.PathLike[str]) -> None:
        where = os.fspath(location)
        url = where if "://" in where else f"sqlite:///{Path(where).resolve()}"
        self.where = where
        try:
            self.engine: Engine = create_engine(url, future=True)
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise RegistryError(f"cannot open the registry's database {where}: "
                                f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}",
                                hint="Give a writable file or a database URL (--db).") from None

    def close(self) -> None:
        """Release the database."""
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # --- writing -----------------------------------------------------------------------------

    def record(self, row: dict[str, Any], events: Sequence[Event] = (),
               split: tuple[int | None, str] | None = None) -> None:
        """Write one check of a log: its row, the events found, a split view's evidence."""
        row = {**row, "audit": json.dumps(row.get("audit", {}), sort_keys=True)}
        with self._tx() as conn:
            conn.execute(delete(logs_t).where(logs_t.c.name == row["name"]))
            conn.execute(insert(logs_t), [row])
            if events:
                have = {(k, i) for k, i in conn.execute(
                    select(events_t.c.kind, events_t.c.entry)
                    .where(events_t.c.name == row["name"]))}
                new: dict[tuple[str, int], Event] = {}  # one per (kind, entry), first kept
                for e in events:
                    if (e.kind, e.entry) not in have:
                        new.setdefault((e.kind, e.entry), e)
                if new:
                    conn.execute(insert(events_t), [e.__dict__ for e in new.values()])
            if split is not None:
                conn.execute(insert(split_views_t), [{
                    "name": row["name"], "found_at": row["checked_at"], "entry": split[0],
                    "evidence": split[1]}])

    def update(self, name: str, **values: Any) -> None:
        """Change some of a log's columns (e.g. its status when it stops answering)."""
        with self._tx() as conn:
            conn.execute(logs_t.update().where(logs_t.c.name == name).values(**values))

    def record_commitments(self, statuses: Sequence[dict[str, Any]], checked_at: str) -> None:
        """Replace the commitments found in the followed logs with ``statuses`` (each a
        :class:`~scalegate.commitments.CommitmentStatus` as JSON data), in one transaction."""
        with self._tx() as conn:
            conn.execute(delete(commitments_t))
            if statuses:
                conn.execute(insert(commitments_t), [{
                    "id": s["id"], "digest": s["digest"], "state": s["state"],
                    "summary": s["summary"], "checked_at": checked_at,
                    "status": json.dumps(s, sort_keys=True)} for s in statuses])

    def commitments(self) -> list[dict[str, Any]]:
        """Every commitment proposed in a followed log, as last judged, by id."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(commitments_t.c.status, commitments_t.c.checked_at)
                                .order_by(commitments_t.c.id)).all()
        return [{**json.loads(r[0]), "checked_at": r[1]} for r in rows]

    def commitment(self, ident: str) -> dict[str, Any] | None:
        """One commitment, by id, as last judged."""
        return next((c for c in self.commitments() if c["id"] == ident), None)

    def secret(self, name: str) -> bytes:
        """A random 32-byte key kept in the database under ``name``, made on first use
        (the monitor authenticates the audit state it keeps in files with it)."""
        with self.engine.connect() as conn:
            found = conn.execute(select(meta_t.c.value).where(meta_t.c.key == name)).first()
        if found is not None:
            return bytes.fromhex(found[0])
        # Two registries on one database: whichever inserted first holds the key.
        with contextlib.suppress(IntegrityError), self._tx() as tx:
            tx.execute(insert(meta_t), [{"key": name, "value": os.urandom(32).hex()}])
        with self.engine.connect() as conn:
            return bytes.fromhex(conn.execute(
                select(meta_t.c.value).where(meta_t.c.key == name)).scalar_one())

    # --- reading -----------------------------------------------------------------------------

    def logs(self) -> list[LogRecord]:
        """Every followed log, by name."""
        return self._read(select(logs_t).order_by(logs_t.c.name))

    def log(self, name: str) -> LogRecord | None:
        """One followed log (only its row is read)."""
        found = self._read(select(logs_t).where(logs_t.c.name == name))
        return found[0] if found else None

    def _read(self, query: Any) -> list[LogRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [LogRecord(**{**r, "audit": json.loads(r["audit"] or "{}")}) for r in rows]

    def events(self, name: str | None = None, limit: int = 100) -> list[Event]:
        """The latest events (of one log), newest first."""
        q = select(events_t).order_by(events_t.c.at.desc(), events_t.c.entry.desc()).limit(limit)
        if name is not None:
            q = q.where(events_t.c.name == name)
        with self.engine.connect() as conn:
            return [Event(**r) for r in conn.execute(q).mappings().all()]

    def split_views(self, name: str | None = None) -> list[tuple[str, str, int | None, str]]:
        """Split-view evidence kept: ``(log, found_at, first differing entry, evidence)``."""
        q = select(split_views_t.c.name, split_views_t.c.found_at, split_views_t.c.entry,
                   split_views_t.c.evidence).order_by(split_views_t.c.id)
        if name is not None:
            q = q.where(split_views_t.c.name == name)
        with self.engine.connect() as conn:
            return [(r[0], r[1], r[2], r[3]) for r in conn.execute(q).all()]
