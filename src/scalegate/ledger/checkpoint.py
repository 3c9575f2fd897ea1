"""C2SP transparency-log checkpoints (c2sp.org/tlog-checkpoint): a tree head as note text.

The body is the origin line, the decimal tree size, the base64 RFC 6962 root
hash, then optional extension lines, each ending in a newline. It is signed
as a C2SP signed note by the log's key (whose name should be the origin) and
cosigned by witnesses.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from scalegate.errors import NoteError
from scalegate.ledger.note import OpenedNote, Signer, Verifier, sign_note, verify_note

__all__ = ["MAX_TREE_SIZE", "Checkpoint", "open_checkpoint", "sign_checkpoint"]

MAX_TREE_SIZE = 2**64 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: ``origin``, ``size``, ``root_hash`` and opaque ``extensions``."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin:
            raise NoteError("checkpoint origin is empty; it must name the log.")
        for what, line in [
            ("origin", self.origin),
            *(("extension line", e) for e in self.extensions),
        ]:
            if not line:
                raise NoteError(f"checkpoint {what} is empty; checkpoint lines must be non-empty.")
            if any(ord(c) < 0x20 for c in line):
                raise NoteError(
                    f"checkpoint {what} {line[:60]!r} contains a newline or control character."
                )
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError(f"checkpoint size {self.size} is outside 0..2^64-1.")
        if len(self.root_hash) != 32:
            raise NoteError(
                f"checkpoint root hash is {len(self.root_hash)} bytes, expected 32 (SHA-256)."
            )

    def body(self) -> str:
        """The note text: ``origin\\nsize\\nbase64(root)\\n`` plus one line per extension."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode("ascii")]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body strictly (it may not carry signature lines).

        The size is decimal without leading zeros, the root hash canonical standard
        base64 of exactly 32 bytes, every line non-empty, and the text ends in a newline.
        """
        if not text.endswith("\n"):
            raise NoteError("checkpoint text does not end with a newline.")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(
                f"checkpoint has {len(lines)} lines, expected at least 3 (origin, size, root hash)."
            )
        origin, size_text, root_text, *extensions = lines
        if len(size_text) > 20:  # (before int(): Python refuses to read 4300 digits and more)
            raise NoteError(f"checkpoint size (line 2) has {len(size_text)} characters; a size "
                            "is a decimal number below 2^64, at most 20 digits.")
        if not _DECIMAL.fullmatch(size_text):
            raise NoteError(
                f"checkpoint size {size_text[:40]!r} (line 2) is not a decimal number without "
                "leading zeros."
            )
        try:
            root = base64.b64decode(root_text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise NoteError(
                f"checkpoint root hash {root_text[:60]!r} (line 3) is not standard base64."
            ) from exc
        if base64.b64encode(root).decode("ascii") != root_text:
            raise NoteError(f"checkpoint root hash {root_text!r} (line 3) is not canonical base64.")
        if len(root) != 32:
            raise NoteError(
                f"checkpoint root hash (line 3) is {len(root)} bytes, expected 32 (SHA-256)."
            )
        return cls(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Signer | Sequence[Signer]) -> str:
    """The checkpoint as a signed note, signed by the log key(s)."""
    keys = [signers] if not isinstance(signers, Sequence) else list(signers)
    return sign_note(checkpoint.body(), keys)


def open_checkpoint(
    note: str | bytes,
    log_verifier: Verifier,
    *,
    origin: str | None = None,
    extra_verifiers: Sequence[Verifier] = (),
) -> tuple[Checkpoint, OpenedNote]:
    """Verify a signed checkpoint: the log's signature must be present and valid.

    ``origin`` (when given) must match the checkpoint's origin line.
    ``extra_verifiers`` (e.g. witness cosignature verifiers) are checked in the same
    pass, so a bad cosignature from a trusted witness also rejects the note.
    Returns the parsed checkpoint and the opened note (for cosignatures).
    """
    opened = verify_note(note, [log_verifier, *extra_verifiers])
    if not any(v is log_verifier or v == log_verifier for _, v in opened.verified):
        raise NoteError(
            f"checkpoint is not signed by the log key {log_verifier.name}+"
            f"{bytes(log_verifier.key_id).hex()}.",
            hint="Check that the log's verifier key is the one configured.",
        )
    checkpoint = Checkpoint.parse(opened.text)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(
            f"checkpoint origin {checkpoint.origin!r} is not the expected log {origin!r}."
        )
    return checkpoint, opened
