"""RFC 6962 / RFC 9162 Merkle trees: transparency-dev vectors, the store contract, properties."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalegate.errors import ProofError
from scalegate.ledger import merkle

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc6962"
TREE = json.loads((DATA / "tree.json").read_text())
VECTOR_LEAVES = [merkle.leaf_hash(bytes.fromhex(h)) for h in TREE["leaf_inputs_hex"]]
VECTOR_ROOTS = [bytes.fromhex(h) for h in TREE["root_by_size_hex"]]


def _b64(s: str) -> bytes:
    return base64.b64decode(s)


def _cases(kind: str) -> list[Path]:
    return sorted((DATA / kind).rglob("*.json"))


def _id(p: Path) -> str:
    return str(p.relative_to(DATA))


# --- the vectors --------------------------------------------------------------------------


def test_vector_files_are_present() -> None:
    assert len(_cases("inclusion")) == 98
    assert len(_cases("consistency")) == 98
    assert (DATA / "README.md").read_text().startswith("# RFC 6962")


def test_hashing_primitives() -> None:
    assert hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    assert merkle.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    a, b = b"a" * 32, b"b" * 32
    assert merkle.node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert merkle.node_hash(a, b) != merkle.node_hash(b, a)


@pytest.mark.parametrize("size", range(len(VECTOR_ROOTS)))
def test_tree_roots(size: int) -> None:
    assert merkle.root(VECTOR_LEAVES[:size]) == VECTOR_ROOTS[size]
    rng = merkle.CompactRange()
    for h in VECTOR_LEAVES[:size]:
        rng.append(h)
    assert rng.root() == VECTOR_ROOTS[size]


@pytest.mark.parametrize("path", _cases("inclusion"), ids=_id)
def test_inclusion_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (
        case["leafIdx"],
        case["treeSize"],
        _b64(case["leafHash"]),
        [_b64(h) for h in case["proof"] or []],
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*args)
        return
    merkle.verify_inclusion(*args)
    index, size, leaf, proof, root = args
    assert merkle.root_from_inclusion(index, size, leaf, proof) == root
    if path.parent.name != "single-entry":  # those use a leaf outside tree.json
        assert root == VECTOR_ROOTS[size]
        assert leaf == VECTOR_LEAVES[index]
        assert merkle.inclusion_proof(index, VECTOR_LEAVES[:size]) == proof


@pytest.mark.parametrize("path", _cases("consistency"), ids=_id)
def test_consistency_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    size1, size2 = case["size1"], case["size2"]
    proof = [_b64(h) for h in case["proof"] or []]
    root1, root2 = _b64(case["root1"]), _b64(case["root2"])
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, proof, root1, root2)
        return
    merkle.verify_consistency(size1, size2, proof, root1, root2)
    if path.parent.name != "additional":  # those use placeholder roots
        assert (root1, root2) == (VECTOR_ROOTS[size1], VECTOR_ROOTS[size2])
        assert merkle.consistency_proof(size1, VECTOR_LEAVES[:size2]) == proof


# --- error messages name the check --------------------------------------------------------


def test_error_messages_name_the_check() -> None:
    leaves = VECTOR_LEAVES
    proof = merkle.consistency_proof(7, leaves[:8])
    with pytest.raises(ProofError, match=r"has 0 hashes, expected 4 for sizes 7→8"):
        merkle.verify_consistency(7, 8, [], VECTOR_ROOTS[7], VECTOR_ROOTS[8])
    with pytest.raises(ProofError, match=r"calculated second root .* does not match expected"):
        merkle.verify_consistency(7, 8, proof, VECTOR_ROOTS[7], VECTOR_ROOTS[6])
    with pytest.raises(ProofError, match=r"calculated first root .* does not match expected"):
        merkle.verify_consistency(7, 8, proof, VECTOR_ROOTS[6], VECTOR_ROOTS[8])
    with pytest.raises(ProofError, match="larger than the second"):
        merkle.verify_consistency(8, 7, proof, VECTOR_ROOTS[8], VECTOR_ROOTS[7])
    with pytest.raises(ProofError, match="empty tree"):
        merkle.verify_consistency(0, 8, [], merkle.EMPTY_ROOT, VECTOR_ROOTS[8])
    with pytest.raises(ProofError, match="same size but root"):
        merkle.verify_consistency(8, 8, [], VECTOR_ROOTS[7], VECTOR_ROOTS[8])
    with pytest.raises(ProofError, match="has 1 hashes, expected 0"):
        merkle.verify_consistency(8, 8, [VECTOR_ROOTS[1]], VECTOR_ROOTS[8], VECTOR_ROOTS[8])
    iproof = merkle.inclusion_proof(3, leaves[:8])
    with pytest.raises(ProofError, match="index is not below the size"):
        merkle.verify_inclusion(8, 8, leaves[3], iproof, VECTOR_ROOTS[8])
    with pytest.raises(ProofError, match="has 2 hashes, expected 3 for leaf 3 in a tree of size 8"):
        merkle.verify_inclusion(3, 8, leaves[3], iproof[:2], VECTOR_ROOTS[8])
    with pytest.raises(ProofError, match=r"calculated root [0-9a-f]{64} does not match expected"):
        merkle.verify_inclusion(3, 8, leaves[4], iproof, VECTOR_ROOTS[8])
    with pytest.raises(ProofError, match="leaf hash is 3 bytes long"):
        merkle.verify_inclusion(3, 8, b"abc", iproof, VECTOR_ROOTS[8])
    with pytest.raises(ProofError, match="proof hash 1 is 31 bytes long"):
        merkle.verify_inclusion(3, 8, leaves[3], [iproof[0], iproof[1][1:], iproof[2]], b"")


def test_generation_rejects_impossible_requests() -> None:
    with pytest.raises(ProofError, match="index must be below the size"):
        merkle.inclusion_proof(3, VECTOR_LEAVES[:3])
    with pytest.raises(ProofError, match="first size must be between 0"):
        merkle.consistency_proof(4, VECTOR_LEAVES[:3])
    assert merkle.consistency_proof(3, VECTOR_LEAVES[:3]) == []
    assert merkle.consistency_proof(0, VECTOR_LEAVES[:3]) == []


# --- the store contract: interior hashes give the same proofs ------------------------------

N_CONTRACT = 300
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(4096)]


@functools.cache
def _mth(lo: int, hi: int) -> bytes:
    """RFC 6962 §2.1 MTH over LEAVES[lo:hi], written literally (independent reference)."""
    n = hi - lo
    if n == 1:
        return LEAVES[lo]
    k = 1
    while k * 2 < n:
        k *= 2
    return merkle.node_hash(_mth(lo, lo + k), _mth(lo + k, hi))


def _rfc_path(m: int, lo: int, hi: int) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[lo:hi])."""
    n = hi - lo
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_rfc_path(m, lo, lo + k), _mth(lo + k, hi)]
    return [*_rfc_path(m - k, lo + k, hi), _mth(lo, lo + k)]


def _rfc_subproof(m: int, lo: int, hi: int, b: bool) -> list[bytes]:
    """RFC 6962 §2.1.2 SUBPROOF(m, D[lo:hi], b)."""
    n = hi - lo
    if m == n:
        return [] if b else [_mth(lo, hi)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*_rfc_subproof(m, lo, lo + k, b), _mth(lo + k, hi)]
    return [*_rfc_subproof(m - k, lo + k, hi, False), _mth(lo, lo + k)]


@pytest.fixture(scope="module")
def stored_nodes() -> dict[tuple[int, int], bytes]:
    """What a store persists: every (level, idx) -> hash that CompactRange.append returns."""
    nodes: dict[tuple[int, int], bytes] = {}
    rng = merkle.CompactRange()
    for h in LEAVES[:N_CONTRACT]:
        for level, idx, node in rng.append(h):
            assert (level, idx) not in nodes, "a subtree was reported twice"
            nodes[(level, idx)] = node
    return nodes


def _from_store(nodes: dict[tuple[int, int], bytes], ranges: list[tuple[int, int]]) -> list[bytes]:
    return [
        merkle.fold_subtrees([nodes[s] for s in merkle.perfect_subtrees(a, b)]) for a, b in ranges
    ]


def test_store_reproduces_inclusion_proofs(stored_nodes: dict[tuple[int, int], bytes]) -> None:
    for size in range(1, N_CONTRACT + 1):
        for index in range(size):
            want = _rfc_path(index, 0, size)
            got = _from_store(stored_nodes, merkle.inclusion_ranges(index, size))
            assert got == want, (index, size)


def test_store_reproduces_consistency_proofs(stored_nodes: dict[tuple[int, int], bytes]) -> None:
    for size2 in range(1, N_CONTRACT + 1):
        for size1 in range(1, size2 + 1):
            want = _rfc_subproof(size1, 0, size2, True)
            got = _from_store(stored_nodes, merkle.consistency_ranges(size1, size2))
            assert got == want, (size1, size2)


def test_reference_proofs_match_the_rfc_definitions() -> None:
    # The in-memory generators are O(n) per proof, so all pairs only up to 64, then a sample.
    pairs = [(a, n) for n in range(1, 65) for a in range(n)]
    pairs += [(a, n) for n in (100, 127, 128, 129, 255, 256, 257, 300) for a in range(0, n, 7)]
    for a, n in pairs:
        assert merkle.inclusion_proof(a, LEAVES[:n]) == _rfc_path(a, 0, n), (a, n)
        assert merkle.consistency_proof(a + 1, LEAVES[:n]) == _rfc_subproof(a + 1, 0, n, True)
    for n in range(N_CONTRACT + 1):
        assert merkle.root(LEAVES[:n]) == (_mth(0, n) if n else merkle.EMPTY_ROOT)


def test_compact_range_reports_every_node_and_restores(
    stored_nodes: dict[tuple[int, int], bytes],
) -> None:
    # every perfect subtree of the 300-leaf tree, and nothing else
    want = {(lvl, idx) for lvl in range(9) for idx in range(N_CONTRACT >> lvl)}
    assert set(stored_nodes) == want
    rng = merkle.CompactRange()
    for h in LEAVES[:77]:
        rng.append(h)
    assert len(rng.hashes) == bin(77).count("1")
    restored = merkle.CompactRange(rng.size, rng.hashes)
    for h in LEAVES[77:150]:
        rng.append(h)
        restored.append(h)
    assert restored.root() == rng.root() == _mth(0, 150)
    with pytest.raises(ProofError, match="needs 3 hashes"):
        merkle.CompactRange(7, rng.hashes[:2])
    assert merkle.CompactRange().root() == merkle.EMPTY_ROOT


def test_perfect_subtrees_and_fold() -> None:
    assert merkle.perfect_subtrees(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert merkle.perfect_subtrees(8, 13) == [(2, 2), (0, 12)]
    assert merkle.perfect_subtrees(4, 8) == [(2, 1)]
    for bad in ((2, 5), (1, 3), (4, 4), (3, 2)):
        with pytest.raises(ValueError):
            merkle.perfect_subtrees(*bad)
    with pytest.raises(ValueError):
        merkle.fold_subtrees([])


# --- properties on larger random trees ----------------------------------------------------


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


def _sides(index: int, size: int) -> list[bool]:
    """For each proof hash, whether it sits left of the path (the chaining pattern)."""
    return [start < index for start, _ in merkle.inclusion_ranges(index, size)]


_PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPS
@given(data=st.data(), size=st.integers(1, 3000))
def test_inclusion_property(data: st.DataObject, size: int) -> None:
    index = data.draw(st.integers(0, size - 1), label="index")
    leaves = LEAVES[:size]
    root = merkle.root(leaves)
    proof = merkle.inclusion_proof(index, leaves)
    merkle.verify_inclusion(index, size, leaves[index], proof, root)

    bit = data.draw(st.integers(0, 255), label="bit")
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = _flip(bad[i], bit)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size, leaves[index], bad, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, leaves[index], proof, _flip(root, bit))
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, _flip(leaves[index], bit), proof, root)
    for other in {index - 1, index + 1, index ^ 2, size} - {index}:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(other, size, leaves[index], proof, root)
    for other in {size * 2, size // 2} - {size}:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, other, leaves[index], proof, root)
    for other in (size - 1, size + 1):
        # An inclusion proof alone does not bind the size (the root does): leaf 0 has the same
        # path in trees of 3 and 4 leaves. A neighbouring size must fail unless the path has
        # the same shape, in which case it is the same statement about the same root.
        if index < other and _sides(index, other) == _sides(index, size):
            continue
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, other, leaves[index], proof, root)


@_PROPS
@given(data=st.data(), size2=st.integers(2, 3000))
def test_consistency_property(data: st.DataObject, size2: int) -> None:
    size1 = data.draw(st.integers(1, size2 - 1), label="size1")
    rng = merkle.CompactRange()
    root1 = b""
    for i, h in enumerate(LEAVES[:size2]):
        rng.append(h)
        if i + 1 == size1:
            root1 = rng.root()
    root2 = rng.root()
    proof = merkle.consistency_proof(size1, LEAVES[:size2])
    merkle.verify_consistency(size1, size2, proof, root1, root2)

    bit = data.draw(st.integers(0, 255), label="bit")
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = _flip(bad[i], bit)
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, bad, root1, root2)
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size2, proof, _flip(root1, bit), root2)
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size2, proof, root1, _flip(root2, bit))
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size2, proof[:-1], root1, root2)
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size2, [*proof, root1], root1, root2)
    for s1 in {size1 - 1, size1 + 1, size1 ^ 2} - {size1}:
        with pytest.raises(ProofError):
            merkle.verify_consistency(s1, size2, proof, root1, root2)
    for s2 in {size2 - 1, size2 + 1, size2 * 2} - {size2}:
        # As for inclusion, the proof is a suffix of leaf size1-1's path; a size2 whose path
        # has the same shape gives the same root and is not a different claim.
        if size1 < s2 and _sides(size1 - 1, s2) == _sides(size1 - 1, size2):
            continue
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, s2, proof, root1, root2)
