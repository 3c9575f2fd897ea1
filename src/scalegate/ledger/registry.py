"""The key registry: who may sign, folded from ``key`` and ``key-revocation`` statements.

A ledger is configured with organisation root keys. A root registers a key of its
own organisation with a ``key`` statement (roles, validity window) and withdraws it
with a ``key-revocation``; every other statement must be signed by a key so
registered, inside its validity and not revoked. The registry is a pure fold over
the log in index order, so the ledger (on append) and the auditor (on replay)
reach the same answer from the same entries.

Rules, each refused with :class:`~scalegate.errors.KeyNotAuthorized`:

- ``key`` / ``key-revocation`` are signed by a root whose organisation (the part of
  its name before the first ``/``) is the key's ``org``;
- a registered key's name is the organisation or starts with ``org/``, so nobody can
  register a key that reads as another organisation's;
- a key ID (``name+hexid``) names one public key, one organisation: a second
  registration with the same ID must carry the same key and org (it then replaces the
  roles and validity), and a revoked key cannot be registered again;
- a signer is usable at time ``t`` when ``valid_from <= t < valid_until`` and
  ``t < revoked_at`` (a revocation may be back-dated or scheduled).

Which *role* may sign a given statement is the policy's business (gate, auditor).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from scalegate.errors import KeyMaterialError, KeyNotAuthorized
from scalegate.ledger.keys import VerifierKey, is_small_order, is_sound_key
from scalegate.ledger.statements import KeyPredicate, KeyRevocationPredicate

__all__ = ["KEY_KINDS", "KeyRegistry", "RegisteredKey", "is_small_order", "org_of"]

KEY_KINDS = frozenset({"key", "key-revocation"})

def org_of(key: VerifierKey) -> str:
    """The organisation a key name belongs to: ``acme/root`` -> ``acme``."""
    return key.name.split("/", 1)[0]


def _iso(t: datetime | None) -> str:
    return t.isoformat().replace("+00:00", "Z") if t else "never"


@dataclass(frozen=True)
class RegisteredKey:
    """A key registered in the log: its organisation, roles and validity, and its history."""

    vkey: VerifierKey
    org: str
    roles: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime | None
    registered_by: str
    registered_index: int
    revoked_at: datetime | None = None
    revoked_index: int | None = None
    revocation_reason: str | None = None

    @property
    def keyid(self) -> str:
        """``name+hexid``, as DSSE signatures name the key."""
        return self.vkey.keyid

    def problem_at(self, when: datetime) -> str | None:
        """Why this key cannot sign at ``when``, or ``None`` when it can."""
        if self.revoked_at is not None and when >= self.revoked_at:
            return (
                f"key {self.keyid} was revoked from {_iso(self.revoked_at)} "
                f"(entry {self.revoked_index}: {self.revocation_reason!r})"
            )
        if when < self.valid_from:
            return f"key {self.keyid} is not valid before {_iso(self.valid_from)}"
        if self.valid_until is not None and when >= self.valid_until:
            return f"key {self.keyid} expired at {_iso(self.valid_until)}"
        return None

    def valid_at(self, when: datetime) -> bool:
        """Whether the key may sign at ``when``."""
        return self.problem_at(when) is None


class KeyRegistry:
    """Organisation roots plus the keys they registered, folded in log order.

    :meth:`apply_key` / :meth:`apply_revocation` fold one statement (raising
    :class:`KeyNotAuthorized` and leaving the registry unchanged when it is refused);
    :meth:`check_signer` says whether a key may sign an ordinary statement at a time.
    """

    def __init__(
        self, roots: Iterable[VerifierKey], keys: Iterable[RegisteredKey] = ()
    ) -> None:
        self._roots: dict[str, VerifierKey] = {r.keyid: r for r in roots}
        self._keys: dict[str, RegisteredKey] = {k.keyid: k for k in keys}

    # --- queries ---------------------------------------------------------------------------

    @property
    def roots(self) -> Mapping[str, VerifierKey]:
        """Organisation root keys by key ID."""
        return dict(self._roots)

    @property
    def keys(self) -> Mapping[str, RegisteredKey]:
        """Every key ever registered (including expired and revoked ones), by key ID."""
        return dict(self._keys)

    def verifiers(self) -> dict[str, VerifierKey]:
        """Registered public keys by key ID, to check signatures before checking standing."""
        return {kid: k.vkey for kid, k in self._keys.items()}

    def get(self, keyid: str) -> RegisteredKey | None:
        """The registration of ``keyid``, if any."""
        return self._keys.get(keyid)

    def copy(self) -> KeyRegistry:
        """An independent copy (to try a batch without touching this one)."""
        return copy.copy(self)

    def __copy__(self) -> KeyRegistry:
        return KeyRegistry(self._roots.values(), self._keys.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyRegistry):
            return NotImplemented
        return self._roots == other._roots and self._keys == other._keys

    def __len__(self) -> int:
        return len(self._keys)

    # --- checks ----------------------------------------------------------------------------

    def check_root(self, signer: VerifierKey, org: str, what: str) -> None:
        """Raise unless ``signer`` is one of the configured roots and belongs to ``org``."""
        root = self._roots.get(signer.keyid)
        if root is None or root.public != signer.public:
            raise KeyNotAuthorized(
                f"{what} is signed by {signer.keyid}, which is not an organisation root of "
                "this ledger; key and key-revocation statements must be signed by a root.",
                hint="Sign it with the organisation's root key (`scalegate ledger register-key "
                "--root-key ROOT.key ...`).",
            )
        if org_of(root) != org:
            raise KeyNotAuthorized(
                f"{what} concerns organisation {org!r} but is signed by the root of "
                f"{org_of(root)!r}; a root may only manage its own organisation's keys."
            )

    def check_signer(self, signer: VerifierKey, when: datetime) -> RegisteredKey:
        """The registration that lets ``signer`` sign at ``when``; raise why not otherwise."""
        reg = self._keys.get(signer.keyid)
        if reg is None or reg.vkey.public != signer.public:
            rooted = " (it is an organisation root, which only signs key statements)" if (
                signer.keyid in self._roots
            ) else ""
            raise KeyNotAuthorized(
                f"signer {signer.keyid} is not a registered key of this ledger{rooted}.",
                hint="Have an organisation root register it first: `scalegate ledger "
                "register-key --root-key ROOT.key --vkey VKEY --roles ...`.",
            )
        problem = reg.problem_at(when)
        if problem is not None:
            raise KeyNotAuthorized(f"signer {problem}.")
        return reg

    # --- folding ---------------------------------------------------------------------------

    def apply_key(self, index: int, pred: KeyPredicate, signer: VerifierKey) -> RegisteredKey:
        """Fold a ``key`` statement at log position ``index`` signed by ``signer``."""
        what = f"key statement (entry {index})"
        try:
            vkey = VerifierKey.parse(pred.vkey)
        except KeyMaterialError as exc:
            raise KeyNotAuthorized(f"{what} registers a malformed verifier key: {exc}") from None
        self.check_root(signer, pred.org, what)
        if not is_sound_key(vkey.public):
            raise KeyNotAuthorized(
                f"{what} registers {vkey.keyid}, whose public key is "
                + ("a small-order point: signatures under it can be forged by anyone."
                   if is_small_order(vkey.public) else "not a canonical point of prime order "
                   "(no key generator makes one; signatures under it are ambiguous)."),
                hint="Generate a real key with `scalegate keys new`.",
            )
        if vkey.name != pred.org and not vkey.name.startswith(pred.org + "/"):
            raise KeyNotAuthorized(
                f"{what} registers key {vkey.name!r} for organisation {pred.org!r}; a key's "
                f"name must be {pred.org!r} or start with '{pred.org}/'.",
                hint=f"Generate the key as `scalegate keys new {pred.org}/NAME`.",
            )
        if pred.valid_until is not None and pred.valid_until <= pred.valid_from:
            raise KeyNotAuthorized(
                f"{what}: valid_until {_iso(pred.valid_until)} is not after valid_from "
                f"{_iso(pred.valid_from)}."
            )
        old = self._keys.get(vkey.keyid)
        if old is not None:
            if old.vkey.public != vkey.public:
                raise KeyNotAuthorized(
                    f"{what}: key ID {vkey.keyid} is already registered (entry "
                    f"{old.registered_index}) for a different public key.",
                    hint="Use a different key name.",
                )
            if old.org != pred.org:
                raise KeyNotAuthorized(
                    f"{what}: key {vkey.keyid} already belongs to organisation {old.org!r}."
                )
            if old.revoked_index is not None:
                raise KeyNotAuthorized(
                    f"{what}: key {vkey.keyid} was revoked at entry {old.revoked_index} and "
                    "cannot be registered again.",
                    hint="Generate a new key (`scalegate keys new`) and register that.",
                )
        reg = RegisteredKey(
            vkey=vkey,
            org=pred.org,
            roles=tuple(pred.roles),
            valid_from=pred.valid_from,
            valid_until=pred.valid_until,
            registered_by=signer.keyid,
            registered_index=index,
        )
        self._keys[vkey.keyid] = reg
        return reg

    def apply_revocation(
        self, index: int, pred: KeyRevocationPredicate, signer: VerifierKey
    ) -> RegisteredKey:
        """Fold a ``key-revocation`` statement at log position ``index``."""
        what = f"key-revocation statement (entry {index})"
        try:
            vkey = VerifierKey.parse(pred.vkey)
        except KeyMaterialError as exc:
            raise KeyNotAuthorized(f"{what} names a malformed verifier key: {exc}") from None
        old = self._keys.get(vkey.keyid)
        if old is None or old.vkey.public != vkey.public:
            raise KeyNotAuthorized(f"{what}: key {vkey.keyid} is not registered in this ledger.")
        self.check_root(signer, old.org, what)
        if old.revoked_index is not None:
            raise KeyNotAuthorized(
                f"{what}: key {vkey.keyid} is already revoked (entry {old.revoked_index})."
            )
        reg = replace(
            old, revoked_at=pred.revoked_at, revoked_index=index, revocation_reason=pred.reason
        )
        self._keys[vkey.keyid] = reg
        return reg

    def apply(self, index: int, predicate: object, signer: VerifierKey) -> RegisteredKey:
        """Fold a ``key`` or ``key-revocation`` predicate (dispatch on its type)."""
        if isinstance(predicate, KeyPredicate):
            return self.apply_key(index, predicate, signer)
        if isinstance(predicate, KeyRevocationPredicate):
            return self.apply_revocation(index, predicate, signer)
        raise TypeError(f"not a key predicate: {type(predicate).__name__}")
