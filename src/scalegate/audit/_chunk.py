"""One aligned chunk of the audited log, read and checked by the process that reads it.

Helper processes open the ledger read-only themselves (:func:`init_helper`), read a
chunk's rows and stored nodes, recompute its part of the tree (:func:`chunk_tree`) and
decode and signature-check its entries (:func:`_envelopes.check_entries`). Only what the
in-order fold needs comes back: no entry bytes, except for entries that did not decode.
Small audits run the same function in-process on the audit's own reader.

Entries and the nodes below a complete chunk never change in an append-only log, so a
helper's own snapshot shows the same bytes as the audit's for every index below the
size the audit read; and everything concluded about an entry (its leaf hash, its
signatures, its statement) comes from the one copy of its bytes that helper read.
"""

from __future__ import annotations

from typing import NamedTuple

from scalegate.audit import _envelopes
from scalegate.audit._reader import LedgerReader, Row
from scalegate.audit._tree import ChunkTree, chunk_tree

_READER: LedgerReader | None = None  # a helper process's own read-only connection

#: Per present row: ``(index, kind column, run column, signer column, appended_at)``.
Columns = tuple[int, str, str | None, str, str]


class ChunkAudit(NamedTuple):
    """What one chunk's check found, cheap to send between processes."""

    columns: list[Columns | None]  # per position; ``None`` where the entry is missing
    tree: ChunkTree
    checked: list[_envelopes.Checked]  # per present row, in order
    undecoded: dict[int, bytes]  # the bytes of entries whose envelope did not decode
    reused: int  # signature verdicts taken from the earlier audit


class Prior(NamedTuple):
    """An earlier audit's record for one chunk: its top and its verified-entries bits."""

    top: bytes
    bits: bytes  # bit i: entry a + i verified (the chunk's slice of the bitmap)


def init_helper(location: str, candidates: dict[str, tuple[bytes, ...]]) -> None:
    """Open ``location`` read-only for this process and install the candidate keys."""
    global _READER
    _envelopes.set_candidates(candidates)
    _READER = LedgerReader.open(location)


def audit_chunk(
    a: int, b: int, wanted: list[tuple[int, int]], full: bool, payloads: bool,
    prior: Prior | None, reader: LedgerReader | None = None,
) -> ChunkAudit:
    """Read and check entries ``[a, b)`` (see the module docstring). ``reader`` defaults
    to the helper's own; ``prior`` lets verdicts of unchanged bytes be reused."""
    reader = reader or _READER
    assert reader is not None, "audit_chunk needs a reader (init_helper in helpers)"
    rows: list[Row | None] = [None] * (b - a)
    for r in reader.entries(a, b):
        if a <= r[0] < b:
            rows[r[0] - a] = r
    tree = chunk_tree(reader, a, rows, wanted)
    present = [r for r in rows if r is not None]
    known = None
    if prior is not None and tree.whole and tree.top == prior.top:
        known = [bool(prior.bits[i >> 3] >> (i & 7) & 1) for i in range(b - a)]
    checked = _envelopes.check_entries([(r[0], r[2]) for r in present], full, payloads, known)
    same: dict[str | None, str | None] = {}  # one object per repeated value: pickled once
    columns: list[Columns | None] = [
        None if r is None else (r[0], same.setdefault(r[3], r[3]), same.setdefault(r[4], r[4]),
                                same.setdefault(r[5], r[5]), same.setdefault(r[6], r[6]))
        for r in rows]
    undecoded = {r[0]: r[2] for r, c in zip(present, checked, strict=True)
                 if payloads and c[1] is not None}
    return ChunkAudit(columns, tree, checked, undecoded, sum(known) if known else 0)
