"""Who may sign, as the log's signed ``key`` and ``key-revocation`` entries say.

Decisions (admission, approvals, resumptions, the supervisor, ``run status``) read the
key registry from here, never from the ``keys`` table: that table is a cache anyone with
write access to the database could edit. Each stored key statement is checked again as
admission checked it (its bytes against its leaf hash, its root signature) and folded in
log order. The result is kept keyed by the log size and root it was derived from; a later
call folds only the key statements appended since, provided the tree it was derived from
is still the prefix of the current one (else it derives afresh).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from scalegate.errors import LedgerError, StoreError, sentence
from scalegate.ledger import merkle
from scalegate.ledger._admission import admit, prepare
from scalegate.ledger._store import LedgerStore
from scalegate.ledger._tables import EntryRow, parse_time
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.registry import KEY_KINDS, KeyRegistry

__all__ = ["SignedKeys"]


class SignedKeys:
    """The registry derived from a ledger's signed key entries, kept by (size, root)."""

    def __init__(self, roots: Iterable[VerifierKey]) -> None:
        self._roots = tuple(roots)
        self._known: tuple[int, bytes, KeyRegistry] | None = None

    def remember(self, size: int, root: bytes, registry: KeyRegistry) -> None:
        """Keep ``registry`` as the one of the tree of ``size`` entries with ``root`` (after
        this process appended and admitted them itself)."""
        self._known = (size, root, registry.copy())

    def at(self, store: LedgerStore, conn: Connection, size: int,
           root_of: Callable[[int], bytes]) -> KeyRegistry:
        """The registry of the first ``size`` entries (a copy the caller may change)."""
        root = root_of(size)
        known = self._known
        if known is not None and known[:2] == (size, root):
            return known[2].copy()
        start, registry = 0, KeyRegistry(self._roots)
        if known is not None and known[0] < size and root_of(known[0]) == known[1]:
            start, registry = known[0], known[2].copy()
        indices = [i for i in store.key_statement_indices(conn) if start <= i < size]
        for r in store.entries_by_index(conn, indices):
            _fold(registry, r)
        self.remember(size, root, registry)
        return registry


def _fold(registry: KeyRegistry, r: EntryRow) -> None:
    """Fold one stored key statement into ``registry`` as admission did; a stored entry
    that no longer passes (its bytes edited, its signature broken) means a damaged ledger."""
    where = f"entry {r.index}"
    try:
        if merkle.leaf_hash(r.data) != r.leaf_hash:
            raise LedgerError(f"{where}'s bytes do not hash to its leaf hash")
        p = prepare(r.data, where)
        if p.kind not in KEY_KINDS:
            raise LedgerError(f"{where} is indexed as a {r.kind} statement but holds a "
                              f"{p.kind} statement")
        # A key statement's admission does not depend on the time (a mirror has none).
        when = parse_time(r.appended_at) if r.appended_at is not None else datetime.now(UTC)
        admit(p, r.index, registry, registry.verifiers(), when)
    except (LedgerError, ValueError) as exc:
        message = exc.message if isinstance(exc, LedgerError) else str(exc)
        raise StoreError(
            f"the ledger's key statements do not verify: {sentence(message)} Decisions that "
            "depend on who may sign cannot be made on it.",
            hint="Run `scalegate ledger verify` and restore the ledger from a backup or mirror.",
        ) from exc
