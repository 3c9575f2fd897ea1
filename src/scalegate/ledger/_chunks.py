"""One aligned chunk of the log, read and checked by the process that reads it.

Helper processes open the ledger read-only themselves (:func:`init_helper`), read a
chunk's rows and stored nodes, recompute its part of the tree (:func:`chunk_tree`) and
decode and signature-check its entries (:func:`check_entries`). Only what the in-order
fold needs comes back: no entry bytes, except for entries that did not decode. Small
logs are checked in-process, by the same function on the caller's own reader.

Entries and the nodes below a complete chunk never change in an append-only log, so a
helper's own snapshot shows the same bytes as the caller's for every index below the
size the caller read; and everything concluded about an entry (its leaf hash, its
signatures, its statement) comes from the one copy of its bytes that helper read.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from scalegate.ledger._entry_check import Candidates, check_entries_raw, set_candidates
from scalegate.ledger._reader import LedgerReader
from scalegate.ledger._tables import EntryRow
from scalegate.ledger._tree_check import ChunkTree, chunk_tree

_READER: LedgerReader | None = None  # a helper process's own read-only connection


class Columns(NamedTuple):
    """What the ledger indexed beside an entry's bytes (held against the entry itself)."""

    index: int  # type: ignore[assignment]  # shadows tuple.index
    kind: str
    run_id: str | None
    signer: str
    appended_at: str | None  # None in a mirror


class ChunkVerdict(NamedTuple):
    """What one chunk's check found, cheap to send between processes."""

    #: Per position, a :class:`Columns` as a plain tuple; ``None`` where the entry is missing.
    columns: list[tuple[Any, ...] | None]
    tree: ChunkTree
    #: Per present row, in order: an :class:`EntryVerdict` as a plain tuple (one per
    #: entry crosses between processes; :func:`as_verdict` names it).
    checked: list[tuple[Any, ...]]
    undecoded: dict[int, bytes]  # the bytes of entries whose envelope did not decode
    reused: int  # signature verdicts taken from an earlier check


class Prior(NamedTuple):
    """An earlier check's record for one chunk: its top and its verified-entries bits."""

    top: bytes
    bits: bytes  # bit i: entry a + i verified (the chunk's slice of the bitmap)


def init_helper(location: str, candidates: Candidates) -> None:
    """Open ``location`` read-only for this process and install the candidate keys."""
    global _READER
    set_candidates(candidates)
    _READER = LedgerReader.open(location)


def check_chunk(
    a: int, b: int, wanted: list[tuple[int, int]], full: bool, payloads: bool,
    prior: Prior | None, reader: LedgerReader | None = None, first: int = 0,
) -> ChunkVerdict:
    """Read and check entries ``[a, b)`` (see the module docstring). ``reader`` defaults
    to the helper's own; ``prior`` lets verdicts of unchanged bytes be reused. Entries
    before ``first`` (an earlier check of the log went that far) are only hashed into
    the tree: ``checked`` has a verdict for each present entry from ``first`` on."""
    reader = reader or _READER
    assert reader is not None, "check_chunk needs a reader (init_helper in helpers)"
    rows: list[EntryRow | None] = [None] * (b - a)
    for r in reader.entries(a, b):
        if a <= r.index < b:
            rows[r.index - a] = r
    tree = chunk_tree(reader, a, rows, wanted)
    present = [r for r in rows if r is not None and r.index >= first]
    known = None
    if prior is not None and tree.whole and tree.top == prior.top and first <= a:
        known = [bool(prior.bits[i >> 3] >> (i & 7) & 1) for i in range(b - a)]
    timeless = any(r.appended_at is None for r in present)  # a mirror's: judge by claimed
    checked = check_entries_raw([(r.index, r.data) for r in present], full, payloads, known,
                                claimed=timeless)
    same: dict[Any, Any] = {}  # one object per repeated value: pickled once
    columns: list[tuple[Any, ...] | None] = [
        None if r is None else (
            r.index, same.setdefault(r.kind, r.kind), same.setdefault(r.run_id, r.run_id),
            same.setdefault(r.signer, r.signer), same.setdefault(r.appended_at, r.appended_at))
        for r in rows]
    undecoded = {r.index: r.data for r, c in zip(present, checked, strict=True)
                 if payloads and c[2] is not None}
    return ChunkVerdict(columns, tree, checked, undecoded, sum(known) if known else 0)
