"""RFC 3161 time-stamps on checkpoints: a second source of time from outside the lab.

A time-stamping authority (TSA) signs, at its own clock's time (``genTime``), a token over
a message imprint. Over a checkpoint, the token shows that the checkpoint — and so every
entry below its size — existed by that time. It shows nothing about later entries: a TSA
proves existence by a time, never absence (unlike a witness, it is not shown the log), so
it bounds an entry's log time from above only.

The message is the checkpoint note *as the log signed it*: the checkpoint text, the blank
line, and the log's own signature line — without the witnesses' cosignature lines, which
are added to the stored note later (:func:`signed_checkpoint`). The imprint is its SHA-256.

Tokens are stored in the ledger's ``timestamps`` table as the whole DER ``TimeStampResp``.
They are unsigned evidence: the log does not vouch for them and auditors verify each one
against the authorities their trust file names (:func:`verify_timestamp`), so the table
needs no log signature. It is created on first use in ledgers made before it existed.

The ``rfc3161-client`` library (``pip install 'scalegate[timestamps]'``) is imported only
here, and only when a token is requested or verified.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from scalegate.errors import LedgerError, NoteError
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.note import parse_note

if TYPE_CHECKING:
    from cryptography import x509

    from scalegate.ledger._store import LedgerStore
    from scalegate.ledger.log import Ledger

__all__ = [
    "StoredTimestamp",
    "TimestampInfo",
    "TimestampInvalid",
    "describe",
    "request_timestamp",
    "require_rfc3161",
    "signed_checkpoint",
    "store_timestamp",
    "stored_timestamps",
    "token_signer",
    "verify_timestamp",
]

_SHA256_OID = "2.16.840.1.101.3.4.2.1"
_INSTALL_HINT = "Install the time-stamp support: pip install 'scalegate[timestamps]'."


class TimestampInvalid(LedgerError):
    """A time-stamp token does not verify (signature, certificate chain, or imprint)."""


@dataclass(frozen=True)
class TimestampInfo:
    """What a verified token says: when (``gen_time``, give or take ``accuracy``) the TSA
    saw the imprint, its serial number, and who signed it."""

    gen_time: datetime
    accuracy: timedelta
    serial: int
    signer: str

    @property
    def existed_by(self) -> datetime:
        """The latest time the stamped message can have come into existence."""
        return self.gen_time + self.accuracy


@dataclass(frozen=True)
class StoredTimestamp:
    """A row of the ``timestamps`` table: the TSA's response over checkpoint ``size``."""

    size: int
    tsa: str
    response: bytes
    requested_at: str


def signed_checkpoint(note: str, log_key: VerifierKey) -> bytes:
    """The checkpoint note as the log signed it (text and the log's signature line only):
    the message a time-stamp covers."""
    text, sigs = parse_note(note)
    for s in sigs:
        if s.name == log_key.name and s.key_id == log_key.key_id:
            return (text + "\n" + s.line()).encode("utf-8")
    raise NoteError(f"the checkpoint note carries no signature by the log key {log_key.keyid}.")


def require_rfc3161() -> Any:
    """The ``rfc3161_client`` module; :class:`LedgerError` with an install hint without it."""
    try:
        import rfc3161_client
    except ImportError:
        raise LedgerError("RFC 3161 time-stamps need the rfc3161-client library, which is not "
                          "installed.", hint=_INSTALL_HINT) from None
    return rfc3161_client


# --- requesting ----------------------------------------------------------------------------


def request_timestamp(ledger: Ledger, url: str, *, ca_certs: Sequence[x509.Certificate] = (),
                      timeout: float = 30.0) -> tuple[StoredTimestamp, TimestampInfo, bool]:
    """Ask the TSA at ``url`` to time-stamp ``ledger``'s latest checkpoint and store the
    token. With ``ca_certs`` (the TSA's root, and any intermediates) the token is verified
    before it is stored; without, it is checked against the request (imprint, nonce) only.
    Returns the stored row, what the token says, and whether it is new (a token of this
    TSA over this checkpoint already stored is kept, and returned)."""
    lib = require_rfc3161()
    note = ledger.latest_checkpoint()
    if note is None:
        raise LedgerError(f"ledger {ledger.path} has issued no checkpoint to time-stamp.",
                          hint="Have the log operator sign one: `scalegate ledger checkpoint`.")
    from scalegate.ledger.checkpoint import Checkpoint

    size = Checkpoint.parse(parse_note(note)[0]).size
    message = signed_checkpoint(note, ledger.log_vkey)
    req = (lib.TimestampRequestBuilder().data(message)
           .hash_algorithm(lib.HashAlgorithm.SHA256).nonce(nonce=True)
           .cert_request(cert_request=True).build())
    raw = _post(url, req.as_bytes(), timeout)
    try:
        resp = lib.decode_timestamp_response(raw)
    except ValueError as exc:
        raise LedgerError(f"the time-stamping authority at {url} did not answer with an RFC "
                          f"3161 response ({exc}).", hint="Check the --tsa URL.") from None
    if resp.status not in (0, 1):  # granted, granted with modifications
        why = "; ".join(resp.status_string) or "no reason given"
        raise LedgerError(f"the time-stamping authority at {url} refused the request (status "
                          f"{resp.status}: {why}).")
    if resp.tst_info.nonce != req.nonce:
        raise TimestampInvalid(f"the token from {url} answers another request (its nonce "
                               "differs from ours); nothing was stored.")
    info = verify_timestamp(raw, message, ca_certs) if ca_certs else _unverified(resp, message)
    stored, new = store_timestamp(ledger.store, StoredTimestamp(
        size, url, raw, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")))
    return stored, info if new else describe(stored.response), new


def _post(url: str, body: bytes, timeout: float) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise LedgerError(f"--tsa {url!r} is not an http:// or https:// URL.",
                          hint="Give the time-stamping authority's RFC 3161 endpoint.")
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/timestamp-query"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return bytes(r.read())
    except urllib.error.HTTPError as exc:
        raise LedgerError(f"the time-stamping authority at {url} answered HTTP {exc.code} "
                          f"({exc.reason}).", hint="Check the --tsa URL.") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LedgerError(f"cannot reach the time-stamping authority at {url}: {reason}.",
                          hint="Check the URL and the network, then try again.") from None


def _unverified(resp: Any, message: bytes) -> TimestampInfo:
    imprint = resp.tst_info.message_imprint
    if imprint.hash_algorithm.dotted_string != _SHA256_OID or \
            imprint.message != hashlib.sha256(message).digest():
        raise TimestampInvalid("the token's message imprint is not the checkpoint's; nothing "
                               "was stored.")
    return _info(resp)


# --- storing -------------------------------------------------------------------------------


def store_timestamp(store: LedgerStore, row: StoredTimestamp) -> tuple[StoredTimestamp, bool]:
    """Store ``row`` unless this TSA's token over that checkpoint is stored already (then
    that one is kept: the earlier time is the stronger evidence). Returns the stored row
    and whether it is new."""
    from sqlalchemy import insert, select

    from scalegate.ledger._tables import timestamps_t

    with store.writer() as w:
        timestamps_t.create(w.conn, checkfirst=True)  # ledgers made before the table
        old = w.conn.execute(select(timestamps_t).where(
            timestamps_t.c.size == row.size, timestamps_t.c.tsa == row.tsa)).first()
        if old is not None:
            return _row(old), False
        w.conn.execute(insert(timestamps_t), [{
            "size": row.size, "tsa": row.tsa, "response": row.response,
            "requested_at": row.requested_at}])
    return row, True


def stored_timestamps(store: LedgerStore) -> list[StoredTimestamp]:
    """Every stored token, by checkpoint size (none in a ledger that never stored one)."""
    from sqlalchemy import inspect, select

    from scalegate.ledger._tables import timestamps_t

    with store.reader() as conn:
        if not inspect(conn).has_table("timestamps"):
            return []
        q = select(timestamps_t).order_by(timestamps_t.c.size, timestamps_t.c.tsa)
        return [_row(r) for r in conn.execute(q)]


def _row(r: Any) -> StoredTimestamp:
    return StoredTimestamp(int(r.size), str(r.tsa), bytes(r.response), str(r.requested_at))


# --- verifying -----------------------------------------------------------------------------


def token_signer(response: bytes) -> tuple[x509.Name, int] | None:
    """The issuer name and serial number of the certificate that signed the token (what
    it says of itself: for choosing which trusted authority to verify it against), or
    ``None`` when the response does not parse."""
    lib = require_rfc3161()
    try:
        infos = list(lib.decode_timestamp_response(response).signed_data.signer_infos)
    except ValueError:
        return None
    if len(infos) != 1:
        return None
    return infos[0].issuer, infos[0].serial_number


def describe(response: bytes) -> TimestampInfo:
    """What a token says, unverified (for display of a token verified before)."""
    lib = require_rfc3161()
    try:
        return _info(lib.decode_timestamp_response(response))
    except ValueError as exc:
        raise TimestampInvalid(f"the stored response is not an RFC 3161 response ({exc}).") \
            from None


def verify_timestamp(response: bytes, message: bytes, ca_certs: Sequence[x509.Certificate],
                     certificate: x509.Certificate | None = None) -> TimestampInfo:
    """Verify a DER ``TimeStampResp`` over ``message`` (SHA-256 imprint) against the
    authority's root and intermediate certificates ``ca_certs`` (and, if given, its own
    signing ``certificate``); :class:`TimestampInvalid` says why it does not."""
    lib = require_rfc3161()
    try:
        resp = lib.decode_timestamp_response(response)
    except ValueError as exc:
        raise TimestampInvalid(f"not an RFC 3161 time-stamp response ({exc})") from None
    imprint = resp.tst_info.message_imprint
    if imprint.hash_algorithm.dotted_string != _SHA256_OID:
        raise TimestampInvalid(f"the imprint is hashed with {imprint.hash_algorithm.dotted_string}"
                               ", not SHA-256")
    roots = [c for c in ca_certs if c.issuer == c.subject]
    if not roots:
        raise TimestampInvalid("no root certificate (one whose issuer is its subject) was "
                               "given to verify the token up to")
    builder = lib.VerifierBuilder(
        roots=roots, intermediates=[c for c in ca_certs if c.issuer != c.subject],
        tsa_certificate=certificate)
    try:
        builder.build().verify(resp, hashlib.sha256(message).digest())
    except (lib.VerificationError, ValueError) as exc:
        raise TimestampInvalid(_why(str(exc))) from None
    return _info(resp)


def _why(reason: str) -> str:
    """The verifier's reason, in the auditor's words."""
    if "Mismatch between messages" in reason:
        return "its message imprint is not the checkpoint's"
    if "verify" in reason and "certificate" in reason:
        return ("its signature does not chain to the trusted authority's certificates "
                f"({reason.split(':', 1)[0]})")
    return reason


def _info(resp: Any) -> TimestampInfo:
    tst = resp.tst_info
    acc = tst.accuracy  # None when the token gives none: genTime is taken as exact
    accuracy = timedelta(0) if acc is None else timedelta(
        seconds=acc.seconds or 0, milliseconds=acc.millis or 0, microseconds=acc.micros or 0)
    leaf = _signer_name(resp)
    gen = tst.gen_time
    return TimestampInfo(gen if gen.tzinfo else gen.replace(tzinfo=UTC), accuracy,
                         int(tst.serial_number), leaf)


def _signer_name(resp: Any) -> str:
    from cryptography import x509 as cx509

    try:
        (si,) = resp.signed_data.signer_infos
        for der in resp.signed_data.certificates:
            cert = cx509.load_der_x509_certificate(der)
            if cert.issuer == si.issuer and cert.serial_number == si.serial_number:
                return cert.subject.rfc4514_string()
        return f"serial {si.serial_number} of {si.issuer.rfc4514_string()}"
    except ValueError:
        return "?"
