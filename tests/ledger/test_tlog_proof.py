"""C2SP tlog-proof receipts: exact layout, strict parsing, offline verification."""

from __future__ import annotations

import base64

import pytest

from scalegate.errors import NoteError, ProofError
from scalegate.ledger import merkle
from scalegate.ledger.checkpoint import Checkpoint, sign_checkpoint
from scalegate.ledger.cosignature import CosignatureVerifier, cosign
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.note import add_signature_lines
from scalegate.ledger.tlog_proof import (
    HEADER,
    LeafHash,
    Receipt,
    format_receipt,
    parse_receipt,
    verify_receipt,
)

# c2sp.org/tlog-proof example: the lines before the checkpoint
SPEC_EXTRA = "YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ"
SPEC_PROOF = [
    "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=",
    "B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=",
    "EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=",
    "RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=",
    "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=",
]

LOG = SigningKey.generate("example.com/fancylog")
WITNESSES = [SigningKey.generate(f"witness{i}.example") for i in range(3)]
TRUSTED = [CosignatureVerifier.from_key(w) for w in WITNESSES]
ENTRIES = [b'{"entry":%d}' % i for i in range(13)]
LEAVES = [merkle.leaf_hash(e) for e in ENTRIES]
CHECKPOINT = Checkpoint("example.com/fancylog", len(LEAVES), merkle.root(LEAVES))
NOTE = add_signature_lines(
    sign_checkpoint(CHECKPOINT, LOG),
    "".join(cosign(CHECKPOINT.body(), w, 1700000000) for w in WITNESSES[:2]),
)


def test_layout_matches_spec() -> None:
    proof = [base64.b64decode(h) for h in SPEC_PROOF]
    text = format_receipt(73894, proof, NOTE, extra=base64.b64decode(SPEC_EXTRA))
    expected = (
        "c2sp.org/tlog-proof@v1\nextra "
        + SPEC_EXTRA
        + "\nindex 73894\n"
        + "".join(h + "\n" for h in SPEC_PROOF)
        + "\n"
        + NOTE
    )
    assert text == expected
    receipt = parse_receipt(text)
    assert receipt == Receipt(73894, tuple(proof), NOTE, base64.b64decode(SPEC_EXTRA))
    assert receipt.text() == text
    # without extra data the line is omitted; an empty proof is allowed (a tree of one leaf)
    assert format_receipt(0, [], NOTE) == f"{HEADER}\nindex 0\n\n{NOTE}"
    assert parse_receipt(f"{HEADER}\nindex 0\n\n{NOTE}".encode()).extra is None


@pytest.mark.parametrize("index", range(len(ENTRIES)))
def test_verify_every_entry(index: int) -> None:
    text = format_receipt(index, merkle.inclusion_proof(index, LEAVES), NOTE)
    got = verify_receipt(text, ENTRIES[index], LOG.vkey, TRUSTED, 2, origin=CHECKPOINT.origin)
    assert (got.index, got.leaf_hash, got.checkpoint) == (index, LEAVES[index], CHECKPOINT)
    assert [c.name for c in got.cosignatures] == ["witness0.example", "witness1.example"]
    assert verify_receipt(text, LeafHash(LEAVES[index]), LOG.vkey).index == index


def test_wrong_entry_or_index_rejected() -> None:
    text = format_receipt(5, merkle.inclusion_proof(5, LEAVES), NOTE)
    with pytest.raises(ProofError, match="does not prove this entry at index 5") as err:
        verify_receipt(text, ENTRIES[6], LOG.vkey)
    assert "LeafHash" in str(err.value)
    with pytest.raises(ProofError, match="does not prove this leaf hash"):
        verify_receipt(text, LeafHash(LEAVES[6]), LOG.vkey)
    moved = text.replace("index 5\n", "index 4\n")
    with pytest.raises(ProofError, match="calculated root"):
        verify_receipt(moved, ENTRIES[5], LOG.vkey)
    beyond = text.replace("index 5\n", "index 13\n")
    with pytest.raises(ProofError, match="not in the checkpoint's tree of size 13"):
        verify_receipt(beyond, ENTRIES[5], LOG.vkey)
    proof = list(merkle.inclusion_proof(5, LEAVES))
    proof[1] = bytes([proof[1][0] ^ 1]) + proof[1][1:]
    with pytest.raises(ProofError, match="calculated root"):
        verify_receipt(format_receipt(5, proof, NOTE), ENTRIES[5], LOG.vkey)
    with pytest.raises(ProofError, match="has 3 hashes, expected 4"):
        verify_receipt(format_receipt(5, proof[:3], NOTE), ENTRIES[5], LOG.vkey)


def test_checkpoint_trust_is_enforced() -> None:
    text = format_receipt(2, merkle.inclusion_proof(2, LEAVES), NOTE)
    impostor = SigningKey.generate("example.com/fancylog")
    with pytest.raises(NoteError, match="no verifiable signatures"):
        verify_receipt(text, ENTRIES[2], impostor.vkey)
    with pytest.raises(NoteError, match="policy needs 3"):
        verify_receipt(text, ENTRIES[2], LOG.vkey, TRUSTED, 3)
    with pytest.raises(NoteError, match="not the expected log"):
        verify_receipt(text, ENTRIES[2], LOG.vkey, origin="example.com/otherlog")
    # a log that signs another tree of the same size cannot reuse the proof
    forged_cp = Checkpoint(CHECKPOINT.origin, CHECKPOINT.size, merkle.leaf_hash(b"x"))
    forged = format_receipt(2, merkle.inclusion_proof(2, LEAVES), sign_checkpoint(forged_cp, LOG))
    with pytest.raises(ProofError, match="calculated root"):
        verify_receipt(forged, ENTRIES[2], LOG.vkey)


def test_extra_is_reported_but_not_trusted() -> None:
    proof = merkle.inclusion_proof(1, LEAVES)
    a = verify_receipt(format_receipt(1, proof, NOTE, extra=b"one"), ENTRIES[1], LOG.vkey)
    b = verify_receipt(format_receipt(1, proof, NOTE, extra=b"two"), ENTRIES[1], LOG.vkey)
    assert (a.extra, b.extra) == (b"one", b"two")
    assert format_receipt(1, proof, NOTE, extra=b"") == format_receipt(1, proof, NOTE)


GOOD = format_receipt(3, merkle.inclusion_proof(3, LEAVES), NOTE, extra=b"x")
_LINES = GOOD.split("\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace(HEADER, "c2sp.org/tlog-proof@v2"), "line 1 is"),
        (GOOD.replace("index 3", "index 03"), "without leading zeros"),
        (GOOD.replace("index 3", "index -3"), "without leading zeros"),
        (GOOD.replace("index 3", "index " + str(2**64)), "below 2\\^64"),
        (GOOD.replace("index 3\n", ""), "expected 'index <n>'"),
        (GOOD.replace("extra eA==", "extra "), "extra data is empty"),
        (GOOD.replace("extra eA==", "extra %%"), "extra data\\) is not standard base64"),
        (GOOD.replace("extra eA==\nindex 3", "index 3\nextra eA=="), "proof hash\\) is not"),
        (GOOD.replace(_LINES[3], _LINES[3][:-4] + "AA=="), "proof hash is 31 bytes"),
        (GOOD.replace(_LINES[3], _LINES[3].replace("+", "-")), "not standard base64"),
        (GOOD.split("\n\n")[0] + "\n", "no empty line followed by a signed checkpoint"),
        (GOOD.replace(HEADER + "\n", HEADER + "\n\n"), "line 1 is|expected 'index"),
        (GOOD[: GOOD.index("\n\n")] + "\n\nnot a note\n", "not a well-formed signed note"),
        (GOOD.encode("utf-8")[:-200] + b"\xff", "not valid UTF-8"),
        (
            GOOD.replace(_LINES[3] + "\n", _LINES[3] + "\n" * 2 + _LINES[3] + "\n"),
            "not a well-formed signed note",
        ),
    ],
)
def test_malformed_receipts_rejected(text: str | bytes, message: str) -> None:
    with pytest.raises(ProofError, match=message):
        parse_receipt(text)


def test_format_refuses_bad_input() -> None:
    with pytest.raises(ProofError, match="outside"):
        format_receipt(-1, [], NOTE)
    with pytest.raises(ProofError, match="31 bytes"):
        format_receipt(0, [b"x" * 31], NOTE)
    with pytest.raises(NoteError):
        format_receipt(0, [], CHECKPOINT.body())  # not signed
