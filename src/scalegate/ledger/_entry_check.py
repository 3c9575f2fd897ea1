"""Per-entry checks that need no log order: decode the envelope, read the statement, verify
signatures. They run in helper processes; the in-order fold (registry, roles) runs after.

An entry must be a canonical DSSE envelope (:meth:`Envelope.from_bytes` with
``canonical=True`` is the one definition; :func:`~scalegate.ledger.envelope.read_canonical`
recognises the common case fast and never decides a failure) of an in-toto Statement v1
of a known scalegate kind. ``full`` validates every predicate with its pydantic model
(key statements always are); otherwise only the fields the whole-log checks use are
read, and the run replay validates the rest.

Every signature is checked against every public key a trusted root or a key statement
names for its ``keyid``; which of those keys may sign is decided later, in log order.
Signatures are the main cost; they go to the bulk verifier
(:data:`scalegate.ledger._signature_pool.BULK_BACKEND`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from scalegate.errors import EnvelopeError, StatementError
from scalegate.ledger._signature_pool import BULK_BACKEND, SignatureCheck
from scalegate.ledger._signature_pool import check_signatures as _check
from scalegate.ledger.envelope import Envelope, pae, read_canonical, statement_key
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.registry import KEY_KINDS
from scalegate.ledger.statements import STATEMENT_TYPE, json_value, kind_of, parse_statement

#: ``keyid -> public keys`` a trusted root or any key statement names for it.
Candidates = dict[str, tuple[bytes, ...]]
#: A public key a signature was checked against, as ``(keyid, public key bytes)``.
KeyPair = tuple[str, bytes]

_new = tuple.__new__  # a named view of a plain tuple, without a Python-level constructor
# keyid -> the (keyid, public) pairs named for it; set per process by set_candidates
_PAIRS: dict[str, tuple[KeyPair, ...]] = {}


class EntryVerdict(NamedTuple):
    """What the order-free checks found about one entry."""

    index: int  # type: ignore[assignment]  # shadows tuple.index
    #: The finding's kind (``envelope-malformed``, ``statement-malformed``) or ``None``.
    problem_kind: str | None
    problem: str | None
    kind: str | None
    run_id: str | None
    #: What the in-order checks read: ``predicate`` (key kinds), ``org``, ``role``,
    #: ``scope``, ``sd`` (the statement's identity) and, when asked, ``payload``.
    facts: dict[str, Any]
    verified: list[KeyPair]  # keys whose signature verified
    failed: list[KeyPair]  # keys whose signature did not

    @property
    def clean(self) -> bool:
        """Well formed, and every signature checked verified."""
        return self.problem is None and not self.failed


class Malformed(Exception):
    """An entry that is no canonical envelope of a known statement (``kind`` names which)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def check_signatures(items: Sequence[SignatureCheck]) -> list[bool]:
    """``(public, message, signature)`` triples -> whether each verifies (bulk backend)."""
    return _check(items, BULK_BACKEND)


def set_candidates(candidates: Candidates) -> None:
    """Install the candidate keys (process initializer for helpers; direct call in-process)."""
    global _PAIRS
    # One (keyid, public) object per key: verdicts pickle it once per chunk, then refer to it.
    _PAIRS = {k: tuple((k, pub) for pub in pubs) for k, pubs in candidates.items()}


def candidate_keys(
    roots: Iterable[VerifierKey], key_statements: Iterable[tuple[int, bytes]]
) -> Candidates:
    """Every public key per keyid that a root or any (even invalid) key statement names."""
    out: dict[str, list[bytes]] = {}
    for r in roots:
        out.setdefault(r.keyid, []).append(r.public)
    for _, data in key_statements:
        try:
            _, payload, _ = decode_envelope(data)
            vkey = VerifierKey.parse(json_value(payload)["predicate"]["vkey"])
        except Exception:  # anything malformed is reported when the entry is checked
            continue
        pubs = out.setdefault(vkey.keyid, [])
        if vkey.public not in pubs:
            pubs.append(vkey.public)
    return {k: tuple(v) for k, v in out.items()}


def candidates_digest(candidates: Candidates) -> str:
    """A digest of ``keyid -> public keys`` (what signature verdicts depend on)."""
    body = json.dumps(sorted((k, [p.hex() for p in v]) for k, v in candidates.items()))
    return hashlib.sha256(body.encode()).hexdigest()


def decode_envelope(data: bytes) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """``(payloadType, payload, [(keyid, sig)])`` of a canonical DSSE envelope, else raise
    :class:`Malformed`."""
    fast = read_canonical(data)
    if fast is not None:
        return fast
    try:
        env = Envelope.from_bytes(bytes(data), canonical=True)
        return env.payloadType, env.payload_bytes(), [(s.keyid, s.sig_bytes())
                                                      for s in env.signatures]
    except EnvelopeError as exc:
        raise Malformed("envelope-malformed", exc.message) from None


#: The predicate field holding the time a statement claims (the first present counts).
CLAIMED_TIME = ("at", "valid_from", "started_at", "sent_at", "published_at", "window_start")


def read_statement(payload: bytes, full: bool, claimed: bool = False,
                   ) -> tuple[str, str | None, dict[str, Any]]:
    """``(kind, run_id, facts)``; facts hold what the in-order checks need (with
    ``claimed``, also the time the statement says it was made, as ``facts["claimed"]``)."""
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
    if claimed:
        value = next((v for f in CLAIMED_TIME if isinstance(v := pred.get(f), str)), None)
        if value is not None:
            facts["claimed"] = value
    return kind, run_id if isinstance(run_id, str) else None, facts


def check_entries(
    rows: Sequence[tuple[int, bytes]], full: bool = False, payloads: bool = False,
    known: Sequence[bool] | None = None,
) -> list[EntryVerdict]:
    """Decode, read and signature-check each ``(idx, data)``; never raises on bad data.

    With ``payloads`` the decoded statement bytes come back in ``facts["payload"]``.
    ``known[i]`` true means row ``i``'s signatures all verified in an earlier check of
    the same bytes under the same candidate keys: the verdicts are taken as then.
    """
    return [as_verdict(v) for v in check_entries_raw(rows, full, payloads, known)]


def as_verdict(raw: tuple[Any, ...]) -> EntryVerdict:
    """The named view of a verdict as :func:`check_entries_raw` sends it (no copy)."""
    return _new(EntryVerdict, raw)


def check_entries_raw(
    rows: Sequence[tuple[int, bytes]], full: bool = False, payloads: bool = False,
    known: Sequence[bool] | None = None, *, claimed: bool = False,
) -> list[tuple[Any, ...]]:
    """:func:`check_entries` with each verdict a plain tuple in :class:`EntryVerdict`'s
    field order: what helper processes send back (a plain tuple pickles several times
    faster than a named one, and there is one per entry)."""
    out: list[tuple[Any, ...]] = []
    todo: list[tuple[int, KeyPair, bytes, bytes]] = []  # pos, (keyid, public), msg, sig
    pairs = _PAIRS
    for i, (idx, data) in enumerate(rows):
        try:
            ptype, payload, sigs = decode_envelope(data)
            kind, run_id, facts = read_statement(payload, full, claimed)
        except Malformed as exc:
            out.append((idx, exc.kind, exc.message, None, None, {}, [], []))
            continue
        if payloads:
            facts["payload"] = payload
        facts["sd"] = statement_key(payload)
        verified: list[KeyPair] = []
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
        out[pos][6 if ok else 7].append(pair)  # verified, failed
    return out
