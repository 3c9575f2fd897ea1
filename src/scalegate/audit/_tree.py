"""Recompute the RFC 6962 tree from the entry bytes and hold every stored hash against it.

Entries are taken in aligned chunks of ``2**CHUNK_LEVEL``; each chunk's leaves and
interior levels are recomputed and compared with the stored leaf hashes and nodes,
then the levels above the chunks. A mismatch is reported where the stored data was
altered: a stored node that differs from the true tree only because a child below it
was altered (and reported) is a consequence, not a second finding. The hashes of the
perfect subtrees that make up the roots at the requested sizes are kept on the way,
so every needed root costs O(log n) after one O(n) pass.
"""

from __future__ import annotations

from hashlib import sha256

from scalegate.audit._reader import LedgerReader, Row
from scalegate.audit.report import AuditReport
from scalegate.ledger.merkle import EMPTY_ROOT, fold_subtrees, perfect_subtrees
from scalegate.ledger.statements import Ref

_ABSENT = b"\x00" * 32  # stands in for a missing entry; the log is then reported broken


class TreeAudit:
    """One pass over a log of ``n`` entries, keeping what the roots at ``sizes`` need."""

    CHUNK_LEVEL = 11

    def __init__(self, reader: LedgerReader, n: int, sizes: set[int], rep: AuditReport) -> None:
        self.reader = reader
        self.n = n
        self.rep = rep
        self.complete = True
        self._wanted: dict[int, set[int]] = {}
        for s in sizes:
            if 0 < s <= n:
                for level, idx in perfect_subtrees(0, s):
                    self._wanted.setdefault(level, set()).add(idx)
        self._sizes = sizes
        self._kept: dict[tuple[int, int], bytes] = {}
        self._tops: list[bytes] = []
        self._stored_tops: list[bytes | None] = []
        #: The subtree hash recomputed from the last chunk's bytes (full, complete chunks).
        self.last_top: bytes | None = None

    def chunk(self, a: int, rows: list[Row | None]) -> list[bytes]:
        """Check leaves ``[a, a + len(rows))`` and their nodes; return the true leaf hashes."""
        leaves: list[bytes] = []
        stored: list[bytes | None] = []
        self.last_top = None
        whole = len(rows) == 1 << self.CHUNK_LEVEL
        for i, r in enumerate(rows):
            if r is None:
                self.complete = whole = False
                leaves.append(_ABSENT)
                stored.append(None)
                continue
            h = sha256(b"\x00" + r[2]).digest()
            leaves.append(h)
            stored.append(r[1])
            if r[1] != h:
                self.rep.violation("leaf-hash", f"entry {a + i}: its stored leaf hash is not the "
                                   "hash of its data: the entry or its hash was altered.",
                                   [Ref(index=a + i, leaf_hash=h.hex())])
        self._keep(0, a, leaves)
        true, kept = leaves, stored
        for level in range(1, self.CHUNK_LEVEL + 1):
            true, kept = self._level(level, a >> level, true, kept)
            if not true:
                break
        if len(rows) == 1 << self.CHUNK_LEVEL:
            self._tops.append(true[0])
            self._stored_tops.append(kept[0])
            if whole:
                self.last_top = true[0]
        return leaves

    def finish(self) -> None:
        """Check the levels above the chunks and that no extra nodes are stored."""
        true, kept, level = self._tops, self._stored_tops, self.CHUNK_LEVEL
        while len(true) > 1:
            level += 1
            true, kept = self._level(level, 0, true, kept)
        for lvl, count in sorted(self.reader.node_counts().items()):
            want = self.n >> lvl if lvl >= 1 else 0
            if count > want:
                self.rep.violation("tree-node", f"tree level {lvl} stores {count} node(s); a "
                                   f"tree of {self.n} entries has {want}: nodes were added.")

    def root(self, size: int) -> bytes:
        """The recomputed root of the first ``size`` entries (a size given at construction)."""
        if size == 0:
            return EMPTY_ROOT
        return fold_subtrees([self._kept[p] for p in perfect_subtrees(0, size)])

    def _keep(self, level: int, first: int, hashes: list[bytes]) -> None:
        for idx in self._wanted.get(level, ()):
            if first <= idx < first + len(hashes):
                self._kept[(level, idx)] = hashes[idx - first]

    def _level(
        self, level: int, first: int, below: list[bytes], stored_below: list[bytes | None]
    ) -> tuple[list[bytes], list[bytes | None]]:
        m = len(below) // 2
        if m == 0:
            return [], []
        true = [sha256(b"\x01" + below[2 * i] + below[2 * i + 1]).digest() for i in range(m)]
        found = dict(self.reader.nodes(level, first, first + m))
        kept = [found.get(first + i) for i in range(m)]
        self.rep.count("nodes", m)
        for i in range(m):
            if kept[i] != true[i]:
                self._node_problem(level, first + i, kept[i], stored_below[2 * i],
                                   stored_below[2 * i + 1])
        self._keep(level, first, true)
        return true, kept

    def _node_problem(self, level: int, idx: int, got: bytes | None, left: bytes | None,
                      right: bytes | None) -> None:
        if got is None:
            self.rep.violation("tree-node", f"tree node (level {level}, index {idx}) is missing "
                               "from the store.")
        elif left is not None and right is not None and \
                sha256(b"\x01" + left + right).digest() != got:
            self.rep.violation("tree-node", f"tree node (level {level}, index {idx}) is not the "
                               "hash of the two stored below it: the stored tree was altered.")
        # else: a child below was altered and reported; this node just follows it.
