"""The ledger's RFC 3161 time-stamp tokens, judged against the trust file's authorities.

A token counts only when it verifies up to an authority the trust file names and its
message imprint is a checkpoint this audit verified (signed by the trusted log key, its
root the recomputed tree's at its size): it then shows the entries below that size
existed by the token's time (``genTime`` plus its accuracy). That is an upper bound on
when they were logged, nothing more — a time-stamping authority is not shown the log, so
it cannot say what was *not* yet in it (only witnesses bound log times from below).

A token that claims to come from a trusted authority (its signer's issuer is one of the
authority's CA certificates, or it is the pinned certificate) but does not verify is the
finding ``timestamp-invalid``; tokens from authorities the trust file does not name are
ignored, with a note in the check's detail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scalegate.audit.report import AuditReport, TimestampTime
from scalegate.audit.trust import TimestampAuthority, TrustFile
from scalegate.errors import LedgerError
from scalegate.units import counted

if TYPE_CHECKING:
    from cryptography import x509


def verify_stored_timestamps(rows: list[tuple[int, str, bytes]], verified: dict[int, str],
                             trust: TrustFile, rep: AuditReport) -> None:
    """Check each stored ``(size, tsa, response)`` against ``verified`` (size -> the
    checkpoint note this audit verified) and record the times the valid ones vouch for."""
    if not rows:
        return
    name = "time-stamps from trusted authorities"
    if not trust.timestamp_authorities:
        rep.check(name, True, f"{counted(len(rows), 'time-stamp tokens')} ignored: the trust "
                  "file names no time-stamping authority")
        return
    from scalegate.ledger import (
        TimestampInvalid,
        require_rfc3161,
        token_signer,
        verify_timestamp,
    )
    from scalegate.ledger import signed_checkpoint as message_of

    try:
        require_rfc3161()
    except LedgerError as exc:
        rep.check(name, False, f"{counted(len(rows), 'time-stamp tokens')} not verified: "
                  f"{exc}", verifiable=False)
        return
    ignored: dict[str, int] = {}
    bad = 0
    for size, tsa, response in rows:
        where = f"the time-stamp by {tsa} over the checkpoint of size {size}"
        signer = token_signer(response)
        if signer is None:
            bad += 1
            rep.violation("timestamp-invalid", f"{where} is not an RFC 3161 time-stamp "
                          "response with one signer.", checkpoint_size=size)
            continue
        authority = _authority(trust.timestamp_authorities, *signer)
        if authority is None:
            shown = signer[0].rfc4514_string()
            ignored[shown] = ignored.get(shown, 0) + 1
            continue
        note = verified.get(size)
        if note is None:
            bad += 1
            rep.violation("timestamp-invalid", f"{where} (by {authority.name}) covers no "
                          "checkpoint this audit verified: none of that size is signed by "
                          "the trusted log key with the entries' root.", checkpoint_size=size)
            continue
        try:
            info = verify_timestamp(response, message_of(note, trust.log_verifier),
                                    authority.ca,
                                    authority.certificate[0] if authority.certificate else None)
        except TimestampInvalid as exc:
            bad += 1
            rep.violation("timestamp-invalid", f"{where} claims to be by {authority.name}, "
                          f"but {exc.message}: it proves nothing.", checkpoint_size=size)
            continue
        rep.timestamps.append(TimestampTime(
            size=size, authority=authority.name, tsa=tsa, gen_time=info.gen_time,
            existed_by=info.existed_by, serial=info.serial))
    detail = (f"{len(rep.timestamps)} of {counted(len(rows), 'time-stamp tokens')} verified "
              "(each an 'existed by' bound on the entries below its checkpoint)")
    if ignored:
        detail += "; ignored, as from authorities the trust file does not name: " + ", ".join(
            f"{n} by {who}" for who, n in sorted(ignored.items()))
    rep.check(name, bad == 0, detail if not bad else f"{detail}; {counted(bad, 'invalid')}")


def _authority(tsas: list[TimestampAuthority], issuer: x509.Name, serial: int
               ) -> TimestampAuthority | None:
    return next((a for a in tsas if a.issued(issuer, serial)), None)
