"""C2SP tlog-checkpoint bodies: the spec's example, strict parsing, signing and opening."""

from __future__ import annotations

import base64

import pytest

from scalegate.errors import NoteError
from scalegate.ledger import merkle
from scalegate.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.note import parse_note, sign_note

# c2sp.org/tlog-checkpoint example
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_NOTE = (
    SPEC_BODY + "\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeO"
    "oRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)
ROOT = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")


def test_spec_example() -> None:
    cp = Checkpoint.parse(SPEC_BODY)
    assert cp == Checkpoint("example.com/behind-the-sofa", 20852163, ROOT)
    assert cp.body() == SPEC_BODY
    text, sigs = parse_note(SPEC_NOTE)
    assert Checkpoint.parse(text) == cp
    assert sigs[0].name == cp.origin


def test_extensions_and_empty_tree() -> None:
    cp = Checkpoint("log.example/x", 0, merkle.EMPTY_ROOT, ("ext one", "ext-2"))
    body = cp.body()
    assert body == (
        "log.example/x\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\next-2\n"
    )
    assert Checkpoint.parse(body) == cp


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SPEC_BODY[:-1], "does not end with a newline"),
        ("example.com/log\n5\n", "has 2 lines"),
        ("\n5\n" + SPEC_BODY.split("\n")[2] + "\n", "origin is empty"),
        (SPEC_BODY.replace("20852163", "020852163"), "without leading zeros"),
        (SPEC_BODY.replace("20852163", "00"), "without leading zeros"),
        (SPEC_BODY.replace("20852163", "+5"), "without leading zeros"),
        (SPEC_BODY.replace("20852163", "-5"), "without leading zeros"),
        (SPEC_BODY.replace("20852163", " 5"), "without leading zeros"),
        (SPEC_BODY.replace("20852163", "5 "), "without leading zeros"),
        (SPEC_BODY.replace("20852163", "0x10"), "without leading zeros"),
        (SPEC_BODY.replace("20852163", "١٢"), "without leading zeros"),  # non-ASCII digits
        (SPEC_BODY.replace("20852163", str(2**64)), "outside 0..2"),
        (
            SPEC_BODY.replace("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=", "AAAA"),
            "is 3 bytes, expected 32",
        ),
        (SPEC_BODY.replace("2I=", "2J="), "not canonical base64"),
        (SPEC_BODY.replace("/", "_"), "not standard base64"),
        (SPEC_BODY.replace("2I=", "2I"), "not standard base64"),
        (SPEC_BODY + "\n", "extension line is empty"),
        (SPEC_BODY + "ext\n\n", "extension line is empty"),
        ("a\rb\n1\n" + base64.b64encode(ROOT).decode() + "\n", "control character"),
    ],
)
def test_strict_parsing(text: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        Checkpoint.parse(text)


def test_constructor_checks() -> None:
    with pytest.raises(NoteError, match="32"):
        Checkpoint("a", 1, b"short")
    with pytest.raises(NoteError, match="outside"):
        Checkpoint("a", -1, ROOT)
    with pytest.raises(NoteError, match="newline"):
        Checkpoint("a", 1, ROOT, ("x\ny",))


def test_sign_and_open() -> None:
    log = SigningKey.generate("example.com/log")
    other = SigningKey.generate("example.com/other")
    cp = Checkpoint(
        "example.com/log", 3, merkle.root([merkle.leaf_hash(b"%d" % i) for i in range(3)])
    )
    note = sign_checkpoint(cp, log)
    got, opened = open_checkpoint(note, log.vkey, origin="example.com/log")
    assert got == cp and opened.names == ["example.com/log"]
    with pytest.raises(NoteError, match="not the expected log"):
        open_checkpoint(note, log.vkey, origin="example.com/elsewhere")
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_checkpoint(note, other.vkey)
    # trusted extra keys do not stand in for the log's own signature
    with pytest.raises(NoteError, match="not signed by the log key"):
        open_checkpoint(sign_checkpoint(cp, other), log.vkey, extra_verifiers=[other.vkey])
    # a forged size is caught by the signature
    forged = note.replace("\n3\n", "\n4\n", 1)
    with pytest.raises(NoteError, match="invalid signature"):
        open_checkpoint(forged, log.vkey)
    # a validly signed note that is not a checkpoint is still refused
    with pytest.raises(NoteError, match="has 1 lines"):
        open_checkpoint(sign_note("hello\n", [log]), log.vkey)
