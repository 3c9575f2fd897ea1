"""Ed25519 witness cosignatures (c2sp.org/tlog-cosignature v1) and witness quorums."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scalegate.errors import KeyMaterialError, NoteError
from scalegate.ledger import merkle
from scalegate.ledger.checkpoint import Checkpoint, sign_checkpoint
from scalegate.ledger.cosignature import (
    CosignatureVerifier,
    cosign,
    cosignature_message,
    cosignature_timestamp,
    open_cosigned_checkpoint,
)
from scalegate.ledger.keys import SigningKey, VerifierKey
from scalegate.ledger.note import add_signature_lines, open_note, parse_signature_line

SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def test_message_matches_spec_example() -> None:
    assert cosignature_message(SPEC_BODY, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )


def test_timestamps_in_published_cosignatures() -> None:
    # c2sp.org/tlog-cosignature's example line: its timestamp is the example message's
    spec_line = (
        "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
        "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
    )
    assert cosignature_timestamp(parse_signature_line(spec_line)) == 1679315147
    # transparency-dev/formats TestCosignatureTimestamp
    go = parse_signature_line(
        "— w ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOwor"
        "DcFiEBYJXORmnFBOBA=="
    )
    assert cosignature_timestamp(go) == 1727964367
    plain = parse_signature_line(
        "— w eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/"
        "4xkNQY="
    )
    with pytest.raises(NoteError, match="not an Ed25519 cosignature"):
        cosignature_timestamp(plain)


def test_verifier_keys_from_go_tests() -> None:
    # transparency-dev/formats TestCoSigV1NewVerifier: a native 0x04 key with its real key ID
    native = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
    v = CosignatureVerifier.parse(native)
    assert v.key_id == bytes.fromhex("da77ade7") and v.text() == native
    # a plain Ed25519 (0x01) key converts, taking the 0x04 key ID
    plain = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
    converted = CosignatureVerifier.parse(plain)
    assert converted.public == VerifierKey.parse(plain).public
    assert converted.key_id != bytes.fromhex("7997405c")
    assert CosignatureVerifier.parse(converted.text()) == converted
    for bad in (
        "bananas.sigstore.dev+12344556",
        "rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!",
        "rekor.sigstore.dev+12345678+AwEB",
        "rekor.sigstore.dev+NOT_A_NUMBER+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
        "remora.n621.de+00000000+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
    ):
        with pytest.raises(KeyMaterialError):
            CosignatureVerifier.parse(bad)


def test_cosign_produces_the_specified_bytes() -> None:
    witness = SigningKey.generate("witness.example/w1")
    line = cosign(SPEC_BODY, witness, 1679315147)
    sig = parse_signature_line(line)
    assert sig.name == "witness.example/w1"
    assert sig.key_id == CosignatureVerifier.from_key(witness).key_id
    assert sig.key_id != witness.key_id  # 0x04, not 0x01
    assert sig.signature[:8] == (1679315147).to_bytes(8, "big") and len(sig.signature) == 72
    # verify independently over the message spelled out as in the spec
    message = (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    Ed25519PublicKey.from_public_bytes(witness.public).verify(sig.signature[8:], message)


def test_cosignature_verifies_in_a_note_and_covers_everything() -> None:
    log = SigningKey.generate("example.com/log")
    witness = SigningKey.generate("witness.example/w1")
    wv = CosignatureVerifier.from_key(witness)
    body = SPEC_BODY.replace("behind-the-sofa", "log") + "Extendo\n"
    note = sign_checkpoint(Checkpoint.parse(body), log) + cosign(body, witness, 1700000000)
    assert open_note(note, [log.vkey, wv])[1] == ["example.com/log", "witness.example/w1"]
    # the witness's plain Ed25519 key does not verify a cosignature: different key ID
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note(note, [witness.vkey])
    # the cosignature covers extension lines and the timestamp
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(note.replace("Extendo", "Extenda"), [log.vkey, wv])
    sig = parse_signature_line(note.split("\n")[-2])
    moved = sig.signature[:7] + bytes([sig.signature[7] ^ 1]) + sig.signature[8:]
    assert not wv.verify(body.encode(), moved)
    assert wv.verify(body.encode(), sig.signature)
    assert not wv.verify(body.encode(), sig.signature[:-1])


def test_cosign_rejects_bad_input() -> None:
    witness = SigningKey.generate("w.example")
    with pytest.raises(NoteError, match=r"outside 0\.\.2"):
        cosign(SPEC_BODY, witness, 2**63)
    with pytest.raises(NoteError, match=r"outside 0\.\.2"):
        cosign(SPEC_BODY, witness, -1)
    with pytest.raises(NoteError, match="checkpoint body"):
        cosign("one line\n", witness, 1)
    # a signature claiming a timestamp above 2^63-1 never verifies
    wv = CosignatureVerifier.from_key(witness)
    assert not wv.verify(SPEC_BODY.encode(), b"\xff" * 8 + bytes(64))


def _cosigned(n_witnesses: int, signing: int) -> tuple[str, SigningKey, list[SigningKey]]:
    log = SigningKey.generate("example.com/log")
    witnesses = [SigningKey.generate(f"witness.example/w{i}") for i in range(n_witnesses)]
    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(5)]
    cp = Checkpoint("example.com/log", 5, merkle.root(leaves))
    note = sign_checkpoint(cp, log)
    lines = [cosign(cp.body(), w, 1700000000 + i) for i, w in enumerate(witnesses[:signing])]
    return add_signature_lines(note, "".join(lines)), log, witnesses


def test_quorum() -> None:
    note, log, witnesses = _cosigned(3, 2)
    trusted = [CosignatureVerifier.from_key(w) for w in witnesses]
    cp, found = open_cosigned_checkpoint(note, log.vkey, trusted, 2)
    assert cp.size == 5
    assert [(c.name, c.timestamp) for c in found] == [
        ("witness.example/w0", 1700000000),
        ("witness.example/w1", 1700000001),
    ]
    with pytest.raises(NoteError, match="has 2 valid witness cosignatures, the policy needs 3"):
        open_cosigned_checkpoint(note, log.vkey, trusted, 3)
    with pytest.raises(NoteError, match="impossible"):
        open_cosigned_checkpoint(note, log.vkey, trusted, 4)
    # unknown witnesses are ignored, not counted
    with pytest.raises(NoteError, match="has 0 valid witness cosignatures"):
        open_cosigned_checkpoint(note, log.vkey, trusted[2:], 1)


def test_repeated_cosignature_counts_once_and_a_bad_one_rejects() -> None:
    note, log, witnesses = _cosigned(2, 1)
    trusted = [CosignatureVerifier.from_key(w) for w in witnesses]
    line = note.split("\n")[-2] + "\n"
    doubled = note + line  # the same witness twice
    with pytest.raises(NoteError, match="has 1 valid witness cosignatures"):
        open_cosigned_checkpoint(doubled, log.vkey, trusted, 2)
    raw = bytearray(base64.b64decode(line.split()[-1]))
    raw[-1] ^= 1
    bad = note.replace(line, line.split()[0] + " " + line.split()[1] + " ")
    bad += base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(NoteError, match=r"invalid signature for key witness\.example/w0"):
        open_cosigned_checkpoint(bad, log.vkey, trusted, 0)


def test_witness_response_lines_parse() -> None:
    # c2sp.org/tlog-witness example add-checkpoint response body
    response = (
        "— witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSv"
        "VjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n"
        "— witness.example/w2 AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZgrrKbY"
        "KA7nC3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==\n"
    )
    note = sign_checkpoint(Checkpoint.parse(SPEC_BODY), SigningKey.generate("l.example"))
    merged = add_signature_lines(note, response)
    assert merged.endswith(response)
    # the example's signature bytes are placeholders: they parse as note signatures only
    assert [parse_signature_line(ln).name for ln in response.splitlines()] == [
        "witness.example/w1",
        "witness.example/w2",
    ]
