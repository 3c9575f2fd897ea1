"""Ed25519 witness cosignatures (c2sp.org/tlog-cosignature, ``cosignature/v1``).

A witness signs ``cosignature/v1\\ntime <timestamp>\\n`` followed by the
checkpoint body; its note signature is the 8-byte big-endian timestamp and the
64-byte Ed25519 signature, under a key ID computed with signature type 0x04.
Its verifier key text is ``name+hexid+base64(0x04 || public key)``.

The Ed25519 message does not include the witness name, so one witness key must
never serve two witness names (the spec's rule; nothing here can enforce it).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scalegate.errors import KeyMaterialError, NoteError
from scalegate.ledger.checkpoint import Checkpoint, open_checkpoint
from scalegate.ledger.keys import SIG_TYPE_ED25519, SigningKey, VerifierKey, check_key_name, key_id
from scalegate.ledger.note import NoteSignature, OpenedNote, Verifier, signature_line

__all__ = [
    "MAX_TIMESTAMP",
    "SIG_TYPE_COSIGNATURE",
    "Cosignature",
    "CosignatureVerifier",
    "cosign",
    "cosignature_message",
    "cosignature_timestamp",
    "cosignatures",
    "open_cosigned_checkpoint",
    "require_quorum",
]

SIG_TYPE_COSIGNATURE = 0x04
MAX_TIMESTAMP = 2**63 - 1
_HEADER = "cosignature/v1\n"


def cosignature_message(checkpoint_body: str | bytes, timestamp: int) -> bytes:
    """The bytes a witness signs: ``cosignature/v1\\ntime <ts>\\n`` then the checkpoint body."""
    body = checkpoint_body.encode("utf-8") if isinstance(checkpoint_body, str) else checkpoint_body
    return f"{_HEADER}time {timestamp}\n".encode("ascii") + bytes(body)


def _check_timestamp(timestamp: int) -> None:
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp {timestamp} is outside 0..2^63-1.")


def _check_body(body: str) -> None:
    if not body.endswith("\n") or body.count("\n") < 3:
        raise NoteError(
            "a cosignature covers a checkpoint body: at least three lines, ending in a newline."
        )


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's Ed25519 cosignature key (type 0x04); usable wherever notes are verified."""

    name: str
    public: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_key_name(self.name, "witness name")
        if len(self.public) != 32:
            raise KeyMaterialError(
                f"witness key {self.name!r}: Ed25519 public key is {len(self.public)} bytes, "
                "expected 32."
            )

    @property
    def key_id(self) -> bytes:
        """``SHA-256(name || 0x0A || 0x04 || public key)[:4]``."""
        return key_id(self.name, self.public, SIG_TYPE_COSIGNATURE)

    @property
    def keyid(self) -> str:
        """``name+hexid``."""
        return f"{self.name}+{self.key_id.hex()}"

    @classmethod
    def from_key(cls, key: SigningKey | VerifierKey) -> CosignatureVerifier:
        """The cosignature verifier for a witness's Ed25519 key (same name and public key)."""
        vkey = key.vkey if isinstance(key, SigningKey) else key
        return cls(vkey.name, vkey.public)

    @classmethod
    def parse(cls, text: str) -> CosignatureVerifier:
        """Parse ``name+hexid+base64(0x04||pubkey)``.

        A plain Ed25519 note key (type 0x01, ID checked as such) is accepted too and
        converted, as Go's ``NewVerifierForCosignatureV1`` does.
        """
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise KeyMaterialError(f"witness key {text!r} is not of the form name+hexid+base64key.")
        name, hex_id, b64 = parts
        check_key_name(name, "witness name")
        if len(hex_id) != 8 or any(c not in "0123456789abcdefABCDEF" for c in hex_id):
            raise KeyMaterialError(f"witness key {name!r}: key ID {hex_id!r} is not 8 hex digits.")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyMaterialError(f"witness key {name!r}: key is not standard base64.") from exc
        if not raw or raw[0] not in (SIG_TYPE_COSIGNATURE, SIG_TYPE_ED25519):
            kind = f"0x{raw[0]:02x}" if raw else "none"
            raise KeyMaterialError(
                f"witness key {name!r} has signature type {kind}; expected 0x04 (Ed25519 "
                "cosignature/v1) or 0x01 (Ed25519)."
            )
        if len(raw) != 33:
            raise KeyMaterialError(
                f"witness key {name!r}: Ed25519 public key is {len(raw) - 1} bytes, expected 32."
            )
        want = key_id(name, raw[1:], raw[0])
        if bytes.fromhex(hex_id) != want:
            raise KeyMaterialError(
                f"witness key {name!r}: key ID {hex_id.lower()} does not match the name and key "
                f"(expected {want.hex()})."
            )
        return cls(name, raw[1:])

    def text(self) -> str:
        """``name+hexid+base64(0x04||pubkey)``."""
        b64 = base64.b64encode(bytes([SIG_TYPE_COSIGNATURE]) + self.public).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{b64}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Check a note signature: ``message`` is the checkpoint body, ``signature`` ts‖sig."""
        if len(signature) != 72:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(
                signature[8:], cosignature_message(message, timestamp)
            )
        except (InvalidSignature, ValueError):
            return False
        return True

    def __str__(self) -> str:
        return self.text()


def cosign(checkpoint_body: str, key: SigningKey, timestamp: int) -> str:
    """A witness's cosignature line on ``checkpoint_body`` at POSIX time ``timestamp``.

    Returns ``— <name> base64(key ID || timestamp || signature)`` and a newline,
    ready to append to the signed checkpoint.
    """
    _check_body(checkpoint_body)
    _check_timestamp(timestamp)
    sig = key.sign(cosignature_message(checkpoint_body, timestamp))
    kid = key_id(key.name, key.public, SIG_TYPE_COSIGNATURE)
    return signature_line(key.name, kid, timestamp.to_bytes(8, "big") + sig)


def cosignature_timestamp(signature: NoteSignature) -> int:
    """The POSIX timestamp inside a parsed Ed25519 cosignature line (not verified)."""
    if len(signature.signature) != 72:
        raise NoteError(
            f"signature by {signature.keyid} is {len(signature.signature)} bytes, not an Ed25519 "
            "cosignature (8-byte timestamp and 64-byte signature)."
        )
    timestamp = int.from_bytes(signature.signature[:8], "big")
    _check_timestamp(timestamp)
    return timestamp


@dataclass(frozen=True)
class Cosignature:
    """A verified witness cosignature: who, and the time it states."""

    name: str
    timestamp: int
    verifier: CosignatureVerifier = field(repr=False, compare=False)


def cosignatures(opened: OpenedNote) -> list[Cosignature]:
    """The verified cosignatures in an opened note (one per witness key, note order)."""
    out: list[Cosignature] = []
    for sig, verifier in opened.verified:
        if isinstance(verifier, CosignatureVerifier):
            out.append(Cosignature(sig.name, int.from_bytes(sig.signature[:8], "big"), verifier))
    return out


def require_quorum(
    found: Sequence[Cosignature], witnesses: Sequence[CosignatureVerifier], quorum: int
) -> None:
    """Raise :class:`NoteError` unless ``quorum`` distinct trusted witnesses cosigned."""
    if quorum < 0 or quorum > len(witnesses):
        raise NoteError(
            f"witness quorum {quorum} is impossible with {len(witnesses)} trusted witnesses."
        )
    got = {c.verifier for c in found if c.verifier in witnesses}
    if len(got) < quorum:
        names = ", ".join(sorted(c.name for c in found)) or "none"
        raise NoteError(
            f"checkpoint has {len(got)} valid witness cosignatures, the policy needs {quorum} "
            f"(cosigned by: {names}).",
            hint="Collect more cosignatures from the trusted witnesses before relying on it.",
        )


def open_cosigned_checkpoint(
    note: str | bytes,
    log_verifier: Verifier,
    witnesses: Sequence[CosignatureVerifier] = (),
    quorum: int = 0,
    *,
    origin: str | None = None,
) -> tuple[Checkpoint, list[Cosignature]]:
    """Verify a checkpoint's log signature and its witness cosignatures against a quorum.

    Returns the checkpoint and every valid cosignature from ``witnesses`` as
    (name, timestamp). A trusted witness whose cosignature fails rejects the note.
    """
    checkpoint, opened = open_checkpoint(
        note, log_verifier, origin=origin, extra_verifiers=witnesses
    )
    found = cosignatures(opened)
    require_quorum(found, witnesses, quorum)
    return checkpoint, found
