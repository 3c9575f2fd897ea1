"""Offline inclusion receipts in the C2SP tlog-proof format (``c2sp.org/tlog-proof@v1``).

A receipt is the header line, an optional ``extra <base64>`` line (opaque and
*not* authenticated), ``index <n>``, the RFC 6962 inclusion proof one base64
hash per line from the leaf's sibling up, an empty line, and the log's signed
checkpoint verbatim (with any witness cosignatures). The entry itself is not in
the receipt: the verifier hashes the entry it holds, so a receipt proves
exactly that entry was logged.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from scalegate.errors import NoteError, ProofError
from scalegate.ledger import merkle
from scalegate.ledger.checkpoint import Checkpoint
from scalegate.ledger.cosignature import Cosignature, CosignatureVerifier, open_cosigned_checkpoint
from scalegate.ledger.note import Verifier, parse_note

__all__ = [
    "HEADER",
    "LeafHash",
    "Receipt",
    "VerifiedReceipt",
    "format_receipt",
    "parse_receipt",
    "verify_receipt",
]

HEADER = "c2sp.org/tlog-proof@v1"
_MAX_PROOF = 64  # a tree of at most 2^64 leaves has paths of at most 64 hashes
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class LeafHash:
    """Marks a value passed to :func:`verify_receipt` as an RFC 6962 leaf hash, not entry bytes."""

    value: bytes


@dataclass(frozen=True)
class Receipt:
    """A parsed tlog-proof: entry ``index``, inclusion ``proof``, the signed ``checkpoint``
    note (verbatim) and optional unauthenticated ``extra`` data."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def text(self) -> str:
        """The receipt in tlog-proof text form."""
        return format_receipt(self.index, self.proof, self.checkpoint, self.extra)


@dataclass(frozen=True)
class VerifiedReceipt:
    """What a verified receipt establishes: this leaf is at ``index`` in ``checkpoint``,
    signed by the log and cosigned by ``cosignatures``. ``extra`` is NOT authenticated."""

    index: int
    leaf_hash: bytes
    checkpoint: Checkpoint
    cosignatures: tuple[Cosignature, ...]
    extra: bytes | None


def format_receipt(
    index: int, proof: Sequence[bytes], checkpoint_note: str, extra: bytes | None = None
) -> str:
    """Build a tlog-proof receipt. ``checkpoint_note`` is the signed checkpoint, verbatim.

    Empty ``extra`` is the same as none (the spec omits the line when there is no data).
    """
    if index < 0 or index >= 2**64:
        raise ProofError(f"receipt index {index} is outside 0..2^64-1.")
    if len(proof) > _MAX_PROOF:
        raise ProofError(f"receipt inclusion proof has {len(proof)} hashes, at most 64 allowed.")
    for i, h in enumerate(proof):
        if len(h) != merkle.HASH_SIZE:
            raise ProofError(f"receipt inclusion proof hash {i} is {len(h)} bytes, expected 32.")
    parse_note(checkpoint_note)
    lines = [HEADER]
    if extra:
        lines.append("extra " + base64.b64encode(extra).decode("ascii"))
    lines.append(f"index {index}")
    lines.extend(base64.b64encode(h).decode("ascii") for h in proof)
    return "\n".join(lines) + "\n\n" + checkpoint_note


def parse_receipt(text: str | bytes) -> Receipt:
    """Parse a tlog-proof receipt strictly; raise :class:`ProofError` naming the bad line."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProofError(f"receipt is not valid UTF-8 ({exc}).") from exc
    head, sep, note = text.partition("\n\n")
    if not sep or not note:
        raise ProofError(
            "receipt has no empty line followed by a signed checkpoint.",
            hint=f"A receipt starts with {HEADER!r}, then 'index N', proof hashes, an empty "
            "line and the checkpoint.",
        )
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise ProofError(f"receipt line 1 is {lines[0][:60]!r}, expected {HEADER!r}.")
    pos = 1
    extra: bytes | None = None
    if pos < len(lines) and lines[pos].startswith("extra "):
        extra = _b64(lines[pos][len("extra ") :], f"receipt line {pos + 1} (extra data)")
        if not extra:
            raise ProofError(f"receipt line {pos + 1}: extra data is empty; omit the line instead.")
        pos += 1
    if pos >= len(lines) or not lines[pos].startswith("index "):
        got = lines[pos][:60] if pos < len(lines) else "(nothing)"
        raise ProofError(f"receipt line {pos + 1} is {got!r}, expected 'index <n>'.")
    index_text = lines[pos][len("index ") :]
    if len(index_text) > 20 or not _DECIMAL.fullmatch(index_text) or int(index_text) >= 2**64:
        raise ProofError(
            f"receipt line {pos + 1}: index {index_text[:30]!r} is not a decimal number without "
            "leading zeros below 2^64."
        )
    proof_lines = lines[pos + 1 :]
    if len(proof_lines) > _MAX_PROOF:
        raise ProofError(f"receipt has {len(proof_lines)} proof hashes, at most 64 allowed.")
    proof = []
    for i, line in enumerate(proof_lines, start=pos + 2):
        h = _b64(line, f"receipt line {i} (proof hash)")
        if len(h) != merkle.HASH_SIZE:
            raise ProofError(f"receipt line {i}: proof hash is {len(h)} bytes, expected 32.")
        proof.append(h)
    try:
        Checkpoint.parse(parse_note(note)[0])
    except NoteError as exc:
        raise ProofError(f"receipt checkpoint is not a well-formed signed note: {exc}") from exc
    return Receipt(int(index_text), tuple(proof), note, extra)


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProofError(f"{where} is not standard base64.") from exc


def verify_receipt(
    receipt_text: str | bytes | Receipt,
    entry: bytes | LeafHash,
    log_verifier: Verifier,
    witness_verifiers: Sequence[CosignatureVerifier] = (),
    quorum: int = 0,
    *,
    origin: str | None = None,
) -> VerifiedReceipt:
    """Verify a receipt offline against the entry it is for.

    ``entry`` is the logged entry's bytes (hashed here as an RFC 6962 leaf), or
    ``LeafHash(h)`` to pass the leaf hash itself. Checks, in order: the receipt's
    form; the log's signature on the checkpoint (and the ``origin`` if given);
    every trusted witness cosignature and the ``quorum``; then the inclusion proof
    of the leaf at the receipt's index in the checkpoint's tree. Raises
    :class:`NoteError` or :class:`ProofError` naming the check that failed.
    """
    receipt = receipt_text if isinstance(receipt_text, Receipt) else parse_receipt(receipt_text)
    checkpoint, found = open_cosigned_checkpoint(
        receipt.checkpoint, log_verifier, witness_verifiers, quorum, origin=origin
    )
    leaf = entry.value if isinstance(entry, LeafHash) else merkle.leaf_hash(entry)
    if receipt.index >= checkpoint.size:
        raise ProofError(
            f"receipt index {receipt.index} is not in the checkpoint's tree of size "
            f"{checkpoint.size}."
        )
    try:
        merkle.verify_inclusion(
            receipt.index, checkpoint.size, leaf, receipt.proof, checkpoint.root_hash
        )
    except ProofError as exc:
        what = "leaf hash" if isinstance(entry, LeafHash) else "entry"
        raise ProofError(
            f"receipt does not prove this {what} at index {receipt.index} of "
            f"{checkpoint.origin} (size {checkpoint.size}): {exc.message}",
            hint="The entry differs from the one logged, or the receipt is for another entry."
            + (
                "" if isinstance(entry, LeafHash) else " To pass a leaf hash, wrap it: LeafHash(h)."
            ),
        ) from exc
    return VerifiedReceipt(receipt.index, leaf, checkpoint, tuple(found), receipt.extra)
