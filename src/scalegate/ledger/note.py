"""C2SP signed notes (c2sp.org/signed-note): text signed by one or more named keys.

A note is its text (ending in a newline), an empty line, and signature lines
``— <key name> base64(4-byte key ID || signature)``. Verification follows the
spec and ``golang.org/x/mod/sumdb/note``: signatures from unknown keys are
ignored, a known key whose signature fails rejects the whole note, and a note
with no verified signature from a trusted key is rejected.

A :class:`Verifier` is anything with ``name``, ``key_id`` (4 bytes) and
``verify(message, signature)``: :class:`~scalegate.ledger.keys.VerifierKey`
(Ed25519, type 0x01) and
:class:`~scalegate.ledger.cosignature.CosignatureVerifier` (type 0x04) both are.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from scalegate.errors import KeyMaterialError, NoteError
from scalegate.ledger.keys import check_key_name

__all__ = [
    "MAX_SIGNATURES",
    "NoteSignature",
    "OpenedNote",
    "Signer",
    "Verifier",
    "add_signature_lines",
    "open_note",
    "parse_note",
    "parse_signature_line",
    "sign_note",
    "signature_line",
    "verify_note",
]

#: Most signature lines a note may carry (the spec requires accepting at least 16;
#: Go's note package stops at 100, as here).
MAX_SIGNATURES = 100

_DASH = "— "  # U+2014 EM DASH, then a space


@runtime_checkable
class Verifier(Protocol):
    """A key that checks note signatures; ``key_id`` is the 4-byte C2SP key ID."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, message: bytes, signature: bytes) -> bool: ...


class Signer(Protocol):
    """A key that signs note text (e.g. :class:`~scalegate.ledger.keys.SigningKey`)."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class NoteSignature:
    """One parsed signature line: key name, 4-byte key ID, and the signature proper."""

    name: str
    key_id: bytes
    signature: bytes

    @property
    def keyid(self) -> str:
        """``name+hexid``, the key's printable identity."""
        return f"{self.name}+{self.key_id.hex()}"

    def line(self) -> str:
        """The signature line, ending in a newline."""
        return signature_line(self.name, self.key_id, self.signature)


@dataclass(frozen=True)
class OpenedNote:
    """A verified note: its text, the signatures that verified (with their verifiers),
    and the well-formed signatures from keys that were not trusted."""

    text: str
    verified: tuple[tuple[NoteSignature, Verifier], ...]
    unverified: tuple[NoteSignature, ...]

    @property
    def names(self) -> list[str]:
        """Names of the keys whose signatures verified, in note order, each once."""
        out: list[str] = []
        for sig, _ in self.verified:
            if sig.name not in out:
                out.append(sig.name)
        return out


def _check_chars(text: str, what: str) -> None:
    for i, ch in enumerate(text):
        if (ord(ch) < 0x20 and ch != "\n") or 0xD800 <= ord(ch) <= 0xDFFF:
            line = text.count("\n", 0, i) + 1
            raise NoteError(
                f"{what} contains the control character {ch!r} on line {line}; signed notes "
                "must be UTF-8 text without control characters other than newline."
            )


def signature_line(name: str, key_id: bytes, signature: bytes) -> str:
    """``— <name> base64(key_id || signature)`` followed by a newline."""
    if len(key_id) != 4:
        raise NoteError(f"key ID for {name!r} is {len(key_id)} bytes, expected 4.")
    return f"{_DASH}{name} {base64.b64encode(key_id + signature).decode('ascii')}\n"


def parse_signature_line(line: str) -> NoteSignature:
    """Parse one signature line (with or without its final newline)."""
    body = line[:-1] if line.endswith("\n") else line
    if not body.startswith(_DASH):
        raise NoteError(
            f"signature line {body[:60]!r} does not start with an em dash and a space ('— ')."
        )
    name, sep, b64 = body[len(_DASH) :].partition(" ")
    try:
        check_key_name(name, "signature key name")
    except KeyMaterialError as exc:
        raise NoteError(f"signature line for {name!r}: {exc.message}") from exc
    if not sep or not b64:
        raise NoteError(f"signature line for {name!r} has no signature after the key name.")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"signature line for {name!r}: signature is not standard base64.") from exc
    if len(raw) < 5:
        raise NoteError(
            f"signature line for {name!r} is {len(raw)} bytes; it needs a 4-byte key ID and "
            "a signature."
        )
    return NoteSignature(name, raw[:4], raw[4:])


def parse_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and signature lines, without verifying anything.

    Raises :class:`NoteError` when the note is malformed (not UTF-8, control
    characters, no blank line before the signatures, a bad signature line, or
    more than :data:`MAX_SIGNATURES` signatures).
    """
    if isinstance(note, bytes | bytearray):
        try:
            note = bytes(note).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"signed note is not valid UTF-8 ({exc}).") from exc
    _check_chars(note, "signed note")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError(
            "signed note has no empty line separating the text from the signatures.",
            hint="A note is text ending in a newline, an empty line, then '— name sig' lines.",
        )
    text, sigs = note[: split + 1], note[split + 2 :]
    if not sigs:
        raise NoteError("signed note has no signature lines after the empty line.")
    if not sigs.endswith("\n"):
        raise NoteError("signed note does not end with a newline after its last signature line.")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(
            f"signed note has {len(lines)} signature lines, more than the {MAX_SIGNATURES} "
            "accepted."
        )
    return text, [parse_signature_line(line) for line in lines]


def verify_note(note: str | bytes, verifiers: Sequence[Verifier]) -> OpenedNote:
    """Parse ``note`` and check its signatures against ``verifiers``.

    Unknown keys (no verifier with the same name *and* key ID) are ignored. A
    known key whose signature does not verify rejects the whole note, as do
    two different verifiers claiming the same name and key ID. Raises
    :class:`NoteError` when no trusted signature verifies.
    """
    text, sigs = parse_note(note)
    known: dict[tuple[str, bytes], list[Verifier]] = {}
    for v in verifiers:
        entry = known.setdefault((v.name, bytes(v.key_id)), [])
        if v not in entry:
            entry.append(v)
    message = text.encode("utf-8")
    verified: list[tuple[NoteSignature, Verifier]] = []
    unverified: list[NoteSignature] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in sigs:
        candidates = known.get((sig.name, sig.key_id))
        if not candidates:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if len(candidates) > 1:
            raise NoteError(
                f"ambiguous key {sig.keyid}: {len(candidates)} different trusted verifiers "
                "have this name and key ID.",
                hint="Remove the duplicate from the trusted keys.",
            )
        if (sig.name, sig.key_id) in seen:
            continue  # a repeated signature by one key counts once (as in Go's note.Open)
        seen.add((sig.name, sig.key_id))
        verifier = candidates[0]
        if not verifier.verify(message, sig.signature):
            raise NoteError(
                f"invalid signature for key {sig.keyid}: the note text was altered or the "
                "signature was made by another key.",
            )
        verified.append((sig, verifier))
    if not verified:
        present = ", ".join(s.keyid for s in unverified) or "none"
        trusted = ", ".join(f"{n}+{k.hex()}" for n, k in known) or "none"
        raise NoteError(
            f"signed note has no verifiable signatures (signed by: {present}; trusted: {trusted}).",
            hint="Check that the right verifier keys are configured.",
        )
    return OpenedNote(text, tuple(verified), tuple(unverified))


def open_note(note: str | bytes, verifiers: Sequence[Verifier]) -> tuple[str, list[str]]:
    """Verify ``note``; return its text and the names of the keys whose signatures verified."""
    opened = verify_note(note, verifiers)
    return opened.text, opened.names


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Sign ``text`` (which must end in a newline) with each signer; return the signed note."""
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline before it can be signed.")
    _check_chars(text, "note text")
    if not signers:
        raise NoteError("a signed note needs at least one signer.")
    if len(signers) > MAX_SIGNATURES:
        raise NoteError(f"cannot sign a note with more than {MAX_SIGNATURES} keys.")
    message = text.encode("utf-8")
    lines: list[str] = []
    done: set[tuple[str, bytes]] = set()
    for s in signers:
        try:
            check_key_name(s.name, "signer name")
        except KeyMaterialError as exc:
            raise NoteError(exc.message) from exc
        ident = (s.name, bytes(s.key_id))
        if ident in done:
            continue
        done.add(ident)
        lines.append(signature_line(s.name, bytes(s.key_id), s.sign(message)))
    return text + "\n" + "".join(lines)


def add_signature_lines(note: str, lines: str | Sequence[str]) -> str:
    """Append signature lines (e.g. a witness's ``add-checkpoint`` response) to a signed note.

    The lines are parsed first; a line already in the note is not repeated. The
    result is checked to be a well-formed note.
    """
    parse_note(note)
    if isinstance(lines, str):
        chunks = [ln for ln in lines.split("\n") if ln]
    else:
        chunks = [ln.rstrip("\n") for ln in lines]
    existing = set(note.split("\n"))
    out = note
    for ln in chunks:
        parse_signature_line(ln)
        if ln not in existing:
            out += ln + "\n"
            existing.add(ln)
    parse_note(out)
    return out
