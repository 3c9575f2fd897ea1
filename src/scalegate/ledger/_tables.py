"""The ledger's tables (SQLAlchemy Core, portable types) and how rows map to values.

- ``meta(key, value)`` — origin, log verifier key, organisation roots, schema version;
- ``entries(idx, leaf_hash, data, kind, run_id, signer, appended_at)`` — ``data`` is the
  canonical DSSE envelope (the RFC 6962 leaf input), ``idx`` the 0-based log index;
  ``kind``, ``run_id`` and ``signer`` are indexes derived from it;
- ``nodes(level, idx, hash)`` — every complete perfect subtree of level >= 1 (level 0 is
  ``entries.leaf_hash``): subtree ``(level, idx)`` covers leaves
  ``[idx * 2**level, (idx + 1) * 2**level)``;
- ``checkpoints(size, root_hash, note, issued_at)`` — every checkpoint the log signed;
- ``statements(digest, idx)`` — the SHA-256 of each entry's signed payload, unique: the
  log admits a statement once (an index derived from ``entries.data``, rebuilt on open
  when missing);
- ``timestamps(size, tsa, response, requested_at)`` — RFC 3161 time-stamp responses over
  checkpoints (unsigned outside evidence, verified by auditors against the authorities they
  trust; created on first use in ledgers older than it);
- ``keys(...)`` — the key registry folded from ``key`` / ``key-revocation`` entries, a
  cache written in the same transaction and rebuilt by ``verify``.

Times are stored as RFC 3339 UTC text so every backend compares them alike.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from scalegate.documents import load_json
from scalegate.errors import ScalegateError, StoreError
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.registry import RegisteredKey

__all__ = [
    "SCHEMA_VERSION",
    "EntryRow",
    "checkpoints_t",
    "entries_t",
    "format_time",
    "keys_t",
    "meta_t",
    "metadata",
    "nodes_t",
    "parse_time",
    "statements_t",
    "timestamps_t",
]

SCHEMA_VERSION = "1"

_Idx = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY = rowid on SQLite

metadata = MetaData()
meta_t = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
entries_t = Table(
    "entries",
    metadata,
    Column("idx", _Idx, primary_key=True, autoincrement=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("run_id", String(256), nullable=True),
    Column("signer", String(512), nullable=False),
    # NULL in a mirror: tiles carry no entry times (see scalegate.ledger.mirror)
    Column("appended_at", String(40), nullable=True),
    Index("ix_entries_kind", "kind"),
    Index("ix_entries_run_id", "run_id"),
)
nodes_t = Table(
    "nodes",
    metadata,
    Column("level", Integer, nullable=False),
    Column("idx", _Idx, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    PrimaryKeyConstraint("level", "idx"),
    sqlite_with_rowid=False,
)
checkpoints_t = Table(
    "checkpoints",
    metadata,
    Column("size", _Idx, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("issued_at", String(40), nullable=False),
)
statements_t = Table(
    "statements",
    metadata,
    Column("digest", LargeBinary(32), primary_key=True),
    Column("idx", _Idx, nullable=False),
)
timestamps_t = Table(
    "timestamps",
    metadata,
    Column("size", _Idx, nullable=False),
    Column("tsa", String(2048), nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("requested_at", String(40), nullable=False),
    PrimaryKeyConstraint("size", "tsa"),
)
keys_t = Table(
    "keys",
    metadata,
    Column("keyid", String(512), primary_key=True),
    Column("vkey", Text, nullable=False),
    Column("org", String(256), nullable=False),
    Column("roles", Text, nullable=False),
    Column("valid_from", String(40), nullable=False),
    Column("valid_until", String(40), nullable=True),
    Column("registered_by", String(512), nullable=False),
    Column("registered_index", _Idx, nullable=False),
    Column("revoked_at", String(40), nullable=True),
    Column("revoked_index", _Idx, nullable=True),
    Column("revocation_reason", Text, nullable=True),
)


def format_time(t: datetime) -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2026-01-31T12:00:00.000000Z``."""
    if t.utcoffset() is None:
        raise ValueError(f"time {t!r} has no UTC offset")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time` (accepts any RFC 3339 time with an offset).

    :class:`ValueError` names the text when it is no time, or one without an offset (a
    naive time could not be compared with the others).
    """
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, TypeError, AttributeError):
        when = None
    if when is None or when.utcoffset() is None:
        shown = text[:40] if isinstance(text, str) else text
        raise ValueError(f"{shown!r} is not an RFC 3339 time with a UTC offset")
    return when


class EntryRow(NamedTuple):
    """One stored log entry, as its row holds it (nothing in it checked yet)."""

    index: int  # type: ignore[assignment]  # shadows tuple.index
    leaf_hash: bytes
    data: bytes
    kind: str
    run_id: str | None
    signer: str
    appended_at: str | None  # None in a mirror (the tiles it was copied from carry no time)


# A tampered SQLite file may hold any type in any column: read what is there, let the
# checks fail on it (never bytes(int), which would allocate that many zero bytes).


def blob(value: Any) -> bytes:
    """Bytes from whatever a (possibly tampered) column holds."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if value is None:
        return b""
    return str(value).encode("utf-8", "surrogateescape")


def column_text(value: Any) -> str:
    """Text from whatever a (possibly tampered) column holds."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def column_int(value: Any) -> int:
    """An integer column value; -1 (which no check accepts) for anything that is not one."""
    if type(value) is int:
        return value
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return -1


def entry_row(r: Any) -> EntryRow:
    return EntryRow(column_int(r.idx), blob(r.leaf_hash), blob(r.data), column_text(r.kind),
                    None if r.run_id is None else column_text(r.run_id),
                    column_text(r.signer),
                    None if r.appended_at is None else column_text(r.appended_at))


def key_row(k: RegisteredKey) -> dict[str, Any]:
    return {
        "keyid": k.keyid,
        "vkey": k.vkey.text(),
        "org": k.org,
        "roles": json.dumps(list(k.roles)),
        "valid_from": format_time(k.valid_from),
        "valid_until": format_time(k.valid_until) if k.valid_until else None,
        "registered_by": k.registered_by,
        "registered_index": k.registered_index,
        "revoked_at": format_time(k.revoked_at) if k.revoked_at else None,
        "revoked_index": k.revoked_index,
        "revocation_reason": k.revocation_reason,
    }


def registered_key(r: Any) -> RegisteredKey:
    """A ``keys`` row back to a :class:`RegisteredKey`; :class:`StoreError` if it is damaged."""
    try:
        return _registered_key(r)
    except (ValueError, TypeError, RecursionError, ScalegateError) as exc:
        raise StoreError(f"the keys table (registry cache) is damaged: the row of key "
                         f"{str(r.keyid)[:80]!r} does not read back ({exc}).",
                         hint="Run `scalegate ledger verify`; the cache is rebuilt from the "
                         "key statements in the log.") from None


def _registered_key(r: Any) -> RegisteredKey:
    return RegisteredKey(
        vkey=VerifierKey.parse(r.vkey),
        org=r.org,
        roles=tuple(_roles(load_json(r.roles))),
        valid_from=parse_time(r.valid_from),
        valid_until=parse_time(r.valid_until) if r.valid_until else None,
        registered_by=r.registered_by,
        registered_index=int(r.registered_index),
        revoked_at=parse_time(r.revoked_at) if r.revoked_at else None,
        revoked_index=None if r.revoked_index is None else int(r.revoked_index),
        revocation_reason=r.revocation_reason,
    )


def _roles(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"roles {str(value)[:60]!r} is not a list of names")
    return value
