"""Checking stored entries one by one, fast: envelope form, statement kind, signatures.

This is the per-entry half of :func:`scalegate.ledger.integrity.verify_ledger` and runs
in helper processes (it never touches the database). Each stored entry must be a
canonical DSSE envelope of a known statement kind whose ``kind`` / ``run_id`` match
the indexed columns, signed by a candidate key (an organisation root for key
statements, a key some key statement names otherwise). Whether that key was in good
standing at that point of the log is decided afterwards, in log order.

One regular expression recognises the canonical envelope bytes (the per-entry budget
is tight: 10^6 entries in under a minute on two cores, most of it Ed25519); anything
it does not accept is re-decoded by :meth:`Envelope.from_bytes`, which either accepts
it or names exactly what is wrong, so the fast path never decides a failure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from scalegate.errors import EnvelopeError, StatementError
from scalegate.ledger.envelope import Envelope, pae, read_canonical, statement_key
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.registry import KEY_KINDS
from scalegate.ledger.signature_pool import BULK_BACKEND, check_signatures
from scalegate.ledger.statements import PREDICATES, STATEMENT_TYPE, json_value, parse_statement

__all__ = ["Checked", "check_entries", "init_keys"]

# (index, problem or None, kind, keyids whose signatures verified, key predicate or None,
#  the statement's identity: 64 bits of a hash of its signed payload, 0 when unread)
Checked = tuple[int, str | None, str, list[str], Any, int]

_KINDS = {cls.predicate_type(): kind for kind, cls in PREDICATES.items()}
_ROOTS: dict[str, VerifierKey] = {}
_CANDIDATES: dict[str, VerifierKey] = {}


def init_keys(roots: Sequence[str], candidates: Sequence[str]) -> None:
    """Set the keys signatures are checked against (a helper-process initializer)."""
    global _ROOTS, _CANDIDATES
    _ROOTS = {k.keyid: k for k in map(VerifierKey.parse, roots)}
    _CANDIDATES = {k.keyid: k for k in map(VerifierKey.parse, candidates)}


def _statement_facts(payload: bytes, full: bool) -> tuple[str, str | None, Any]:
    """``(kind, run_id, predicate-if-key-kind)``; ``full`` validates every predicate."""
    if full:
        st = parse_statement(payload)
        return st.kind, st.run_id, st.predicate if st.kind in KEY_KINDS else None
    try:
        obj = json_value(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StatementError(f"statement payload is not JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("_type") != STATEMENT_TYPE:
        raise StatementError("payload is not an in-toto Statement v1")
    ptype = obj.get("predicateType")
    kind = _KINDS.get(ptype) if isinstance(ptype, str) else None
    if kind is None:
        raise StatementError(f"unknown predicateType {ptype!r}")
    if kind in KEY_KINDS:
        st = parse_statement(payload)
        return st.kind, st.run_id, st.predicate
    pred = obj.get("predicate")
    if not isinstance(pred, dict):
        raise StatementError("statement predicate is not an object")
    run_id = pred.get("run_id")
    return kind, run_id if isinstance(run_id, str) else None, None


def check_entries(rows: Sequence[tuple[int, bytes, str, str | None]], full: bool) -> list[Checked]:
    """Check ``(index, data, kind column, run_id column)`` rows; see the module docstring.

    ``full=False`` checks a non-key statement's type, kind and run id only; ``True``
    validates every predicate field with the statement models.
    """
    out: list[Checked] = []
    todo: list[tuple[int, str, bytes, bytes, bytes]] = []  # (pos, keyid, public, message, sig)
    for idx, data, kind_col, run_col in rows:
        try:
            fast = read_canonical(data)
            if fast is None:
                env = Envelope.from_bytes(data, canonical=True)
                fast = (env.payloadType, env.payload_bytes(),
                        [(s.keyid, s.sig_bytes()) for s in env.signatures])
            ptype, payload, sigs = fast
            kind, run_id, predicate = _statement_facts(payload, full)
        except (EnvelopeError, StatementError) as exc:
            out.append((idx, f"entry {idx}: {exc.message}", kind_col, [], None, 0))
            continue
        if kind != kind_col or run_id != run_col:
            out.append((idx, f"entry {idx}: its indexed kind/run ({kind_col}, {run_col}) differ "
                        f"from the statement's ({kind}, {run_id}).", kind, [], None, 0))
            continue
        keys = _ROOTS if kind in KEY_KINDS else _CANDIDATES
        message = pae(ptype, payload)
        for kid, sig in sigs:
            key = keys.get(kid)
            if key is not None:
                todo.append((len(out), kid, key.public, message, sig))
        out.append((idx, None, kind, [], predicate, statement_key(payload)))
    verdicts = check_signatures([(pub, msg, sig) for _, _, pub, msg, sig in todo], BULK_BACKEND)
    for (pos, kid, _, _, _), ok in zip(todo, verdicts, strict=True):
        idx, problem, kind, signers, _, _ = out[pos]
        if problem is not None:
            continue
        if not ok:
            out[pos] = (idx, f"entry {idx}: the signature by {kid} does not verify.", kind, [],
                        None, 0)
        elif kid not in signers:
            signers.append(kid)
    for pos, (idx, problem, kind, signers, _, _) in enumerate(out):
        if problem is None and not signers:
            who = "an organisation root" if kind in KEY_KINDS else "a key any key statement names"
            out[pos] = (idx, f"entry {idx}: no signature by {who}.", kind, [], None, 0)
    return out
