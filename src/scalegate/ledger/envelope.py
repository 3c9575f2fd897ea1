"""DSSE v1 envelopes: the signed wrapper around every in-toto statement in the ledger.

A signature covers ``PAE(payloadType, payload)`` (the DSSE pre-authentication
encoding), never the JSON around it, so the envelope's formatting cannot change
what was signed. :meth:`Envelope.to_bytes` is canonical JSON (sorted keys, no
spaces, UTF-8); those bytes are a log entry, and their RFC 6962 leaf hash is the
entry's identity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sys
from collections.abc import Mapping
from typing import Any

import orjson
import pybase64
from pydantic import BaseModel, ConfigDict, ValidationError

from scalegate.documents import load_json
from scalegate.errors import EnvelopeError, SignatureError
from scalegate.ledger.keys import SigningKey, VerifierKey

__all__ = [
    "PAYLOAD_TYPE",
    "Envelope",
    "Signature",
    "add_signature",
    "pae",
    "read_canonical",
    "sign_envelope",
    "statement_digest",
    "statement_key",
    "verify_envelope",
    "verify_envelope_keys",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: ``DSSEv1 SP LEN(type) SP type SP LEN(body) SP body``."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


_jstr = json.encoder.encode_basestring  # a JSON string, UTF-8


def _b64decode(text: str, what: str) -> bytes:
    try:  # strict standard base64, SIMD-fast; anything else goes the careful way below
        return pybase64.b64decode(text, validate=True)
    except ValueError:
        pass
    # DSSE protocol: signers may use standard or URL-safe base64; verifiers MUST accept either.
    alt = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(text, altchars=alt, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError(f"DSSE envelope: {what} is not valid base64 ({exc}).") from exc


class Signature(BaseModel):
    """One DSSE signature: ``keyid`` names the key (``name+hexid``), ``sig`` is base64."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    keyid: str = ""
    sig: str

    def sig_bytes(self) -> bytes:
        """The raw signature bytes."""
        return _b64decode(self.sig, f"signature of {self.keyid or '(no keyid)'}")


class Envelope(BaseModel):
    """A DSSE envelope: base64 ``payload``, its ``payloadType``, and one or more signatures."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    payload: str
    payloadType: str  # the DSSE field name, kept as is
    signatures: list[Signature]

    def payload_bytes(self) -> bytes:
        """The decoded payload (the serialized in-toto statement)."""
        return _b64decode(self.payload, "payload")

    def base64_problem(self) -> str | None:
        """Which field is not in canonical standard base64 (padded, no stray bits), if any."""
        fields = [("payload", self.payload), *(
            (f"signature {i} ({s.keyid or 'no keyid'})", s.sig)
            for i, s in enumerate(self.signatures))]
        for what, text in fields:
            try:
                raw = _b64decode(text, what)
            except EnvelopeError:
                return what
            if base64.b64encode(raw).decode("ascii") != text:
                return what
        return None

    def pae(self) -> bytes:
        """The bytes every signature in this envelope covers."""
        return pae(self.payloadType, self.payload_bytes())

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces, UTF-8): the log entry's bytes."""
        # Spelled out (the same bytes as json.dumps(sort_keys=True, separators=(",", ":"),
        # ensure_ascii=False) of model_dump()) because appends call this per entry.
        sigs = ",".join(f'{{"keyid":{_jstr(s.keyid)},"sig":{_jstr(s.sig)}}}'
                        for s in self.signatures)
        return (f'{{"payload":{_jstr(self.payload)},"payloadType":{_jstr(self.payloadType)},'
                f'"signatures":[{sigs}]}}').encode()

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        payload_type: str | None = PAYLOAD_TYPE,
        canonical: bool = False,
    ) -> Envelope:
        """Parse and check an envelope; raise :class:`EnvelopeError` naming what is wrong.

        ``payload_type`` is the type required (``None`` accepts any). With
        ``canonical=True`` the bytes must also be exactly :meth:`to_bytes`, as
        log entries are.
        """
        try:
            obj = load_json(bytes(data).decode("utf-8"), object_pairs_hook=_no_duplicates)
        except UnicodeDecodeError as exc:
            raise EnvelopeError(f"DSSE envelope is not UTF-8 ({exc}).") from exc
        except json.JSONDecodeError as exc:
            raise EnvelopeError(f"DSSE envelope is not valid JSON: {exc}.") from exc
        except ValueError as exc:  # a number beyond Python's int_max_str_digits
            raise EnvelopeError(
                f"DSSE envelope is not valid JSON: a number has more than "
                f"{sys.get_int_max_str_digits()} digits.") from exc
        if not isinstance(obj, dict):
            raise EnvelopeError(f"DSSE envelope must be a JSON object, got {type(obj).__name__}.")
        if isinstance(obj.get("envelope"), dict) and "leaf_hash" in obj:
            raise EnvelopeError(
                "this is an entry as `scalegate ledger show --json` prints it, not a DSSE "
                "envelope: the envelope is its \"envelope\" field.",
                hint="Pass the envelope itself, e.g. `jq -c .envelope LINE.json`.")
        try:
            env = cls.model_validate(obj)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
            )
            raise EnvelopeError(f"DSSE envelope is malformed: {problems}.") from exc
        env.check(payload_type)
        if canonical and env.to_bytes() != bytes(data):
            raise EnvelopeError(
                "DSSE envelope is not in canonical form (sorted keys, no spaces, UTF-8).",
                hint="Re-encode it with Envelope.to_bytes().",
            )
        return env

    def check(self, payload_type: str | None = PAYLOAD_TYPE) -> None:
        """Structural checks: payload type, non-empty decodable payload, signatures present."""
        self.decoded(payload_type)

    def decoded(
        self, payload_type: str | None = PAYLOAD_TYPE
    ) -> tuple[bytes, list[tuple[str, bytes]]]:
        """:meth:`check` the envelope; return its payload and ``(keyid, raw signature)`` pairs."""
        if payload_type is not None and self.payloadType != payload_type:
            raise EnvelopeError(
                f"DSSE envelope has payloadType {self.payloadType!r}, expected {payload_type!r}."
            )
        payload = self.payload_bytes()
        if not payload:
            raise EnvelopeError("DSSE envelope has an empty payload.")
        if not self.signatures:
            raise EnvelopeError("DSSE envelope has no signatures; it must be signed.")
        sigs = [(s.keyid, s.sig_bytes()) for s in self.signatures]
        for i, (_, sig) in enumerate(sigs):
            if not sig:
                raise EnvelopeError(f"DSSE envelope signature {i} is empty.")
        return payload, sigs


# --- canonical entry bytes, fast ------------------------------------------------------------


def read_canonical(data: bytes) -> tuple[str, bytes, list[tuple[str, bytes]]] | None:
    """``(payloadType, payload, [(keyid, raw sig)])`` of canonical in-toto envelope bytes.

    orjson and SIMD base64 (pybase64) instead of :mod:`json` and model validation,
    because the ledger's appends and verifications run this per entry. The bytes are
    accepted only when they are exactly what :meth:`Envelope.to_bytes` writes for the
    decoded fields (rebuilt and compared: sorted keys, no spaces, no escapes) and every
    field decodes as strict standard base64. ``None`` means "not recognised", never
    "invalid": parse those bytes with :meth:`Envelope.from_bytes`, which accepts them
    (URL-safe base64, escaped characters) or says exactly what is wrong.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict or len(obj) != 3:
        return None
    payload, ptype, sigs = obj.get("payload"), obj.get("payloadType"), obj.get("signatures")
    if ptype != PAYLOAD_TYPE or type(payload) is not str or type(sigs) is not list or not sigs:
        return None
    parts = []
    for s in sigs:
        if type(s) is not dict or len(s) != 2:
            return None
        keyid, sig = s.get("keyid"), s.get("sig")
        if type(keyid) is not str or type(sig) is not str:
            return None
        parts.append(f'{{"keyid":"{keyid}","sig":"{sig}"}}')
    # Equal to the input only if nothing needed a JSON escape and the form is canonical.
    if f'{{"payload":"{payload}","payloadType":"{ptype}","signatures":[{",".join(parts)}]}}' \
            .encode() != data:
        return None
    b64 = pybase64.b64decode
    try:
        body = b64(payload, validate=True)
        raw = [(s["keyid"], b64(s["sig"], validate=True)) for s in sigs]
    except ValueError:  # binascii.Error included
        return None
    if not body or any(not sig for _, sig in raw):
        return None
    # Canonical base64 only (no stray padding bits): one statement, one spelling.
    if pybase64.b64encode(body) != payload.encode() or any(
            pybase64.b64encode(r[1]) != s["sig"].encode() for r, s in zip(raw, sigs, strict=True)):
        return None
    return PAYLOAD_TYPE, body, raw


def statement_digest(data: bytes) -> bytes | None:
    """SHA-256 of the signed payload of envelope bytes (the statement's identity), or ``None``.

    Two envelopes carrying the same payload are the same statement, whatever their
    signatures or encoding; the log admits it once.
    """
    fast = read_canonical(data)
    if fast is not None:
        return hashlib.sha256(fast[1]).digest()
    try:
        return hashlib.sha256(Envelope.from_bytes(data, payload_type=None).payload_bytes()).digest()
    except EnvelopeError:
        return None


def statement_key(payload: bytes) -> int:
    """A short identity of a signed payload (64 bits of BLAKE2b), for telling a whole log's
    statements apart in memory: 64 bits keep 10^6 statements apart (a chance collision,
    about 1 in 10^7, shows as a duplicate to look at, never hides one)."""
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "big")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            # Two parsers could disagree on which value wins; refuse the ambiguity.
            raise EnvelopeError(f"DSSE envelope has a duplicate JSON key {k!r}.")
        out[k] = v
    return out


def sign_envelope(payload: bytes, key: SigningKey, payload_type: str = PAYLOAD_TYPE) -> Envelope:
    """Sign ``payload`` with ``key``; the signature's keyid is ``key.vkey.keyid``."""
    body = bytes(payload)
    sig = key.sign(pae(payload_type, body))
    return Envelope(
        payload=base64.b64encode(body).decode("ascii"),
        payloadType=payload_type,
        signatures=[Signature(keyid=key.vkey.keyid, sig=base64.b64encode(sig).decode("ascii"))],
    )


def add_signature(envelope: Envelope, key: SigningKey) -> Envelope:
    """A copy of ``envelope`` with ``key``'s signature added (replacing an earlier one by it)."""
    sig = key.sign(envelope.pae())
    kept = [s for s in envelope.signatures if s.keyid != key.vkey.keyid]
    new = Signature(keyid=key.vkey.keyid, sig=base64.b64encode(sig).decode("ascii"))
    return envelope.model_copy(update={"signatures": [*kept, new]})


def verify_envelope_keys(envelope: Envelope, keys: Mapping[str, VerifierKey]) -> list[VerifierKey]:
    """Every trusted key whose signature verifies, in signature order (each key once).

    ``keys`` maps a keyid (``name+hexid``) to its key. Signatures by unknown keyids
    are skipped; a signature by a known key that does not verify fails the whole
    envelope (fail closed). Raises :class:`SignatureError` when no trusted key verifies.
    """
    message = envelope.pae()
    verified: list[VerifierKey] = []
    unknown: list[str] = []
    for s in envelope.signatures:
        key = keys.get(s.keyid)
        if key is None:
            unknown.append(s.keyid or "(no keyid)")
            continue
        if key.keyid != s.keyid:
            raise SignatureError(
                f"trusted key list maps keyid {s.keyid!r} to a different key {key.keyid!r}."
            )
        try:
            raw = s.sig_bytes()
        except EnvelopeError as exc:
            raise SignatureError(f"signature by {s.keyid} is not valid base64.") from exc
        if not key.verify(message, raw):
            raise SignatureError(
                f"signature by {s.keyid} does not verify over this envelope's payload.",
                hint="The statement was altered after signing, or signed by another key "
                "with the same name.",
            )
        if key not in verified:
            verified.append(key)
    if not verified:
        raise SignatureError(
            f"envelope is signed only by keys that are not trusted here: {', '.join(unknown)}.",
            hint="Register the signer's key, or check that the right trusted keys are configured.",
        )
    return verified


def verify_envelope(envelope: Envelope, keys: Mapping[str, VerifierKey]) -> VerifierKey:
    """Verify ``envelope`` against trusted ``keys`` (by keyid); return the first key that verified.

    Raises :class:`SignatureError` naming the keyid when it is unknown or its signature
    is invalid. See :func:`verify_envelope_keys` for envelopes with several signers.
    """
    return verify_envelope_keys(envelope, keys)[0]
