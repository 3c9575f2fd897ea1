"""The ledger's stored checkpoints, judged against the trust file alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from scalegate.audit.report import AuditReport
from scalegate.audit.trust import TrustFile
from scalegate.errors import NoteError
from scalegate.ledger import (
    NoteSignature,
    Verifier,
    cosignatures,
    open_checkpoint,
    parse_note,
)
from scalegate.units import counted


@dataclass(frozen=True)
class StoredCheckpoint:
    """A stored checkpoint: ``valid`` when signed by the trusted log key for the trusted
    origin (every trusted cosignature valid too); ``quorum`` when enough witnesses cosigned."""

    size: int
    root: bytes
    note: str
    valid: bool
    quorum: bool = False
    cosigners: list[str] = field(default_factory=list)
    cosigned_at: list[int] = field(default_factory=list)


def verify_stored_checkpoints(
    rows: list[tuple[int, bytes, str, str]], trust: TrustFile, rep: AuditReport
) -> list[StoredCheckpoint]:
    """Check each stored ``(size, root, note, issued_at)`` row; report what is wrong."""
    log = trust.log_verifier
    trusted: list[Verifier] = [log, *trust.witness_verifiers]
    out: list[StoredCheckpoint] = []
    untrusted: list[tuple[int, str]] = []  # signed by keys the trust file does not know
    bad = 0
    for size_col, root_col, note, _ in rows:
        rep.count("checkpoints")
        where = f"the stored checkpoint of size {size_col}"
        try:
            text, sigs = parse_note(note)
            if text + "\n" + "".join(s.line() for s in sigs) != note:
                raise NoteError("the note is not in canonical form (a signature line's "
                                "base64 was re-encoded)")
            lookalike = _lookalike(sigs, trusted)
            if lookalike or not any(s.name == log.name and s.key_id == log.key_id for s in sigs):
                untrusted.append((size_col, lookalike or f"it is not signed by the trusted log "
                                  f"key {log.keyid}"))
                out.append(StoredCheckpoint(size_col, root_col, note, valid=False))
                continue
            cp, opened = open_checkpoint(note, log, origin=trust.origin,
                                         extra_verifiers=trust.witness_verifiers)
        except NoteError as exc:
            bad += 1
            rep.violation("checkpoint-invalid", f"{where}: {exc.message}",
                          checkpoint_size=size_col)
            out.append(StoredCheckpoint(size_col, root_col, note, valid=False))
            continue
        if cp.size != size_col or cp.root_hash != root_col:
            bad += 1
            rep.violation("checkpoint-invalid", f"{where}: the checkpoints table says size "
                          f"{size_col} and root {root_col.hex()[:16]}…, the signed note size "
                          f"{cp.size} and root {cp.root_hash.hex()[:16]}…: the table was altered.",
                          checkpoint_size=size_col)
        witnesses = trust.witness_verifiers
        found = {c.verifier: c for c in cosignatures(opened) if c.verifier in witnesses}
        out.append(StoredCheckpoint(
            cp.size, cp.root_hash, note, valid=True, quorum=len(found) >= trust.quorum,
            cosigners=sorted(c.name for c in found.values()),
            cosigned_at=sorted(c.timestamp for c in found.values()),
        ))
    valid = sum(c.valid for c in out)
    if untrusted and valid:
        # Other checkpoints show the trust file is right for this log: these were altered.
        for size, why in untrusted:
            bad += 1
            rep.violation("checkpoint-invalid", f"the stored checkpoint of size {size}: {why}.",
                          checkpoint_size=size)
    detail = f"{valid} of {counted(len(out), 'stored checkpoints')} signed by {log.keyid}"
    if untrusted and not valid:
        detail += " (none is: is the trust file's log key this ledger's?)"
    rep.check("checkpoint signatures", bad == 0, detail, verifiable=bool(valid) or not out)
    return out


def _lookalike(sigs: list[NoteSignature], trusted: list[Verifier]) -> str | None:
    """Why a signature line matches a trusted key in name or key ID but not both, if one does.

    Unknown signers are ignored by note verification, so an altered name or key ID
    would silently turn a trusted signature into an ignored one; no honest line looks
    like that (unless the trust file names the wrong key, hence no verdict alone).
    """
    names = {v.name: bytes(v.key_id) for v in trusted}
    ids = {bytes(v.key_id): v.name for v in trusted}
    for s in sigs:
        if names.get(s.name, s.key_id) != s.key_id or ids.get(s.key_id, s.name) != s.name:
            return (f"a signature line names {s.keyid}, which matches the trusted key "
                    f"{s.name if s.name in names else ids[s.key_id]} in part only")
    return None
