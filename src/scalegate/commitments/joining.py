"""Proposing, joining and leaving a commitment: statements an organisation signs in a log.

An organisation acts through a key its root registered with the role ``signatory`` (the
log admits statements by registered keys only; roots sign key statements). A person
signing a letter does the same with their own key and says who they are (name, title,
affiliation): whether that affiliation is verified is for the verifier to say
(:mod:`scalegate.commitments.evidence`), from who registered the key.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from scalegate.commitments.document import Commitment, parse_commitment
from scalegate.errors import CommitmentError, ScalegateError
from scalegate.ledger import (
    CommitmentPredicate,
    EndorsementPredicate,
    Ledger,
    Ref,
    RegisteredKey,
    Signatory,
    SigningKey,
    WithdrawalPredicate,
    now_utc,
    sign_statement,
)

__all__ = ["SIGNATORY", "endorse", "find_commitment", "propose", "withdraw"]

#: The role a key needs to sign for its organisation on a commitment.
SIGNATORY = "signatory"


def propose(ledger: Ledger, key: SigningKey, commitment: Commitment, text: str,
            *, at: datetime | None = None) -> Ref:
    """Log ``commitment`` (its YAML ``text``), proposed by the key's organisation."""
    if parse_commitment(text).digest() != commitment.digest():
        raise CommitmentError("the text given is not the commitment's document")
    reg = _signatory(ledger, key, "propose a commitment")
    found = find_commitment(ledger, commitment.id)
    if found is not None and found[1].digest() == commitment.digest():
        raise CommitmentError(f"commitment {commitment.id} is already proposed in this log "
                              f"(entry {found[0].index})", hint="Parties join it with "
                              "`scalegate commitment endorse`.")
    return _append(ledger, key, CommitmentPredicate(
        commitment_id=commitment.id, digest=commitment.digest(), document=text,
        org=reg.org, at=at or now_utc()))


def endorse(ledger: Ledger, key: SigningKey, commitment: Commitment, *,
            signatory: Signatory | None = None, at: datetime | None = None) -> Ref:
    """Join ``commitment``: the key's organisation, or (``signatory``) the person signing."""
    reg = _signatory(ledger, key, "sign a commitment")
    if signatory is None and commitment.activation.signatories == "individuals":
        raise CommitmentError(f"{commitment.id} is signed by people: say who signs "
                              "(--name, and --title and --affiliation as they apply)")
    return _append(ledger, key, EndorsementPredicate(
        commitment_id=commitment.id, digest=commitment.digest(), org=reg.org,
        signatory=signatory, at=at or now_utc()))


def withdraw(ledger: Ledger, key: SigningKey, commitment: Commitment, *,
             effective: datetime | None = None, reason: str = "",
             at: datetime | None = None) -> Ref:
    """Leave ``commitment`` from ``effective`` (default, and at the earliest: after the
    notice it requires)."""
    reg = _signatory(ledger, key, "withdraw from a commitment")
    said = at or now_utc()
    notice: timedelta = commitment.withdrawal.notice
    if effective is None:
        effective = said + notice
    elif effective < said + notice:
        raise CommitmentError(
            f"{commitment.id} requires {notice} of notice: a withdrawal said now takes effect "
            f"no sooner than {(said + notice).isoformat()}", hint="Give a later --effective, "
            "or leave it out for the earliest.")
    return _append(ledger, key, WithdrawalPredicate(
        commitment_id=commitment.id, digest=commitment.digest(), org=reg.org, at=said,
        effective=effective, reason=reason))


def find_commitment(ledger: Ledger, ident: str) -> tuple[Ref, Commitment] | None:
    """The first ``commitment`` statement in ``ledger`` with id (or digest) ``ident``
    whose document reads and hashes to its digest."""
    for e in ledger.entries(kind="commitment"):
        try:
            p = e.statement.predicate
            assert isinstance(p, CommitmentPredicate)
            doc = parse_commitment(p.document, source=f"entry {e.index}")
        except ScalegateError:
            continue
        if ident in (p.commitment_id, p.digest) and doc.digest() == p.digest:
            return Ref(index=e.index, leaf_hash=e.leaf_hash.hex()), doc
    return None


def _signatory(ledger: Ledger, key: SigningKey, what: str) -> RegisteredKey:
    reg = ledger.registry().check_signer(key.vkey, now_utc())
    if SIGNATORY not in reg.roles:
        raise CommitmentError(
            f"{key.name} may not {what} for {reg.org}: it holds "
            f"{', '.join(reg.roles) or 'no roles'}, not {SIGNATORY}",
            hint=f"Have {reg.org}'s root register a key with the role {SIGNATORY}: "
            "`scalegate ledger register-key --roles signatory ...`.")
    return reg


def _append(ledger: Ledger, key: SigningKey, predicate: object) -> Ref:
    got = ledger.append(sign_statement(predicate, key))  # type: ignore[arg-type]
    return Ref(index=got.index, leaf_hash=got.leaf_hash.hex())
