"""C2SP signed notes, checked against golang.org/x/mod/sumdb/note's TestSign / TestOpen."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from scalegate.errors import NoteError
from scalegate.ledger.keys import SigningKey, VerifierKey
from scalegate.ledger.note import (
    MAX_SIGNATURES,
    Verifier,
    add_signature_lines,
    open_note,
    parse_note,
    parse_signature_line,
    sign_note,
    verify_note,
)

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6"
    "KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33W"
    "Wd1RvMc+QQ=\n"
)
PETER = VerifierKey.parse(PETER_VKEY)
ENOCH = VerifierKey.parse(ENOCH_VKEY)


def test_sign_matches_go() -> None:
    signer = SigningKey.parse(PETER_SKEY)
    assert sign_note(TEXT, [signer]) == TEXT + "\n" + PETER_SIG
    assert sign_note(TEXT, [signer, signer]) == TEXT + "\n" + PETER_SIG  # one line per key


def test_sign_rejects_bad_input() -> None:
    signer = SigningKey.parse(PETER_SKEY)
    with pytest.raises(NoteError, match="must end with a newline"):
        sign_note("abc", [signer])
    with pytest.raises(NoteError, match="control character"):
        sign_note("a\x01b\n", [signer])
    with pytest.raises(NoteError, match="at least one signer"):
        sign_note(TEXT, [])


def test_open_one_verified_one_unknown() -> None:
    text, names = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER])
    assert text == TEXT and names == ["PeterNeumann"]
    opened = verify_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER])
    assert [s.keyid for s in opened.unverified] == ["EnochRoot+af0cfe78"]


def test_open_both_verified() -> None:
    text, names = open_note((TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode(), [PETER, ENOCH])
    assert text == TEXT and names == ["PeterNeumann", "EnochRoot"]


def test_open_none_verified() -> None:
    with pytest.raises(NoteError, match="no verifiable signatures") as err:
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])
    assert "PeterNeumann+c74f20a3" in str(err.value) and "EnochRoot+af0cfe78" in str(err.value)


@dataclass(frozen=True)
class _Impostor:
    """A second, different verifier claiming Enoch's name and key ID."""

    name: str = "EnochRoot"
    key_id: bytes = bytes.fromhex("af0cfe78")

    def verify(self, message: bytes, signature: bytes) -> bool:
        return True


def test_ambiguous_verifiers() -> None:
    assert isinstance(_Impostor(), Verifier)
    with pytest.raises(NoteError, match=r"ambiguous key EnochRoot\+af0cfe78"):
        open_note(TEXT + "\n" + ENOCH_SIG, [ENOCH, PETER, _Impostor()])
    # unused ambiguity does not matter; the same key listed twice is not ambiguous
    assert open_note(TEXT + "\n" + PETER_SIG, [ENOCH, PETER, _Impostor()])[1] == ["PeterNeumann"]
    assert open_note(TEXT + "\n" + ENOCH_SIG, [ENOCH, PETER, ENOCH])[1] == ["EnochRoot"]


def test_signature_count_limits() -> None:
    with pytest.raises(NoteError, match="101 signature lines"):
        open_note(TEXT + "\n" + PETER_SIG * 101, [PETER])
    with pytest.raises(NoteError, match="101 signature lines"):
        open_note(TEXT + "\n" + PETER_SIG * 101, [])
    assert open_note(TEXT + "\n" + PETER_SIG * MAX_SIGNATURES, [PETER])[1] == ["PeterNeumann"]
    # the spec requires accepting at least 16 signatures
    keys = [SigningKey.generate(f"signer{i}.example") for i in range(16)]
    note = sign_note(TEXT, keys)
    _, names = open_note(note, [k.vkey for k in keys])
    assert names == [k.name for k in keys]


def test_invalid_signature_rejects_the_note() -> None:
    broken = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteError, match=r"invalid signature for key PeterNeumann\+c74f20a3"):
        open_note(TEXT + "\n" + broken, [PETER])
    # a valid signature from another trusted key does not rescue it
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(TEXT + "\n" + ENOCH_SIG + broken, [PETER, ENOCH])
    # a changed text fails every signature
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(TEXT.replace("problem", "Problem") + "\n" + PETER_SIG, [PETER])


def test_duplicated_verified_and_unverified_signatures() -> None:
    enoch_abcd = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    note = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    opened = verify_note(note, [PETER])
    assert [s.name for s, _ in opened.verified] == ["PeterNeumann"]
    assert len(opened.unverified) == 2
    assert opened.unverified[0] == parse_signature_line(ENOCH_SIG)
    assert opened.unverified[1] == parse_signature_line(enoch_abcd)


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        "\x7f\x00" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG.replace("— ", "- "),  # hyphen, not em dash
        TEXT + "\n" + PETER_SIG.replace("— ", "—"),
        TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),  # bad base64 padding
        TEXT + "\n" + "— PeterNeumann \n",
        TEXT + "\n" + "— PeterNeumann\n",
        TEXT + "\n" + "— PeterNeumann AAAA\n",  # shorter than a key ID and one byte
        TEXT + "\n" + "— a+b " + PETER_SIG.split()[-1] + "\n",
        TEXT.replace("\n", "\r\n") + "\n" + PETER_SIG,
    ],
)
def test_malformed_notes_rejected(note: str) -> None:
    with pytest.raises(NoteError):
        open_note(note, [PETER])


def test_invalid_utf8_rejected() -> None:
    with pytest.raises(NoteError, match="not valid UTF-8"):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), [PETER])


def test_text_may_contain_empty_lines() -> None:
    key = SigningKey.generate("a.example/k")
    text = "first\n\nthird\n\n"
    note = sign_note(text, [key])
    assert open_note(note, [key.vkey]) == (text, ["a.example/k"])


def test_spec_example_parses() -> None:
    # c2sp.org/signed-note's example (its key is not published, so only the form is checked)
    note = (
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n"
        "\ned è subito sera.\n"
        "\n— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKON"
        "rMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
    )
    text, sigs = parse_note(note)
    assert text.endswith("ed è subito sera.\n") and "\n\n" in text
    assert sigs[0].name == "quasimodo.example/salvatore" and len(sigs[0].signature) == 64
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note(note, [PETER])


def test_add_signature_lines() -> None:
    note = TEXT + "\n" + PETER_SIG
    both = add_signature_lines(note, ENOCH_SIG)
    assert both == TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert add_signature_lines(both, [ENOCH_SIG, PETER_SIG]) == both
    assert open_note(both, [PETER, ENOCH])[1] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(NoteError):
        add_signature_lines(note, "not a signature line\n")
