"""Per-entry checks that need no log order: decode the envelope, read the statement, verify
signatures. They run in helper processes; the in-order fold (registry, roles) runs after.

Decoding is the ledger's own rules, written against :mod:`json` directly because this
is the auditor's hot loop: a DSSE envelope in canonical JSON (exactly ``payload``,
``payloadType``, ``signatures`` with ``keyid`` and ``sig``; sorted keys; no spaces),
payload type in-toto, a non-empty payload and signatures. The statement is an in-toto
Statement v1 of a known scalegate kind; ``full`` validates every predicate with its
pydantic model (key statements always are), otherwise only the fields the log-level
audit uses are read and replay validates the rest.

Every signature is checked against every public key a trusted root or a key statement
names for its ``keyid``; which of those keys may sign is decided later, in log order.

Signatures are the audit's main cost. They are checked with the ledger's bulk
verifier (:data:`scalegate.ledger.signature_pool.BULK_BACKEND`: ed25519-zebra with
libsodium's refusals when installed; see that module for exactly what it accepts).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from typing import Any

from scalegate.documents import load_json
from scalegate.errors import StatementError
from scalegate.ledger.envelope import PAYLOAD_TYPE, pae, read_canonical, statement_key
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.registry import KEY_KINDS
from scalegate.ledger.signature_pool import BULK_BACKEND, SignatureCheck
from scalegate.ledger.signature_pool import check_signatures as _check
from scalegate.ledger.statements import STATEMENT_TYPE, json_value, kind_of, parse_statement

# keyid -> the public keys named for it (roots and keys in key statements)
_PAIRS: dict[str, tuple[tuple[str, bytes], ...]] = {}

#: (idx, problem kind, problem message, kind, run_id, facts, verified, failed) where
#: verified/failed are ``(keyid, public key)`` pairs.
Checked = tuple[int, str | None, str | None, str | None, str | None, dict[str, Any],
                list[tuple[str, bytes]], list[tuple[str, bytes]]]

_str = json.encoder.encode_basestring  # JSON string, not ASCII-only
_ENVELOPE_KEYS = {"payload", "payloadType", "signatures"}
_SIG_KEYS = {"keyid", "sig"}


#: The implementation checking signatures in audits.
SIGNATURE_BACKEND = BULK_BACKEND


def check_signatures(items: Sequence[SignatureCheck]) -> list[bool]:
    """``(public, message, signature)`` triples -> whether each verifies."""
    return _check(items, BULK_BACKEND)


def set_candidates(candidates: dict[str, tuple[bytes, ...]]) -> None:
    """Install the candidate keys (process initializer for helpers; direct call in-process)."""
    global _PAIRS
    # One (keyid, public) object per key: verdicts pickle it once per chunk, then refer to it.
    _PAIRS = {k: tuple((k, pub) for pub in pubs) for k, pubs in candidates.items()}


def candidate_keys(
    roots: Iterable[VerifierKey], key_statements: Iterable[tuple[int, bytes]]
) -> dict[str, tuple[bytes, ...]]:
    """Every public key per keyid that a root or any (even invalid) key statement names."""
    out: dict[str, list[bytes]] = {}
    for r in roots:
        out.setdefault(r.keyid, []).append(r.public)
    for _, data in key_statements:
        try:
            _, payload, _ = decode_envelope(data)
            vkey = VerifierKey.parse(load_json(payload)["predicate"]["vkey"])
        except Exception:  # anything malformed is reported when the entry is checked
            continue
        pubs = out.setdefault(vkey.keyid, [])
        if vkey.public not in pubs:
            pubs.append(vkey.public)
    return {k: tuple(v) for k, v in out.items()}


def _b64(text: str) -> bytes:
    # DSSE lets signers use standard or URL-safe base64 (as Envelope does).
    alt = b"-_" if ("-" in text or "_" in text) else None
    return base64.b64decode(text, altchars=alt, validate=True)


class Malformed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def decode_envelope(data: bytes) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """``(payloadType, payload, [(keyid, sig)])`` of a canonical DSSE envelope, else raise."""
    fast = read_canonical(data)
    if fast is not None:
        return fast
    try:
        obj = load_json(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Malformed("envelope-malformed", f"the envelope is not JSON ({exc})") from None
    if type(obj) is not dict or obj.keys() != _ENVELOPE_KEYS:
        raise Malformed("envelope-malformed", "the envelope is not a DSSE envelope (payload, "
                         "payloadType, signatures)")
    payload, ptype, sigs = obj["payload"], obj["payloadType"], obj["signatures"]
    if type(payload) is not str or type(ptype) is not str or type(sigs) is not list or not sigs:
        raise Malformed("envelope-malformed", "the envelope's fields have the wrong types or "
                         "it has no signatures")
    out = []
    for s in sigs:
        if type(s) is not dict or s.keys() != _SIG_KEYS or type(s["keyid"]) is not str \
                or type(s["sig"]) is not str:
            raise Malformed("envelope-malformed", "an envelope signature is not {keyid, sig}")
        try:
            raw = _b64(s["sig"])
        except (binascii.Error, ValueError):
            raise Malformed("envelope-malformed", "an envelope signature is not base64") from None
        if not raw:
            raise Malformed("envelope-malformed", "an envelope signature is empty")
        out.append((s["keyid"], raw))
    # The canonical form (sorted keys, no spaces, UTF-8), built directly: the shape is fixed.
    try:
        canonical = "".join((
            '{"payload":', _str(payload), ',"payloadType":', _str(ptype), ',"signatures":[',
            ",".join(f'{{"keyid":{_str(s["keyid"])},"sig":{_str(s["sig"])}}}' for s in sigs),
            "]}")).encode()
    except UnicodeEncodeError:  # json.loads reads bytes leniently: an encoded lone surrogate
        raise Malformed("envelope-malformed", "the envelope is not UTF-8 text (it holds an "
                        "encoded lone surrogate)") from None
    if canonical != bytes(data):
        raise Malformed("envelope-malformed", "the envelope is not in canonical JSON form")
    if ptype != PAYLOAD_TYPE:
        raise Malformed("envelope-malformed", f"payloadType {ptype[:60]!r} is not {PAYLOAD_TYPE}")
    try:
        body = _b64(payload)
    except (binascii.Error, ValueError):
        raise Malformed("envelope-malformed", "the envelope payload is not base64") from None
    if not body:
        raise Malformed("envelope-malformed", "the envelope payload is empty")
    return ptype, body, out


def read_statement(payload: bytes, full: bool) -> tuple[str, str | None, dict[str, Any]]:
    """``(kind, run_id, facts)``; facts hold what the in-order checks need."""
    try:
        obj = json_value(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Malformed("statement-malformed", f"the statement is not JSON ({exc})") from None
    if type(obj) is not dict or obj.get("_type") != STATEMENT_TYPE:
        raise Malformed("statement-malformed", "the payload is not an in-toto Statement v1")
    ptype = obj.get("predicateType")
    try:
        kind = kind_of(ptype if isinstance(ptype, str) else "")
    except ValueError:
        raise Malformed("statement-malformed",
                         f"unknown predicateType {str(ptype)[:80]!r}") from None
    pred = obj.get("predicate")
    if type(pred) is not dict or not isinstance(obj.get("subject"), list) or not obj["subject"]:
        raise Malformed("statement-malformed", "the statement has no predicate or no subject")
    facts: dict[str, Any] = {}
    if full or kind in KEY_KINDS:
        try:
            st = parse_statement(payload)
        except StatementError as exc:
            raise Malformed("statement-malformed", exc.message) from None
        if kind in KEY_KINDS:
            facts["predicate"] = st.predicate
    run_id = pred.get("run_id")
    for field in ("org", "role", "scope"):
        value = pred.get(field)
        if isinstance(value, str):
            facts[field] = value
    return kind, run_id if isinstance(run_id, str) else None, facts


def check_entries(
    rows: Sequence[tuple[int, bytes]], full: bool = False, payloads: bool = False,
    known: Sequence[bool] | None = None,
) -> list[Checked]:
    """Decode, read and signature-check each ``(idx, data)``; never raises on bad data.

    With ``payloads`` the decoded statement bytes come back in ``facts["payload"]``.
    ``known[i]`` true means row ``i``'s signatures all verified in an earlier audit of
    the same bytes under the same candidate keys: the verdicts are taken as then.
    """
    out: list[Checked] = []
    todo: list[tuple[int, tuple[str, bytes], bytes, bytes]] = []  # pos, (keyid, public), msg, sig
    pairs = _PAIRS
    for i, (idx, data) in enumerate(rows):
        try:
            ptype, payload, sigs = decode_envelope(data)
            kind, run_id, facts = read_statement(payload, full)
        except Malformed as exc:
            out.append((idx, exc.kind, exc.message, None, None, {}, [], []))
            continue
        if payloads:
            facts["payload"] = payload
        facts["sd"] = statement_key(payload)
        verified: list[tuple[str, bytes]] = []
        if known is not None and known[i]:
            verified = [pair for keyid, _ in sigs for pair in pairs.get(keyid, ())]
        else:
            message = pae(ptype, payload)
            for keyid, sig in sigs:
                for pair in pairs.get(keyid, ()):
                    todo.append((len(out), pair, message, sig))
        out.append((idx, None, None, kind, run_id, facts, verified, []))
    verdicts = check_signatures([(pair[1], msg, sig) for _, pair, msg, sig in todo])
    for (pos, pair, _, _), ok in zip(todo, verdicts, strict=True):
        (out[pos][6] if ok else out[pos][7]).append(pair)
    return out
