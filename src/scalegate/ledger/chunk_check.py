"""One aligned chunk of a ledger, checked by the process that reads it.

:func:`~scalegate.ledger.integrity.verify_ledger` splits the log into aligned chunks
of ``2**CHUNK_LEVEL`` entries. Each chunk is read, hashed and checked where it is read
(a helper process with its own read connection, or the caller's process): its leaf
hashes are recomputed from the entry bytes, its stored nodes up to the chunk's top are
held against the level below them, and its envelopes are decoded and their signatures
verified (:func:`~scalegate.ledger.entry_check.check_entries`). Only the verdicts travel
back, so the process folding them in log order never reads, hashes or copies entries.

Entries and the nodes below a complete chunk never change in an append-only log, so a
helper's own snapshot shows the same bytes as the caller's for every index below the
size the caller read (what differs was rewritten, and the checks say so).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from scalegate.ledger import merkle
from scalegate.ledger.entry_check import Checked, check_entries, init_keys
from scalegate.ledger.store import LedgerStore

__all__ = ["CHUNK_LEVEL", "ChunkVerdict", "check_chunk", "init_helper"]

CHUNK_LEVEL = 14  # entries are read and checked in aligned chunks of 2**14
_CHUNK = 1 << CHUNK_LEVEL

_STORE: LedgerStore | None = None  # a helper process's own connection


class ChunkVerdict(NamedTuple):
    """What one chunk's check found, in a form that is cheap to send between processes."""

    #: The recomputed hash at level CHUNK_LEVEL (``None`` unless the chunk is complete).
    top: bytes | None
    #: Tree problems (missing entries, altered leaf hashes, altered or missing nodes).
    problems: list[str]
    nodes_checked: int
    #: Per entry: :data:`~scalegate.ledger.entry_check.Checked` (index, problem, kind,
    #: signer keyids, key predicate).
    entries: list[Checked]
    #: Per entry: ``(appended_at, signer column)``, the columns the fold compares.
    columns: list[tuple[str, str]]


def init_helper(location: str, roots: Sequence[str], candidates: Sequence[str]) -> None:
    """Open ``location`` read-only for this process and set the signature keys
    (the initializer of a helper process)."""
    global _STORE
    init_keys(roots, candidates)
    _STORE = LedgerStore.open(location)


def check_chunk(a: int, b: int, full: bool, store: LedgerStore | None = None) -> ChunkVerdict:
    """Read entries ``[a, b)`` and their stored nodes and check them (see the module
    docstring). ``store`` defaults to the helper's own (:func:`init_helper`)."""
    store = store or _STORE
    assert store is not None, "check_chunk needs a store (init_helper in helpers)"
    problems: list[str] = []
    with store.reader() as conn:
        rows = store.scan(conn, a, b)
        top, nodes = _check_tree(store, conn, a, b, rows, problems)
    checked = check_entries([(r.index, r.data, r.kind, r.run_id) for r in rows], full)
    # One object per distinct value: pickling sends repeats as back-references.
    same: dict[str, str] = {}
    columns = [(same.setdefault(r.appended_at, r.appended_at), same.setdefault(r.signer, r.signer))
               for r in rows]
    return ChunkVerdict(top, problems, nodes, checked, columns)


def _check_tree(
    store: Any, conn: Any, a: int, b: int, rows: Sequence[Any], problems: list[str]
) -> tuple[bytes | None, int]:
    """Check leaves ``[a, b)`` and their nodes up to CHUNK_LEVEL; return the top node and
    how many nodes were compared.

    Each stored hash is checked against the stored hashes (or data) right below it, so
    a tampered row is reported where it is, and all checks together tie every stored
    node to the entry bytes.
    """
    if [r.index for r in rows] != list(range(a, b)):
        have = {r.index for r in rows}
        gone = [i for i in range(a, b) if i not in have]
        problems.append(f"entries {gone[:5]}{'…' if len(gone) > 5 else ''} are missing.")
    leaf_hash = merkle.leaf_hash
    cur = []
    for r in rows:
        if leaf_hash(r.data) != r.leaf_hash:
            problems.append(f"entry {r.index}: its stored leaf hash is not the hash of its "
                            "data; the entry or its hash was altered.")
        cur.append(r.leaf_hash)
    nodes = 0
    for level in range(1, CHUNK_LEVEL + 1):
        cur = check_level(store, conn, level, a >> level, cur, problems)
        nodes += len(cur)
        if not cur:
            break
    return (cur[0] if b - a == _CHUNK and cur else None), nodes


def check_level(
    store: Any, conn: Any, level: int, first: int, below: list[bytes], problems: list[str]
) -> list[bytes]:
    """Check the stored nodes of ``level`` over the (stored) hashes ``below``; return them."""
    node_hash = merkle.node_hash
    want = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
    if not want:
        return []
    stored = dict(store.nodes_at(conn, level, first, first + len(want)))
    out = []
    for i, h in enumerate(want):
        got = stored.get(first + i)
        if got != h:
            problems.append(_node_problem(level, first + i, got))
        out.append(h if got is None else got)
    return out


def _node_problem(level: int, idx: int, stored: bytes | None) -> str:
    if stored is None:
        return f"tree node (level {level}, index {idx}) is missing."
    return (f"tree node (level {level}, index {idx}) is not the hash of the two nodes below "
            "it; the tree was altered.")
