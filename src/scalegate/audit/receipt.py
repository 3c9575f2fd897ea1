"""Check one statement offline from its C2SP tlog-proof receipt (``scalegate verify --receipt``).

A receipt proves that exactly these entry bytes sit at an index of a log tree whose
root the log signed and witnesses cosigned. Judged against the trust file alone:

- a receipt or entry that cannot be read, a checkpoint signed by no trusted log key,
  or fewer cosignatures than the quorum: *could not verify*;
- a trusted signature that does not verify, an inclusion proof that does not lead to
  the signed root, or a checkpoint whose root differs from one this auditor accepted
  at the same size (a split view): *violations*.

Whether the statement's signer was registered cannot be known offline (the registry
lives in the log); the report says who signed it and leaves that to a full audit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from scalegate.audit._seen import load_seen, log_id
from scalegate.audit.report import AuditReport, CheckpointSummary
from scalegate.audit.trust import TrustFile
from scalegate.documents import load_json
from scalegate.errors import (
    EnvelopeError,
    NoteError,
    ProofError,
    ScalegateError,
    StatementError,
    VerificationError,
)
from scalegate.ledger import (
    Envelope,
    Ref,
    cosignatures,
    merkle,
    open_checkpoint,
    parse_note,
    parse_receipt,
    parse_statement,
)
from scalegate.units import counted

__all__ = ["audit_receipt", "canonical_entry"]


def canonical_entry(data: bytes) -> bytes:
    """The log-entry bytes for ``data``: a DSSE envelope in any JSON layout (or a line of
    ``scalegate ledger show --json``, which holds one under ``envelope``) is re-encoded
    canonically, as the ledger stores it; anything else is taken as is."""
    try:
        obj = load_json(data)
        if isinstance(obj, dict) and isinstance(obj.get("envelope"), dict):
            obj = obj["envelope"]
        return Envelope.from_bytes(json.dumps(obj).encode()).to_bytes()
    except Exception:  # not an envelope: the bytes themselves are the entry
        return data


def _shown_line(entry: bytes) -> dict[str, Any] | None:
    """The entry file as a line of ``scalegate ledger show --json`` (an envelope and the
    fields shown beside it), or None when it is not one."""
    try:
        obj = load_json(entry)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("envelope"), dict) else None


def shown_fields_differ(obj: dict[str, Any], data: bytes, leaf: bytes) -> list[str]:
    """For a line of ``scalegate ledger show --json``: the fields beside its envelope (leaf
    hash, kind, run, signer, statement) that say something else than the envelope does. A reader
    trusts those fields; only the envelope is proven, so they must agree. (Its index is
    the receipt's business: another entry's line fails the inclusion proof.)"""
    try:
        env = Envelope.from_bytes(data)
        st = parse_statement(env.payload_bytes())
    except ScalegateError:
        return []  # not a statement at all: the statement check says so
    truth = {"leaf_hash": leaf.hex(), "kind": st.kind, "run_id": st.run_id,
             "statement": st.model_dump(mode="json", by_alias=True)}
    differ = [k for k, v in truth.items() if k in obj and obj[k] != v]
    if "signer" in obj and obj["signer"] not in {s.keyid for s in env.signatures}:
        differ.append("signer")
    return differ


def audit_receipt(
    receipt: str | bytes,
    entry: bytes,
    trust: TrustFile,
    *,
    state_path: str | os.PathLike[str] | None = None,
    source: str = "<receipt>",
) -> AuditReport:
    """Verify a tlog-proof ``receipt`` for ``entry`` against ``trust``; never raises on findings.

    ``state_path`` (optional) is the auditor's state file: a remembered checkpoint of
    the same size must have the same root.
    """
    rep = AuditReport(ledger=source, origin=trust.origin)
    try:
        r = parse_receipt(receipt)
    except ProofError as exc:
        rep.check("receipt form", False, exc.message, verifiable=False)
        return rep
    rep.check("receipt form", True, f"c2sp.org/tlog-proof@v1 for index {r.index}")
    data = canonical_entry(entry)
    leaf = merkle.leaf_hash(data)
    refs = [Ref(index=r.index, leaf_hash=leaf.hex())]
    shown = _shown_line(entry)
    edited = shown_fields_differ(shown, data, leaf) if shown is not None else []
    if edited:
        rep.check("entry file", False, f"the entry file is a `ledger show --json` line whose "
                  f"{', '.join(edited)} disagree with its envelope: only the envelope is "
                  "proven, and this file was edited. Ask for the entry again (or pass the "
                  "envelope alone).", verifiable=False)
        return rep
    log = trust.log_verifier
    sigs = parse_note(r.checkpoint)[1]
    if not any(s.name == log.name and s.key_id == log.key_id for s in sigs):
        rep.check("checkpoint signature", False, f"the receipt's checkpoint is not signed by "
                  f"the trusted log key {log.keyid}", verifiable=False)
        return rep
    try:
        cp, opened = open_checkpoint(r.checkpoint, log, origin=trust.origin,
                                     extra_verifiers=trust.witness_verifiers)
    except NoteError as exc:
        rep.check("checkpoint signature", False, exc.message)
        rep.violation("receipt-invalid", f"the receipt's checkpoint does not verify: "
                      f"{exc.message}", refs)
        return rep
    rep.size = cp.size
    rep.root_hash = cp.root_hash.hex()
    rep.check("checkpoint signature", True, f"size {cp.size} signed by {log.keyid}")
    found = [c for c in cosignatures(opened) if c.verifier in trust.witnesses.values()]
    names = sorted({c.name for c in found})
    rep.checkpoint = CheckpointSummary(size=cp.size, root_hash=cp.root_hash.hex(),
                                       cosigned_by=names,
                                       cosigned_at=sorted(c.timestamp for c in found),
                                       note=r.checkpoint)
    rep.check("witness cosignatures", len(names) >= trust.quorum,
              f"{len(names)} of {counted(len(trust.witnesses), 'trusted witnesses')} cosigned "
              f"({trust.quorum} required)", verifiable=False)
    try:
        merkle.verify_inclusion(r.index, cp.size, leaf, r.proof, cp.root_hash)
        rep.check("inclusion of the entry", True,
                  f"entry {r.index} (leaf {leaf.hex()[:16]}…) is in the tree of size {cp.size}")
        said = shown.get("index") if shown is not None else None
        if isinstance(said, int) and said != r.index:  # proven at r.index; the line differs
            rep.check("entry file", False, f"the entry file says it is entry {said}, but the "
                      f"receipt proves this envelope as entry {r.index}: the file was edited.",
                      verifiable=False)
    except ProofError as exc:
        rep.check("inclusion of the entry", False, exc.message)
        rep.violation("receipt-invalid", f"the receipt does not prove this entry at index "
                      f"{r.index} of {cp.origin} (size {cp.size}): {exc.message}", refs)
    _describe_entry(rep, data)
    if state_path is not None:
        try:
            seen_log = log_id(trust.origin, trust.log_verifier.text())
            seen = [c for c in load_seen(Path(state_path), seen_log) if c.size == cp.size]
        except VerificationError as exc:
            rep.check("auditor state", False, exc.message, verifiable=False)
            seen = []
        for c in seen:
            if c.root != cp.root_hash:
                rep.violation("split-view", f"the receipt's checkpoint of size {cp.size} has "
                              f"another root than the one this auditor accepted on {c.seen_at}: "
                              "the log shows different trees.", refs, checkpoint_size=cp.size)
    rep.count("entries")
    return rep


def _describe_entry(rep: AuditReport, data: bytes) -> None:
    try:
        env = Envelope.from_bytes(data, canonical=True)
        st = parse_statement(env.payload_bytes())
    except (EnvelopeError, StatementError) as exc:
        rep.check("statement", False, f"the entry is not a valid scalegate statement: "
                  f"{exc.message}")
        rep.violation("envelope-malformed" if isinstance(exc, EnvelopeError) else
                      "statement-malformed", f"the proven entry is malformed: {exc.message}")
        return
    kind, run_id = st.kind, st.run_id
    signers = ", ".join(s.keyid for s in env.signatures)
    article = "an" if kind[0] in "aeiou" else "a"
    run = f" of run {run_id}" if run_id else ""
    rep.check("statement", True, f"{article} {kind} statement{run}, signed by {signers} (the "
              "signer's registration is checked by a full audit of the ledger, not offline)")
