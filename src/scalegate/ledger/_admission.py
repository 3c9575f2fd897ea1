"""Who may write: decoding an envelope for the log and deciding whether its signer may append it.

An envelope is admitted when its payload is a known statement kind and
- a ``key`` / ``key-revocation`` statement verifies under an organisation root of
  the key's organisation (the registry then folds it), or
- any other statement verifies under a key the registry holds, valid at the append
  time and not revoked.

Signatures are checked in two steps so that the expensive part runs before the
ledger's write lock: :func:`precheck` verifies every signature by a key already
known (optionally across processes), and :meth:`PendingEntry.signers`, under the
lock, reuses those verdicts and checks only signatures by keys that appeared since.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from scalegate.errors import (
    AppendRefused,
    EnvelopeError,
    KeyNotAuthorized,
    SignatureError,
    StatementError,
    sentence,
)
from scalegate.ledger import merkle
from scalegate.ledger._signature_pool import SignaturePool, check_signatures
from scalegate.ledger.envelope import Envelope, pae, read_canonical
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.registry import KEY_KINDS, KeyRegistry, RegisteredKey, org_of
from scalegate.ledger.statements import Statement, parse_statement
from scalegate.ledger.tiles import MAX_ENTRY_BYTES

__all__ = ["PendingEntry", "admit", "precheck", "prepare"]


@dataclass(frozen=True)
class PendingEntry:
    """An envelope decoded for appending: canonical bytes, leaf hash, statement, signatures."""

    data: bytes
    leaf_hash: bytes
    digest: bytes  # SHA-256 of the signed payload: the statement's identity in the log
    statement: Statement
    kind: str
    message: bytes  # the DSSE PAE the signatures cover
    sigs: tuple[tuple[str, bytes], ...]  # (keyid, raw signature)
    verdicts: dict[int, tuple[bytes, bool]]  # signature index -> (public key, verified?)

    def signers(self, keys: Mapping[str, VerifierKey]) -> list[VerifierKey]:
        """Keys in ``keys`` whose signatures verify (checked now unless already checked).

        Signatures by unknown keyids are skipped; one by a known key that does not
        verify fails the envelope (fail closed), as
        :func:`~scalegate.ledger.envelope.verify_envelope_keys` does.
        """
        out: list[VerifierKey] = []
        for j, (kid, sig) in enumerate(self.sigs):
            key = keys.get(kid)
            if key is None:
                continue
            verdict = self.verdicts.get(j)
            if verdict is None or verdict[0] != key.public:
                ok = check_signatures([(key.public, self.message, sig)])[0]
                verdict = self.verdicts[j] = (key.public, ok)
            if not verdict[1]:
                raise SignatureError(
                    f"the signature by {kid} does not verify over this envelope's payload.",
                    hint="The statement was altered after signing, or signed by another key "
                    "with the same name.",
                )
            if key not in out:
                out.append(key)
        return out

    def keyids(self) -> str:
        return ", ".join(kid or "(no keyid)" for kid, _ in self.sigs)


def prepare(item: Envelope | bytes, where: str = "the envelope") -> PendingEntry:
    """Decode an envelope to append; :class:`AppendRefused` (naming ``where``) if malformed."""
    try:
        ptype, payload, sigs, data = _decode(item)
        statement = parse_statement(payload)
    except (EnvelopeError, StatementError) as exc:
        raise AppendRefused(
            f"refused {where}: {sentence(exc.message)} Nothing was appended.", hint=exc.hint
        ) from exc
    except RecursionError:
        raise AppendRefused(
            f"refused {where}: it is nested too deeply to be an envelope. Nothing was appended."
        ) from None
    if len(data) > MAX_ENTRY_BYTES:
        raise AppendRefused(
            f"refused {where}: its envelope is {len(data):,} bytes; a log entry is at most "
            f"{MAX_ENTRY_BYTES:,} (C2SP tlog-tiles entry bundles hold a uint16 length). "
            "Nothing was appended.",
            hint="Keep large documents outside the log and name them by digest (an "
            "attestation's evidence is a digest; a published policy's document is its YAML, "
            "well under the limit).")
    kids = [kid for kid, _ in sigs]
    if len(set(kids)) != len(kids):
        raise AppendRefused(
            f"refused {where}: two signatures name the same key. Nothing was appended.",
            hint="An entry carries one signature per signer.")
    return PendingEntry(
        data, merkle.leaf_hash(data), hashlib.sha256(payload).digest(), statement,
        statement.kind, pae(ptype, payload), tuple(sigs), {},
    )


def _decode(item: Envelope | bytes) -> tuple[str, bytes, list[tuple[str, bytes]], bytes]:
    """``(payloadType, payload, signatures, canonical bytes)`` of an envelope to append."""
    if isinstance(item, bytes | bytearray | memoryview):
        raw = bytes(item)
        fast = read_canonical(raw)
        if fast is not None:
            return (*fast, raw)
        item = Envelope.from_bytes(raw)
    elif not isinstance(item, Envelope):
        raise TypeError(f"cannot append a {type(item).__name__}; pass an Envelope")
    payload, sigs = item.decoded()
    bad = item.base64_problem()
    if bad is not None:
        raise EnvelopeError(
            f"the {bad} is not canonical base64 (standard alphabet, padded, no stray bits).",
            hint="Re-encode it with Envelope.to_bytes(); the log keeps one spelling of each "
            "statement.")
    return item.payloadType, payload, sigs, item.to_bytes()


def precheck(entries: list[PendingEntry], registry: KeyRegistry, pool: SignaturePool) -> None:
    """Verify every signature by a key ``registry`` already knows (no lock needed)."""
    roots, verifiers = registry.roots, registry.verifiers()
    todo: list[tuple[PendingEntry, int, bytes]] = []
    for p in entries:
        keys = roots if p.kind in KEY_KINDS else verifiers
        for j, (kid, _) in enumerate(p.sigs):
            key = keys.get(kid)
            if key is not None:
                todo.append((p, j, key.public))
    results = pool.check([(pub, p.message, p.sigs[j][1]) for p, j, pub in todo])
    for (p, j, pub), ok in zip(todo, results, strict=True):
        p.verdicts[j] = (pub, ok)


def admit(
    p: PendingEntry,
    index: int,
    registry: KeyRegistry,
    verifiers: dict[str, VerifierKey],
    now: datetime,
) -> tuple[VerifierKey, RegisteredKey | None]:
    """The signer that may append ``p`` at ``index`` and, for key statements, the new registration.

    Key statements are folded into ``registry`` (so pass a copy you may discard).
    Raises :class:`KeyNotAuthorized` or :class:`SignatureError` saying why not.
    """
    if p.kind in KEY_KINDS:
        signer = _root_signer(p, registry)
        _every_signature_verifies(p, {**verifiers, **registry.roots})
        return signer, registry.apply(index, p.statement.predicate, signer)
    signer = _registered_signer(p, registry, verifiers, now)
    _every_signature_verifies(p, {**registry.roots, **verifiers})
    return signer, None


def _every_signature_verifies(p: PendingEntry, known: dict[str, VerifierKey]) -> None:
    """Refuse an entry carrying a signature by a key the ledger does not know.

    Such a signature cannot be checked, and an entry padded with one would be a second
    spelling of the same statement.
    """
    unknown = [kid or "(no keyid)" for kid, _ in p.sigs if kid not in known]
    if unknown:
        raise SignatureError(
            f"it carries a signature by {', '.join(unknown)}, a key this ledger does not "
            "know, so that signature cannot be verified.",
            hint="Remove signatures by unregistered keys, or register the key first.")
    p.signers(known)  # raises on a signature that does not verify


def _root_signer(p: PendingEntry, registry: KeyRegistry) -> VerifierKey:
    """The root that signed a key statement (a verified root of the key's org first)."""
    roots = registry.roots
    signers = p.signers(roots)
    if not signers:
        raise KeyNotAuthorized(
            f"it is signed by {p.keyids()}, which is not an organisation root of this ledger; "
            "key and key-revocation statements must be signed by a root."
        )
    org = getattr(p.statement.predicate, "org", None)
    if org is None:  # a revocation: the org of the key it revokes
        vkey = getattr(p.statement.predicate, "vkey", "")
        reg = next((k for k in registry.keys.values() if k.vkey.text() == vkey), None)
        org = reg.org if reg else None
    return next((s for s in signers if org_of(s) == org), signers[0])


def _registered_signer(
    p: PendingEntry, registry: KeyRegistry, verifiers: dict[str, VerifierKey], now: datetime
) -> VerifierKey:
    """The first signer that verifies and is registered and valid ``now``."""
    signers = p.signers(verifiers)
    if not signers:
        rooted = any(kid in registry.roots for kid, _ in p.sigs)
        raise KeyNotAuthorized(
            f"it is signed by {p.keyids()}, which is not a registered key of this ledger"
            + (" (an organisation root signs only key statements)." if rooted else "."),
            hint="Have an organisation root register the key first: `scalegate ledger "
            "register-key --root-key ROOT.key --vkey VKEY --roles ...`.",
        )
    first_problem: KeyNotAuthorized | None = None
    for s in signers:
        try:
            registry.check_signer(s, now)
            return s
        except KeyNotAuthorized as exc:
            first_problem = first_problem or exc
    assert first_problem is not None
    raise first_problem
