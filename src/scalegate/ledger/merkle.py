"""RFC 6962 / RFC 9162 Merkle trees over SHA-256: hashing, proofs, compact ranges.

Leaves are hashed as ``SHA-256(0x00 || data)`` and interior nodes as
``SHA-256(0x01 || left || right)``; a tree of ``n`` leaves splits at the largest
power of two smaller than ``n``. Proof generation here works from leaf hashes in
memory (the reference); a store that keeps interior hashes answers the same
proofs in O(log n) reads with :func:`inclusion_ranges` / :func:`consistency_ranges`,
:func:`perfect_subtrees` and :func:`fold_subtrees`, fed by what
:meth:`CompactRange.append` returns.

Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 and fails closed with a
:class:`~scalegate.errors.ProofError` that names the check that failed.

A consistency proof *from the empty tree* (``size1 == 0``) is always rejected,
as the transparency-dev test vectors require: every tree extends the empty
tree, so such a proof proves nothing, and the log layer treats size 0 itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from scalegate.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "consistency_proof",
    "consistency_ranges",
    "fold_subtrees",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "perfect_subtrees",
    "root",
    "root_from_inclusion",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _hex(h: bytes) -> str:
    return h.hex() if h else "<empty>"


def _check_hash(what: str, h: bytes) -> None:
    if len(h) != HASH_SIZE:
        raise ProofError(f"{what} is {len(h)} bytes long, expected a {HASH_SIZE}-byte SHA-256 hash")


# --- tree hashes --------------------------------------------------------------------------


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash of a list of leaf hashes (``EMPTY_ROOT`` for none)."""
    rng = CompactRange()
    for h in leaf_hashes:
        rng.append(h)
    return rng.root()


def _range_hash(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """RFC 6962 hash of the node covering leaves ``[start, end)``."""
    return fold_subtrees(
        [_perfect_hash(leaf_hashes, lvl, idx) for lvl, idx in perfect_subtrees(start, end)]
    )


def _perfect_hash(leaf_hashes: Sequence[bytes], level: int, idx: int) -> bytes:
    level_hashes = list(leaf_hashes[idx << level : (idx + 1) << level])
    while len(level_hashes) > 1:
        level_hashes = [
            node_hash(level_hashes[i], level_hashes[i + 1]) for i in range(0, len(level_hashes), 2)
        ]
    return level_hashes[0]


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Decompose the tree node covering leaves ``[start, end)`` into perfect subtrees.

    Returns ``(level, idx)`` pairs left to right, largest first; subtree
    ``(level, idx)`` covers leaves ``[idx * 2**level, (idx + 1) * 2**level)``.
    The range must be a node of the RFC 6962 tree of some size (every range from
    :func:`inclusion_ranges` and :func:`consistency_ranges` is).
    """
    n = end - start
    if start < 0 or n <= 0:
        raise ValueError(f"leaf range [{start}, {end}) is empty or negative")
    if start % (1 << (n - 1).bit_length()):
        raise ValueError(f"leaf range [{start}, {end}) is not a node of any RFC 6962 tree")
    out: list[tuple[int, int]] = []
    pos = start
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            out.append((level, pos >> level))
            pos += 1 << level
    return out


def fold_subtrees(hashes: Sequence[bytes]) -> bytes:
    """Combine left-to-right perfect-subtree hashes of a node into its RFC 6962 hash."""
    if not hashes:
        raise ValueError("cannot fold an empty list of subtree hashes")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


# --- proof shapes -------------------------------------------------------------------------


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges ``[start, end)`` whose hashes form the inclusion proof, in proof order.

    This is RFC 6962 ``PATH(index, D[size])``, bottom to top.
    """
    if not 0 <= index < size:
        raise ProofError(
            f"cannot prove inclusion of leaf {index} in a tree of size {size}: "
            "the index must be below the size"
        )
    out: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo = lo + k
    out.reverse()
    return out


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form the consistency proof from ``size1`` to ``size2``.

    This is RFC 6962 ``PROOF(size1, D[size2])`` (RFC 9162 ``SUBPROOF``); it is empty
    when ``size1`` is 0 or equals ``size2``.
    """
    if size1 < 0 or size1 > size2:
        raise ProofError(
            f"cannot prove consistency from size {size1} to size {size2}: "
            "the first size must be between 0 and the second"
        )
    if size1 in (0, size2):
        return []
    out: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, size2, size1, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                out.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    out.reverse()
    return out


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Inclusion proof of leaf ``index`` in the tree of all ``leaf_hashes`` (in memory)."""
    return [_range_hash(leaf_hashes, a, b) for a, b in inclusion_ranges(index, len(leaf_hashes))]


def consistency_proof(size1: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Consistency proof from the tree's first ``size1`` leaves to all ``leaf_hashes``."""
    return [_range_hash(leaf_hashes, a, b) for a, b in consistency_ranges(size1, len(leaf_hashes))]


# --- verification (RFC 9162) --------------------------------------------------------------


def root_from_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` implies for leaf ``index`` of a tree of ``size`` (RFC 9162 §2.1.3.2).

    Raises :class:`ProofError` when the index, the hash sizes or the proof length are wrong.
    """
    if index < 0 or index >= size:
        raise ProofError(
            f"inclusion proof for leaf {index} in a tree of size {size}: "
            "the index is not below the size"
        )
    _check_hash("leaf hash", leaf_hash)
    expected = len(inclusion_ranges(index, size))
    if len(proof) != expected:
        raise ProofError(
            f"inclusion proof has {len(proof)} hashes, expected {expected} "
            f"for leaf {index} in a tree of size {size}"
        )
    fn, sn, r = index, size - 1, leaf_hash
    for i, p in enumerate(proof):
        _check_hash(f"inclusion proof hash {i}", p)
        if sn == 0:  # unreachable once the length is checked; kept as RFC 9162 states it
            raise ProofError(f"inclusion proof is longer than the path of leaf {index}")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof is shorter than the path of leaf {index}")
    return r


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``proof`` proves leaf ``index`` with ``leaf_hash`` in the tree ``(size, root)``.

    Returns ``None`` on success and raises :class:`ProofError` otherwise.
    """
    calculated = root_from_inclusion(index, size, leaf_hash, proof)
    if calculated != root:
        raise ProofError(
            f"inclusion proof for leaf {index} in a tree of size {size}: calculated root "
            f"{_hex(calculated)} does not match expected root {_hex(root)}"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree ``(size2, root2)`` extends ``(size1, root1)`` (RFC 9162 §2.1.4.2).

    Equal sizes need an empty proof and equal roots. A proof from ``size1 == 0`` is
    rejected (see the module docstring). Raises :class:`ProofError` on any failure.
    """
    where = f"sizes {size1}→{size2}"
    if size1 < 0 or size2 < 0:
        raise ProofError(f"consistency proof for {where}: tree sizes cannot be negative")
    if size1 > size2:
        raise ProofError(
            f"consistency proof for {where}: the first tree is larger than the second "
            "(a log never shrinks)"
        )
    if size1 == 0:
        raise ProofError(
            f"consistency proof for {where}: a proof from the empty tree is meaningless; "
            "every tree extends the empty tree, check size 0 without a proof"
        )
    if size1 == size2:
        if proof:
            raise ProofError(f"consistency proof has {len(proof)} hashes, expected 0 for {where}")
        if root1 != root2:
            raise ProofError(
                f"consistency proof for {where}: the trees have the same size but root "
                f"{_hex(root1)} does not match root {_hex(root2)}"
            )
        return
    expected = len(consistency_ranges(size1, size2))
    if len(proof) != expected:
        raise ProofError(
            f"consistency proof has {len(proof)} hashes, expected {expected} for {where}"
        )
    for i, p in enumerate(proof):
        _check_hash(f"consistency proof hash {i}", p)
    _check_hash("first root", root1)
    _check_hash("second root", root2)

    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root starts the path
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # unreachable once the length is checked; kept as RFC 9162 states it
            raise ProofError(f"consistency proof for {where} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof for {where} is too short")
    if fr != root1:
        raise ProofError(
            f"consistency proof for {where}: calculated first root {_hex(fr)} "
            f"does not match expected root {_hex(root1)}"
        )
    if sr != root2:
        raise ProofError(
            f"consistency proof for {where}: calculated second root {_hex(sr)} "
            f"does not match expected root {_hex(root2)}"
        )


# --- compact ranges -----------------------------------------------------------------------


class CompactRange:
    """The right edge of a growing tree ``[0, size)``: one perfect-subtree hash per set bit.

    ``hashes`` runs from the largest (leftmost) subtree to the smallest, so the state
    of a log of any size is at most 64 hashes, and :meth:`append` tells the caller
    every interior node that became final, for a store to persist.
    """

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ProofError(f"compact range size {size} is negative")
        want = size.bit_count()
        if len(hashes) != want:
            raise ProofError(
                f"compact range of size {size} needs {want} hashes (one per set bit), "
                f"got {len(hashes)}"
            )
        for i, h in enumerate(hashes):
            _check_hash(f"compact range hash {i}", h)
        self.size = size
        self._hashes = [bytes(h) for h in hashes]

    @property
    def hashes(self) -> list[bytes]:
        """The perfect-subtree hashes, largest first (a copy; persist it to restore)."""
        return list(self._hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf; return every perfect subtree ``(level, idx, hash)`` it completed.

        The first item is the leaf itself at level 0, then each parent it closed.
        """
        _check_hash("leaf hash", leaf_hash)
        h, level, idx = bytes(leaf_hash), 0, self.size
        new = [(0, idx, h)]
        while idx & 1:
            h = node_hash(self._hashes.pop(), h)
            level += 1
            idx >>= 1
            new.append((level, idx, h))
        self._hashes.append(h)
        self.size += 1
        return new

    def root(self) -> bytes:
        """The RFC 6962 root of the tree ``[0, size)``."""
        return fold_subtrees(self._hashes) if self._hashes else EMPTY_ROOT

    def __repr__(self) -> str:
        return f"CompactRange(size={self.size})"
