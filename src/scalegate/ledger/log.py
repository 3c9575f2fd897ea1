"""The ledger: an append-only RFC 6962 log of signed statements, with checkpoints and proofs.

::

    ledger = Ledger.create("lab.db", "example.org/scalegate", "log.key", [root.vkey])
    ledger.append(sign_statement(KeyPredicate(...), root))  # -> (index, leaf_hash)
    note = ledger.checkpoint()                              # C2SP signed checkpoint
    receipt = ledger.receipt(0)                             # C2SP tlog-proof text

Who may write: an envelope is appended only if its signature verifies and the signer
may sign it — a ``key`` or ``key-revocation`` statement by an organisation root of the
key's organisation; anything else by a key registered by such a statement, valid now
and not revoked (see :mod:`scalegate.ledger.registry`). The payload must be a known
statement kind. A batch is all-or-nothing: one refused envelope refuses the batch and
nothing is written. An append returns only after its transaction is durable.

The log key (which signs checkpoints) belongs to the log operator. :meth:`Ledger.create`
records the key file's path when given a path; :meth:`Ledger.open` accepts ``log_key``
to use another copy. Only :meth:`checkpoint` and :meth:`receipt` need it.

A ledger that has the log key (given, or the recorded file readable) signs a checkpoint
when it is closed after appending, so every command that writes leaves the log anchored
for auditors and witnesses; ``checkpoint_every`` (entries) and ``checkpoint_interval``
also sign one while it stays open, e.g. under a long training run. Both are recorded at
:meth:`Ledger.create` for every later opening, and can be given to :meth:`Ledger.open`.
A writer without the log key (a trainer on another machine) appends as before, and the
log operator signs (``scalegate ledger checkpoint``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy.engine import Connection

from scalegate.documents import load_json
from scalegate.errors import (
    AppendConflict,
    AppendRefused,
    DuplicateStatement,
    IndexOutOfRange,
    KeyMaterialError,
    KeyNotAuthorized,
    LedgerError,
    ScalegateError,
    SignatureError,
    StoreError,
    TileNotFound,
    sentence,
)
from scalegate.ledger import merkle
from scalegate.ledger._admission import PendingEntry, admit, precheck, prepare
from scalegate.ledger._coverage import ISSUED_KEY, Coverage, issued_count
from scalegate.ledger._signature_pool import SignaturePool
from scalegate.ledger._signed_keys import SignedKeys
from scalegate.ledger._store import LedgerStore, Writer
from scalegate.ledger._tables import EntryRow, format_time, parse_time
from scalegate.ledger.envelope import Envelope
from scalegate.ledger.keys import SigningKey, VerifierKey, is_sound_key
from scalegate.ledger.registry import KEY_KINDS, KeyRegistry, RegisteredKey
from scalegate.ledger.statements import Statement, parse_statement
from scalegate.ledger.tiles import Tile, bundle, hashes_at
from scalegate.units import counted

if TYPE_CHECKING:
    from scalegate.ledger._integrity import IntegrityReport

__all__ = ["AppendResult", "Ledger", "LogEntry", "default_ledger_path"]

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def default_ledger_path() -> str:
    """``$SCALEGATE_LEDGER``, else ``./scalegate.db``."""
    return os.environ.get("SCALEGATE_LEDGER") or "scalegate.db"


class AppendResult(NamedTuple):
    """Where an appended entry landed: its log index and RFC 6962 leaf hash."""

    index: int  # type: ignore[assignment]  # shadows tuple.index
    leaf_hash: bytes


@dataclass(frozen=True)
class LogEntry:
    """One entry as stored: the canonical envelope bytes plus what the ledger indexed."""

    index: int
    leaf_hash: bytes
    data: bytes
    kind: str
    run_id: str | None
    signer: str
    #: When the log appended it; ``None`` in a mirror (tiles carry no entry times).
    appended_at: datetime | None

    @property
    def envelope(self) -> Envelope:
        """The DSSE envelope."""
        return Envelope.from_bytes(self.data)

    @property
    def statement(self) -> Statement:
        """The in-toto statement inside the envelope."""
        return parse_statement(self.envelope.payload_bytes())

    @classmethod
    def _from_row(cls, r: EntryRow, where: str = "the ledger") -> LogEntry:
        try:
            when = None if r.appended_at is None else parse_time(r.appended_at)
            if len(r.leaf_hash) != 32:
                raise ValueError(f"its leaf hash is {len(r.leaf_hash)} bytes, not 32")
        except ValueError as exc:
            what = str(exc) if str(exc).startswith("its ") else f"its appended_at {exc}"
            raise StoreError(f"entry {r.index} of {where} is damaged: {what}.",
                             hint="The file was altered; run `scalegate ledger verify` and "
                             "restore the ledger from a backup or mirror.") from None
        return cls(r.index, r.leaf_hash, r.data, r.kind, r.run_id, r.signer, when)


class Ledger:
    """A transparency log in a database file (see the module docstring).

    Use :meth:`create` or :meth:`open`; close with :meth:`close` or a ``with`` block.
    ``now`` is the clock used for key validity and timestamps (injectable for tests).
    """

    def __init__(
        self,
        store: LedgerStore,
        *,
        log_key: SigningKey | None = None,
        now: Clock | None = None,
        verify_workers: int = 1,
        checkpoint_every: int | None = None,
        checkpoint_interval: timedelta | None = None,
        checkpoint_on_close: bool = True,
    ) -> None:
        self._store = store
        self._now: Clock = now or _utc_now
        self._pool = SignaturePool(verify_workers)
        meta = store.meta()
        try:
            self.origin: str = meta["origin"]
            self.log_vkey: VerifierKey = VerifierKey.parse(meta["log_vkey"])
            roots = load_json(meta["org_roots"])
            if not isinstance(roots, list) or not all(isinstance(t, str) for t in roots):
                raise ValueError(f"org_roots is {meta['org_roots'][:60]!r}, not a list of "
                                 "verifier keys")
            self.org_roots: tuple[VerifierKey, ...] = tuple(VerifierKey.parse(t) for t in roots)
        except (KeyError, ValueError, RecursionError, KeyMaterialError) as exc:
            store.close()
            raise StoreError(
                f"ledger {store.where} has damaged metadata ({exc}); it cannot be used."
            ) from exc
        self._log_key_path: str | None = meta.get("log_key_path")
        #: The log this ledger mirrors (:mod:`~scalegate.ledger.mirror`), if it is a mirror.
        self.mirror_of: str | None = meta.get("mirror_of")
        self._log_key: SigningKey | None = None
        if log_key is not None:
            self._set_log_key(log_key)
        cadence = _cadence(meta, store.where)
        self.checkpoint_every: int | None = checkpoint_every or cadence[0]
        self.checkpoint_interval: timedelta | None = checkpoint_interval or cadence[1]
        self.checkpoint_on_close = checkpoint_on_close
        self._appended = False  # by this object: close() then signs a checkpoint
        #: Why the last checkpoint due after an append could not be signed (if it could not).
        self.checkpoint_problem: str | None = None
        self._last_signed: tuple[int, datetime] | None = None  # (size, when), as far as known
        # Caches valid while the log still has ``_cached_size`` entries (another process
        # may append meanwhile; the writer re-reads the size under the lock).
        self._cached_size = -1
        self._cached_registry: KeyRegistry | None = None
        self._cached_compact: merkle.CompactRange | None = None
        self._signed_keys = SignedKeys(self.org_roots)  # who may sign, from signed entries

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        origin: str,
        log_key: SigningKey | str | os.PathLike[str],
        org_roots: Iterable[VerifierKey | str],
        *,
        now: Clock | None = None,
        verify_workers: int = 1,
        checkpoint_every: int | None = None,
        checkpoint_interval: timedelta | None = None,
    ) -> Ledger:
        """Create an empty ledger at ``path`` (a file, or an SQLAlchemy URL).

        ``origin`` is the checkpoint origin line (e.g. ``example.org/scalegate``);
        ``log_key`` the log's signing key, or the path of its key file (recorded, so
        later :meth:`checkpoint` calls find it); ``org_roots`` the organisation root
        verifier keys whose ``key`` statements admit signers. ``checkpoint_every`` and
        ``checkpoint_interval`` set the cadence at which a ledger holding the log key
        signs checkpoints while it appends (recorded for every later opening; a
        checkpoint is signed on closing after appending in any case).
        """
        if checkpoint_every is not None and checkpoint_every < 1:
            raise LedgerError(f"checkpoint_every {checkpoint_every} must be at least 1 entry.")
        if checkpoint_interval is not None and checkpoint_interval <= timedelta(0):
            raise LedgerError(f"checkpoint_interval {checkpoint_interval} must be positive.")
        if not origin or any(ord(c) < 0x20 or (c.isspace() and c != " ") for c in origin):
            raise LedgerError(
                f"origin {origin!r} must be one non-empty line without control characters.",
                hint="Use the log's schema-less URL, e.g. 'example.org/scalegate'.",
            )
        key_path: str | None = None
        if not isinstance(log_key, SigningKey):
            key_path = str(Path(log_key).resolve())
            log_key = SigningKey.load(key_path)
        roots = [r if isinstance(r, VerifierKey) else VerifierKey.parse(r) for r in org_roots]
        weak = [r.keyid for r in roots if not is_sound_key(r.public)]
        if weak:
            raise KeyMaterialError(
                f"organisation root {weak[0]} is not a prime-order point (e.g. a small-order "
                "one, whose signatures anyone could forge). Use a real key "
                "(`scalegate keys new ORG/root`)."
            )
        if not roots:
            raise LedgerError(
                "a ledger needs at least one organisation root key, or nobody could register "
                "a signer.",
                hint="Pass --org-root VKEY (make one with `scalegate keys new ORG/root`).",
            )
        meta = {
            "origin": origin,
            "log_vkey": log_key.vkey.text(),
            "org_roots": json.dumps([r.text() for r in dict.fromkeys(roots)]),
            "created_at": format_time((now or _utc_now)()),
            ISSUED_KEY: "0",
        }
        if key_path:
            meta["log_key_path"] = key_path
        if checkpoint_every is not None:
            meta["checkpoint_every"] = str(checkpoint_every)
        if checkpoint_interval is not None:
            meta["checkpoint_interval_s"] = repr(checkpoint_interval.total_seconds())
        store = LedgerStore.create(path, meta)
        return cls(store, log_key=log_key, now=now, verify_workers=verify_workers)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        log_key: SigningKey | str | os.PathLike[str] | None = None,
        now: Clock | None = None,
        verify_workers: int = 1,
        checkpoint_every: int | None = None,
        checkpoint_interval: timedelta | None = None,
        checkpoint_on_close: bool = True,
    ) -> Ledger:
        """Open an existing ledger; :class:`StoreError` if it is missing, damaged or truncated.

        A log served over HTTP (``https://...``, ``http://127.0.0.1:PORT/``) opens as a
        :class:`~scalegate.ledger.remote.RemoteLedger`: reads from a verified mirror,
        appends submitted to the log.

        Opening reads the tree's right edge and checks it against the latest checkpoint,
        so a damaged tail is noticed before anything is appended. ``verify_workers > 1``
        checks the signatures of large batches in that many processes. The checkpoint
        cadence (see the module docstring) is the one recorded at creation unless
        ``checkpoint_every`` / ``checkpoint_interval`` are given; ``checkpoint_on_close=False``
        leaves signing to an explicit :meth:`checkpoint`.
        """
        if isinstance(path, str) and path.startswith(("http://", "https://")):
            from scalegate.ledger.remote import RemoteLedger

            return RemoteLedger.connect(path, now=now)
        store = LedgerStore.open(path)
        try:
            key = SigningKey.load(log_key) if isinstance(log_key, str | os.PathLike) else log_key
            ledger = cls(store, log_key=key, now=now, verify_workers=verify_workers,
                         checkpoint_every=checkpoint_every,
                         checkpoint_interval=checkpoint_interval,
                         checkpoint_on_close=checkpoint_on_close)
            ledger._check_head()
        except BaseException:
            store.close()
            raise
        return ledger

    def close(self) -> None:
        """Sign a checkpoint if this ledger appended and holds the log key (see the module
        docstring); then release the database (and any signature-checking processes)."""
        self._close(quiet=False)

    def _close(self, *, quiet: bool) -> None:
        try:
            if self._appended and self.checkpoint_on_close:
                self._appended = False
                try:
                    self._sign_if_keyed()
                except ScalegateError:
                    if not quiet:
                        raise
        finally:
            self._pool.close()
            self._store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        # Leaving on an error: the checkpoint is still attempted (what was appended is
        # durable), but a failure to sign it must not hide the error that is leaving.
        self._close(quiet=exc_type is not None)

    @property
    def store(self) -> LedgerStore:
        """The underlying store (for the verifier, benchmarks and servers)."""
        return self._store

    @property
    def path(self) -> str:
        """Where the ledger lives (file path or URL)."""
        return self._store.where

    def _check_head(self) -> None:
        with self._store.reader() as conn:
            n = self._store.size_in(conn)
            self._store.compact_range(conn, n)  # raises if the right edge is missing
            latest = self._store.latest_checkpoint(conn)
            if latest is not None:
                size, root, _, _ = latest
                if size < 0:
                    raise StoreError(
                        f"ledger {self.path} is damaged: its latest checkpoint's size is not a "
                        "tree size; the checkpoints table was altered.",
                        hint="Run `scalegate ledger verify` and restore from a backup.")
                if size > n:
                    raise StoreError(
                        f"ledger {self.path} is damaged: it has {counted(n, 'entries')} but a "
                        f"checkpoint for size {size} was issued.",
                        hint="Entries were lost; restore the ledger from a backup or mirror.",
                    )
                if self._root_in(conn, size) != root:
                    raise StoreError(
                        f"ledger {self.path} is damaged: the tree no longer matches the "
                        f"checkpoint it issued at size {size}.",
                        hint="Run `scalegate ledger verify` and restore from a backup.",
                    )

    # --- the log key -----------------------------------------------------------------------

    def _set_log_key(self, key: SigningKey) -> None:
        if key.vkey != self.log_vkey:
            raise KeyMaterialError(
                f"log key {key.vkey.keyid} is not this ledger's log key "
                f"({self.log_vkey.keyid})."
            )
        self._log_key = key

    def _available_key(self) -> SigningKey | None:
        """The log key if this ledger has it (given, or the recorded file loads), else None."""
        if self._log_key is None and self._log_key_path:
            try:
                self._set_log_key(SigningKey.load(self._log_key_path))
            except (ScalegateError, OSError):
                self._log_key_path = None  # not this process's to sign: do not retry
        return self._log_key

    @property
    def can_sign(self) -> bool:
        """Whether this process holds the log key (given, or the recorded file loads)."""
        return self._available_key() is not None

    def _sign_if_keyed(self) -> None:
        if self._available_key() is not None:
            self._checkpoint()

    def _after_append(self, size: int) -> None:
        """Sign a checkpoint when the cadence says one is due (and the log key is here)."""
        self._appended = True
        every, interval = self.checkpoint_every, self.checkpoint_interval
        if every is None and interval is None:
            return
        last = self._last_signed
        now = self._now()
        if last is not None and not _due(last, size, now, every, interval):
            return
        if self._available_key() is None:
            return
        with self._store.reader() as conn:
            latest = self._store.latest_checkpoint(conn)
        known: tuple[int, datetime | None]
        try:
            known = (latest[0], parse_time(latest[3])) if latest is not None else (0, None)
        except ValueError:  # a damaged issued_at: sign now rather than trust it
            known = (latest[0], None) if latest is not None else (0, None)
        if _due(known, size, now, every, interval):
            self._checkpoint()
        elif known[1] is not None:
            self._last_signed = (known[0], known[1])

    def _signing_key(self) -> SigningKey:
        if self._log_key is None:
            if not self._log_key_path:
                raise LedgerError(
                    f"ledger {self.path} has no log key file recorded, so it cannot sign a "
                    "checkpoint.",
                    hint="Open it with log_key=... (CLI: --log-key FILE).",
                )
            self._set_log_key(SigningKey.load(self._log_key_path))
        assert self._log_key is not None
        return self._log_key

    # --- appending -------------------------------------------------------------------------

    def append(self, envelope: Envelope | bytes) -> AppendResult:
        """Append one signed envelope; return ``(index, leaf_hash)`` once it is durable.

        Raises :class:`AppendRefused` (naming why) and writes nothing if it is refused.
        """
        return self.append_many([envelope])[0]

    def append_many(
        self, envelopes: Iterable[Envelope | bytes], *, at_index: int | None = None
    ) -> list[AppendResult]:
        """Append a batch in one durable transaction; all of it, or (if any is refused) none.

        Envelopes are checked in order against the registry as it stands after the
        entries before them, so a batch may register a key and then use it.
        Signatures are checked before the write lock is taken (spread over
        ``verify_workers`` processes), standing under the lock. With ``at_index`` the
        batch goes in only if the log holds exactly that many entries (so its first entry
        gets that index): entries that cite each other by index can be written together;
        otherwise :class:`AppendConflict` is raised and nothing is written.
        """
        if self.mirror_of is not None:
            raise LedgerError(f"ledger {self.path} mirrors {self.mirror_of}; a mirror holds "
                              "only what that log published.",
                              hint=f"Submit to the log itself: --ledger {self.mirror_of}")
        items = list(envelopes)
        prepared = []
        for pos, e in enumerate(items):
            try:
                prepared.append(prepare(e, _where(pos, len(items))))
            except AppendRefused as exc:
                exc.position = pos
                raise
        if not prepared:
            return []
        cached = self._cached_registry
        precheck(prepared, cached if cached is not None else self.registry(), self._pool)
        now = self._now()
        stamp = format_time(now)
        total = len(prepared)
        with self._store.writer() as w:
            base = w.size
            if at_index is not None and base != at_index:
                raise AppendConflict(
                    f"the batch was built for index {at_index}, but the log now holds {base} "
                    "entries (another writer appended first). Nothing was appended.",
                    size=base, hint="Rebuild the batch for the new size and retry.")
            registry = self._registry_in(w)
            if any(p.kind in KEY_KINDS for p in prepared):
                registry = registry.copy()
            changed: dict[str, RegisteredKey] = {}
            verifiers = registry.verifiers()
            rows: list[EntryRow] = []
            for pos, p in enumerate(prepared):
                idx = base + pos
                try:
                    signer, reg = admit(p, idx, registry, verifiers, now)
                except (SignatureError, KeyNotAuthorized) as exc:
                    refused = AppendRefused(
                        f"refused {_where(pos, total)} ({p.kind} statement): "
                        f"{sentence(exc.message)} Nothing was appended.",
                        hint=exc.hint,
                    )
                    refused.position = pos
                    raise refused from exc
                if reg is not None:
                    changed[reg.keyid] = reg
                    verifiers = registry.verifiers()
                rows.append(EntryRow(idx, p.leaf_hash, p.data, p.kind, p.statement.run_id,
                                     signer.keyid, stamp))
            _refuse_duplicates(prepared, w)
            compact = self._compact_in(w)
            nodes: list[tuple[int, int, bytes]] = []
            for r in rows:
                nodes.extend(compact.append(r.leaf_hash)[1:])  # level 0 lives in entries
            w.add(rows, nodes, changed.values(), [p.digest for p in prepared])
        # Committed (and synced): only now trust the new state as the cache.
        self._cached_size = base + len(rows)
        self._cached_registry = registry
        self._signed_keys.remember(self._cached_size, compact.root(), registry)
        self._cached_compact = compact
        try:
            self._after_append(base + len(rows))
        except ScalegateError as exc:  # the entries are durable: say so, do not fail them
            self.checkpoint_problem = exc.message
            warnings.warn(f"ledger {self.path}: appended, but the checkpoint due could not "
                          f"be signed: {exc.message}", stacklevel=2)
        return [AppendResult(r.index, r.leaf_hash) for r in rows]

    def _registry_in(self, w: Writer) -> KeyRegistry:
        if self._cached_registry is not None and self._cached_size == w.size:
            return self._cached_registry
        return self._registry_from_entries(w.conn, w.size)

    def _registry_from_entries(self, conn: Connection, size: int) -> KeyRegistry:
        """Who may sign in the first ``size`` entries, from the signed key statements."""
        return self._signed_keys.at(self._store, conn, size,
                                    lambda n: self._root_in(conn, n))

    def _compact_in(self, w: Writer) -> merkle.CompactRange:
        if self._cached_compact is not None and self._cached_size == w.size:
            c = self._cached_compact
            return merkle.CompactRange(c.size, c.hashes)
        return self._store.compact_range(w.conn, w.size)

    # --- reading ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The number of entries now."""
        return self._store.size()

    def registry(self, size: int | None = None) -> KeyRegistry:
        """The key registry as it stands (roots and registered keys), or as the first
        ``size`` entries made it, folded from the log's signed key statements (never from
        the unsigned ``keys`` cache)."""
        with self._store.reader() as conn:
            n = self._store.size_in(conn)
            return self._registry_from_entries(conn, n if size is None else min(size, n))

    def entries(
        self,
        start: int = 0,
        end: int | None = None,
        *,
        kind: str | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> list[LogEntry]:
        """Entries with ``start <= index < end`` (``end`` defaults to the size), in order."""
        with self._store.reader() as conn:
            n = self._store.size_in(conn)
            end = n if end is None else end
            if start < 0 or end < start or end > n:
                raise IndexOutOfRange(
                    f"entry range [{start}, {end}) is outside the log, which has "
                    f"{counted(n, 'entries')}."
                )
            rows = self._store.entries(conn, start, end, kind=kind, run_id=run_id, limit=limit)
        return [LogEntry._from_row(r, self.path) for r in rows]

    def iter_entries(self, start: int = 0, end: int | None = None, *,
                     batch: int = 4096) -> Iterator[LogEntry]:
        """Stream entries ``[start, end)`` in batches (memory stays bounded)."""
        end = self.size if end is None else end
        for a in range(start, end, batch):
            yield from self.entries(a, min(a + batch, end))

    def entry(self, index: int) -> LogEntry:
        """The entry at ``index``."""
        n = self.size
        if not 0 <= index < n:
            raise IndexOutOfRange(
                f"there is no entry {index}: the log has {counted(n, 'entries')}"
                + (" (it is empty)." if n == 0 else f" (indices 0..{n - 1}).")
            )
        return self.entries(index, index + 1)[0]

    def _root_in(self, conn: Connection, size: int) -> bytes:
        if size == 0:
            return merkle.EMPTY_ROOT
        return self._store.compact_range(conn, size).root()

    def root(self, size: int | None = None) -> bytes:
        """The RFC 6962 root of the first ``size`` entries (default: all); O(log n) reads."""
        with self._store.reader() as conn:
            n = self._store.size_in(conn)
            size = n if size is None else size
            _check_size(size, n)
            return self._root_in(conn, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 inclusion proof of entry ``index`` in the tree of ``size`` (default: now)."""
        with self._store.reader() as conn:
            n = self._store.size_in(conn)
            size = n if size is None else size
            _check_size(size, n)
            if not 0 <= index < size:
                raise IndexOutOfRange(
                    f"cannot prove entry {index}: the tree of size {size} has entries "
                    f"0..{size - 1}" + (" (the log is empty)." if size == 0 else ".")
                )
            ranges = merkle.inclusion_ranges(index, size)
            return [merkle.fold_subtrees(h) for h in self._store.subtree_hashes(conn, ranges)]

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """RFC 6962 consistency proof from the tree of ``size1`` to that of ``size2``."""
        with self._store.reader() as conn:
            n = self._store.size_in(conn)
            size2 = n if size2 is None else size2
            _check_size(size2, n)
            if not 0 <= size1 <= size2:
                raise IndexOutOfRange(
                    f"cannot prove consistency from size {size1} to size {size2}: the first "
                    "size must be between 0 and the second."
                )
            ranges = merkle.consistency_ranges(size1, size2)
            return [merkle.fold_subtrees(h) for h in self._store.subtree_hashes(conn, ranges)]

    def verify(
        self,
        *,
        workers: int | None = None,
        full: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> IntegrityReport:
        """Recompute the tree, check every checkpoint and envelope and re-fold the registry.

        Returns an :class:`~scalegate.ledger._integrity.IntegrityReport` (``ok`` when all
        holds); see :func:`~scalegate.ledger._integrity.verify_ledger`.
        """
        from scalegate.ledger._integrity import verify_ledger

        return verify_ledger(self, workers=workers, full=full, progress=progress)

    # --- checkpoints and receipts ----------------------------------------------------------

    def checkpoint(self) -> str:
        """The log-signed C2SP checkpoint note for the current size (signed and stored once)."""
        return self._checkpoint()[2]

    def _checkpoint(self) -> tuple[int, bytes, str]:
        from scalegate.ledger.checkpoint import Checkpoint, sign_checkpoint

        with self._store.reader() as conn:
            n = self._store.size_in(conn)
            latest = self._store.latest_checkpoint(conn)
            if latest is not None and latest[0] == n:
                return n, latest[1], latest[2]
            root = self._root_in(conn, n)
        note = sign_checkpoint(Checkpoint(self.origin, n, root), self._signing_key())
        now = self._now()
        stored = self._store.add_checkpoint(n, root, note, format_time(now))
        self._last_signed = (n, now)
        return n, root, stored

    def coverage(self) -> Coverage:
        """What the latest checkpoint covers, cheaply (one signature check, no tree walk).

        The latest checkpoint's root was checked against the tree when the ledger was
        opened; here its log signature is checked too (a forged one covers nothing).
        ``ledger verify`` checks every checkpoint and reports the same verdict.
        """
        from scalegate.errors import NoteError
        from scalegate.ledger.checkpoint import open_checkpoint

        with self._store.reader() as conn:
            n = self._store.size_in(conn)
            meta = self._store.meta_in(conn)
            stored = len(self._store.checkpoints(conn))
            latest = self._store.latest_checkpoint(conn)
        covered = 0
        if latest is not None and latest[0] <= n:
            try:
                cp, _ = open_checkpoint(latest[2], self.log_vkey, origin=self.origin)
                covered = latest[0] if (cp.size, cp.root_hash) == latest[:2] else 0
            except NoteError:
                covered = 0
        return Coverage(n, covered, issued_count(meta), stored, meta.get(ISSUED_KEY))

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """The leaf hashes of entries ``[start, end)``."""
        out: list[bytes] = []
        with self._store.reader() as conn:
            for a in range(start, end, 256):
                b = min(end, a + 256)
                found = self._store.read_hashes(conn, [(0, i) for i in range(a, b)])
                out.extend(found[(0, i)] for i in range(a, b))
        return out

    def latest_checkpoint(self) -> str | None:
        """The most recent checkpoint note issued, if any (does not sign a new one)."""
        with self._store.reader() as conn:
            latest = self._store.latest_checkpoint(conn)
        return None if latest is None else latest[2]

    def tile(self, tile: Tile) -> bytes:
        """A C2SP ``tlog-tiles`` hash tile or entry bundle of the log as it stands (see
        :mod:`~scalegate.ledger.tiles`); :class:`TileNotFound` when the log does not have
        it yet. Its bytes never change once the log has it: the hashes are those of
        complete subtrees, and a partial tile is the prefix of the full one."""
        end = tile.start + tile.width
        with self._store.reader() as conn:
            have = hashes_at(self._store.size_in(conn), max(tile.level, 0))
            if end > have:
                raise TileNotFound(f"the log has no {tile.path()} yet: it holds "
                                   f"{counted(have, 'hashes')} at that level.")
            if tile.entries:
                rows = self._store.scan(conn, tile.start, end)
                got = [r.data for r in rows]
            elif tile.level == 0:  # leaf hashes only: the entry bytes are not read
                found = self._store.read_hashes(conn, [(0, i) for i in range(tile.start, end)])
                got = [found[(0, i)] for i in range(tile.start, end)]
            else:
                got = [h for _, h in self._store.nodes_at(conn, tile.height, tile.start, end)]
        if len(got) != tile.width:
            raise StoreError(f"ledger {self.path} is damaged: {tile.path()} lacks "
                             f"{tile.width - len(got)} of its {tile.width} rows.",
                             hint="Run `scalegate ledger verify`.")
        return bundle(got) if tile.entries else b"".join(got)

    def checkpoint_at(self, size: int) -> str | None:
        """The checkpoint issued for ``size`` (with the cosignatures it gathered), if any."""
        with self._store.reader() as conn:
            return self._store.checkpoint_at(conn, size)

    def checkpoints(self) -> list[tuple[int, str]]:
        """Every checkpoint issued, ``(size, note)``, oldest first."""
        with self._store.reader() as conn:
            return [(size, note) for size, _, note, _ in self._store.checkpoints(conn)]

    def receipt(self, index: int) -> str:
        """A C2SP ``tlog-proof`` for entry ``index`` against the latest checkpoint, with the
        cosignatures it has gathered; a new one is signed only when none covers the entry."""
        from scalegate.ledger.tlog_proof import format_receipt

        n = self.size
        if not 0 <= index < n:
            raise IndexOutOfRange(
                f"cannot prove entry {index}: the log has {counted(n, 'entries')}"
                + (" (it is empty)." if n == 0 else f" (indices 0..{n - 1}).")
            )
        with self._store.reader() as conn:
            latest = self._store.latest_checkpoint(conn)
        if latest is not None and latest[0] > index:
            size, note = latest[0], latest[2]
        else:
            size, _, note = self._checkpoint()
        return format_receipt(index, self.inclusion_proof(index, size), note)


def _due(last: tuple[int, datetime | None], size: int, now: datetime, every: int | None,
         interval: timedelta | None) -> bool:
    """Whether a checkpoint is due: ``every`` entries or ``interval`` since the last one."""
    last_size, last_at = last
    if size <= last_size:
        return False
    if every is not None and size - last_size >= every:
        return True
    return interval is not None and (last_at is None or now - last_at >= interval)


def _cadence(meta: dict[str, str], where: str) -> tuple[int | None, timedelta | None]:
    """The checkpoint cadence recorded in the ledger's metadata."""
    try:
        every = int(meta["checkpoint_every"]) if "checkpoint_every" in meta else None
        seconds = float(meta["checkpoint_interval_s"]) if "checkpoint_interval_s" in meta \
            else None
        return every, None if seconds is None else timedelta(seconds=seconds)
    except (ValueError, OverflowError) as exc:  # (a tampered 'inf' or '1e308' overflows)
        raise StoreError(f"ledger {where} has a damaged checkpoint cadence ({exc}).") from exc


def _check_size(size: int, n: int) -> None:
    if not 0 <= size <= n:
        raise IndexOutOfRange(
            f"tree size {size} is outside the log, which has {counted(n, 'entries')}."
        )


def _refuse_duplicates(prepared: list[PendingEntry], w: Writer) -> None:
    """Refuse a batch holding a statement the log (or the batch) already holds."""
    seen: dict[bytes, int] = {}
    logged = w.store.statement_indices(w.conn, [p.digest for p in prepared])
    for pos, p in enumerate(prepared):
        at = logged.get(p.digest, seen.get(p.digest))
        if at is not None:
            where = f"entry {at}" if at < w.size else f"position {at - w.size + 1} of the batch"
            dup = DuplicateStatement(
                f"refused {_where(pos, len(prepared))} ({p.kind} statement): the same "
                f"statement is already logged ({where}); the log admits a statement once. "
                "Nothing was appended.",
                index=at,
                hint="A statement that changes a run is signed afresh for each event; "
                "re-sending an old one is a replay.")
            dup.position = pos
            raise dup
        seen[p.digest] = w.size + pos


def _where(pos: int, total: int) -> str:
    return "the envelope" if total == 1 else f"envelope {pos} of the batch"
