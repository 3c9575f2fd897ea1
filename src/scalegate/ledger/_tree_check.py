"""Recompute the RFC 6962 tree from the entry bytes and hold every stored hash against it.

Entries are taken in aligned chunks of ``2**CHUNK_LEVEL``. :func:`chunk_tree` (run by
the process that read the chunk) recomputes the chunk's leaves and interior levels and
compares them with the stored leaf hashes and nodes; :class:`TreeCheck` takes the
chunks' results in order and checks the levels above the chunks. A mismatch is
reported where the stored data was altered: a stored node that differs from the true
tree only because a child below it was altered (and reported) is a consequence, not a
second finding. The hashes of the perfect subtrees that make up the roots at the
requested sizes are kept on the way, so every needed root costs O(log n) after one
O(n) pass.
"""

from __future__ import annotations

from hashlib import sha256
from typing import NamedTuple

from scalegate.ledger._findings import Findings
from scalegate.ledger._reader import LedgerReader
from scalegate.ledger._tables import EntryRow
from scalegate.ledger.merkle import EMPTY_ROOT, fold_subtrees, perfect_subtrees
from scalegate.ledger.statements import Ref
from scalegate.units import counted

CHUNK_LEVEL = 11
_ABSENT = b"\x00" * 32  # stands in for a missing entry; the log is then reported broken


class TreeFinding(NamedTuple):
    """A stored hash that is not the tree's, found where the chunk was read."""

    kind: str  # entry-missing, leaf-hash, tree-node
    message: str
    index: int  # type: ignore[assignment]  # shadows tuple.index; the entry it concerns, or -1
    leaf: bytes  # that entry's recomputed leaf hash (for the reference)


class ChunkTree(NamedTuple):
    """One chunk's tree, as :func:`chunk_tree` found it."""

    leaves: list[bytes]  # true leaf hashes (``_ABSENT`` for a missing entry)
    findings: list[TreeFinding]
    nodes: int  # stored nodes compared
    kept: dict[tuple[int, int], bytes]  # the wanted (level, index) hashes in this chunk
    top: bytes | None  # the chunk's true top (full chunks only)
    stored_top: bytes | None  # the stored node at the top (full chunks only)
    missing: bool  # some entry of the chunk is missing

    @property
    def whole(self) -> bool:
        """A full chunk with every entry present (its top is then the entries' own)."""
        return self.top is not None and not self.missing


def chunk_tree(
    reader: LedgerReader, a: int, rows: list[EntryRow | None], wanted: list[tuple[int, int]]
) -> ChunkTree:
    """Check leaves ``[a, a + len(rows))`` and their stored nodes up to CHUNK_LEVEL
    (``None`` rows are missing entries); keep the hashes at ``wanted`` positions."""
    leaves: list[bytes] = []
    stored: list[bytes | None] = []
    findings: list[TreeFinding] = []
    full = len(rows) == 1 << CHUNK_LEVEL
    missing = False
    for i, r in enumerate(rows):
        if r is None:
            missing = True
            leaves.append(_ABSENT)
            stored.append(None)
            continue
        h = sha256(b"\x00" + r.data).digest()
        leaves.append(h)
        stored.append(r.leaf_hash)
        if r.leaf_hash != h:
            findings.append(TreeFinding(
                "leaf-hash", f"entry {a + i}: its stored leaf hash is not the hash of its "
                "data: the entry or its hash was altered.", a + i, h))
    want: dict[int, list[int]] = {}
    for level, idx in wanted:
        want.setdefault(level, []).append(idx)
    kept = _keep(want, 0, a, leaves, {})
    true, stored_level, nodes = leaves, stored, 0
    for level in range(1, CHUNK_LEVEL + 1):
        true, stored_level = check_level(reader, level, a >> level, true, stored_level, findings)
        if not true:
            break
        nodes += len(true)
        _keep(want, level, a >> level, true, kept)
    top = true[0] if full else None
    return ChunkTree(leaves, findings, nodes, kept, top, stored_level[0] if full else None,
                     missing)


def _keep(want: dict[int, list[int]], level: int, first: int, hashes: list[bytes],
          kept: dict[tuple[int, int], bytes]) -> dict[tuple[int, int], bytes]:
    for idx in want.get(level, ()):
        if first <= idx < first + len(hashes):
            kept[(level, idx)] = hashes[idx - first]
    return kept


def check_level(
    reader: LedgerReader, level: int, first: int, below: list[bytes],
    stored_below: list[bytes | None], findings: list[TreeFinding],
) -> tuple[list[bytes], list[bytes | None]]:
    """The true hashes of ``level`` over ``below`` and the stored ones, compared."""
    m = len(below) // 2
    if m == 0:
        return [], []
    true = [sha256(b"\x01" + below[2 * i] + below[2 * i + 1]).digest() for i in range(m)]
    found = dict(reader.nodes(level, first, first + m))
    kept = [found.get(first + i) for i in range(m)]
    for i in range(m):
        if kept[i] != true[i]:
            problem = _node_problem(level, first + i, kept[i], stored_below[2 * i],
                                    stored_below[2 * i + 1])
            if problem:
                findings.append(TreeFinding("tree-node", problem, -1, b""))
    return true, kept


def _node_problem(level: int, idx: int, got: bytes | None, left: bytes | None,
                  right: bytes | None) -> str | None:
    if got is None:
        return f"tree node (level {level}, index {idx}) is missing from the store."
    if left is not None and right is not None and sha256(b"\x01" + left + right).digest() != got:
        return (f"tree node (level {level}, index {idx}) is not the hash of the two stored "
                "below it: the stored tree was altered.")
    return None  # a child below was altered and reported; this node just follows it


class TreeState(NamedTuple):
    """The whole chunks a pass has checked: their true and stored tops."""

    tops: list[bytes]
    stored_tops: list[bytes | None]
    complete: bool  # no entry was missing


class TreeCheck:
    """One pass over a log of ``n`` entries, keeping what the roots at ``sizes`` need."""

    CHUNK_LEVEL = CHUNK_LEVEL

    def __init__(self, reader: LedgerReader, n: int, sizes: set[int], rep: Findings,
                 resume: TreeState | None = None) -> None:
        self.reader = reader
        self.n = n
        self.rep = rep
        self.complete = True if resume is None else resume.complete
        self._wanted: dict[int, set[int]] = {}
        for s in sizes:
            if 0 < s <= n:
                for level, idx in perfect_subtrees(0, s):
                    self._wanted.setdefault(level, set()).add(idx)
        self._kept: dict[tuple[int, int], bytes] = {}
        self._tops: list[bytes] = list(resume.tops) if resume else []
        self._stored_tops: list[bytes | None] = list(resume.stored_tops) if resume else []
        # Chunks an earlier pass checked are not read again: their tops stand for them.
        for idx in self._wanted.get(CHUNK_LEVEL, ()):
            if idx < len(self._tops):
                self._kept[(CHUNK_LEVEL, idx)] = self._tops[idx]

    def state(self) -> TreeState:
        """What a later pass over a longer log needs of this one (the whole chunks)."""
        return TreeState(list(self._tops), list(self._stored_tops), self.complete)

    def wanted(self, a: int, b: int) -> list[tuple[int, int]]:
        """The kept positions at or below CHUNK_LEVEL within entries ``[a, b)``."""
        return [(level, idx) for level, idxs in self._wanted.items() if level <= CHUNK_LEVEL
                for idx in idxs if a <= idx << level < b]

    def add(self, chunk: ChunkTree) -> None:
        """Take one chunk's result (chunks in order)."""
        for kind, message, index, leaf in chunk.findings:
            refs = [Ref(index=index, leaf_hash=leaf.hex())] if index >= 0 else None
            self.rep.violation(kind, message, refs)
        self.rep.count("nodes", chunk.nodes)
        self._kept.update(chunk.kept)
        self.complete = self.complete and not chunk.missing
        if chunk.top is not None:
            self._tops.append(chunk.top)
            self._stored_tops.append(chunk.stored_top)

    def finish(self) -> None:
        """Check the levels above the chunks and that no extra nodes are stored."""
        true, kept, level = self._tops, self._stored_tops, CHUNK_LEVEL
        findings: list[TreeFinding] = []
        while len(true) > 1:
            level += 1
            true, kept = check_level(self.reader, level, 0, true, kept, findings)
            self.rep.count("nodes", len(true))
            for idx in self._wanted.get(level, ()):
                if idx < len(true):
                    self._kept[(level, idx)] = true[idx]
        for kind, message, _, _ in findings:
            self.rep.violation(kind, message)
        for lvl, count in sorted(self.reader.node_counts().items()):
            want = self.n >> lvl if lvl >= 1 else 0
            if count > want:
                self.rep.violation("tree-node", f"tree level {lvl} stores "
                                   f"{counted(count, 'nodes')}; a tree of "
                                   f"{counted(self.n, 'entries')} has {want}: nodes were added.")

    def root(self, size: int) -> bytes:
        """The recomputed root of the first ``size`` entries (a size given at construction)."""
        if size == 0:
            return EMPTY_ROOT
        return fold_subtrees([self._kept[p] for p in perfect_subtrees(0, size)])
