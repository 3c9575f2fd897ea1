"""Who may sign what, decided in log order from the trusted roots alone.

The key registry is re-folded from the entries with only the trusted organisation roots
(the ledger's own, or an auditor's trust file's): a ``key`` or ``key-revocation``
statement must verify under a trusted root of the key's organisation; any other
statement under a key so registered, valid at the entry's time and not revoked. On top
of the registry's rules: which roles may sign a kind (an auditor's ``roles`` map), an
approval's signer holding the role it claims, and a statement speaking for a run (or an
organisation) being signed by that organisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from scalegate.errors import KeyNotAuthorized, ScalegateError
from scalegate.ledger._entry_check import KeyPair
from scalegate.ledger._findings import Findings
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.registry import KeyRegistry, RegisteredKey, org_of

Violation = Callable[..., None]  # (kind, message, (index, leaf_hash), *, run_id=...)
#: The roles that may sign statements of a kind (``None``: any role).
AllowedRoles = Callable[[str], "frozenset[str] | set[str] | None"]


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


class SignerCheck:
    """The registry fold and the signer checks; violations go to ``violation``."""

    def __init__(self, roots: Sequence[VerifierKey], allowed_roles: AllowedRoles | None,
                 violation: Violation, report: Findings) -> None:
        self.allowed_roles = allowed_roles
        self.roots: dict[str, VerifierKey] = {r.keyid: r for r in roots}
        self.registry = KeyRegistry(list(roots))
        self.run_orgs: dict[str, str] = {}
        # (keyid, public, kind, run_id, claimed role, org) combinations whose role and
        # organisation checks passed: logs repeat them 10^5 times. Cleared when keys change.
        self._clean: dict[tuple[Any, ...], RegisteredKey] = {}
        self._clean_now = False
        self._violation = violation
        self._report = report

    def rebind(self, allowed_roles: AllowedRoles | None, violation: Violation,
               report: Findings) -> SignerCheck:
        """This fold, now reporting to ``violation`` and ``report`` (a later pass of the
        same log goes on with it); returns ``self``."""
        self.allowed_roles, self._violation, self._report = allowed_roles, violation, report
        self._clean.clear()  # checked under the roles it was given before
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Picklable: the fold, not where it reported (see :meth:`rebind`)."""
        return {**self.__dict__, "allowed_roles": None, "_violation": None, "_report": None,
                "_clean": {}, "_clean_now": False}

    def key_statement(
        self, idx: int, facts: dict[str, Any], verified: list[KeyPair],
        failed: list[KeyPair], at: tuple[int, bytes],
    ) -> str | None:
        """Fold a key statement; the keyid of the root that signed it, or ``None`` if refused."""
        roots, v = self.roots, self._violation
        bad = [k for k, pub in failed if k in roots and roots[k].public == pub]
        good = [roots[k] for k, pub in verified if k in roots and roots[k].public == pub]
        if bad:
            v("bad-signature", f"entry {idx}: the signature by root {bad[0]} does not verify.",
              at)
            return None
        if not good:
            who = ", ".join(sorted({k for k, _ in verified + failed})) or "no known key"
            v("untrusted-root", f"entry {idx}: a key statement signed by {who}, which is not "
              "a trusted organisation root.", at)
            return None
        pred = facts["predicate"]
        org = getattr(pred, "org", None)
        if org is None:  # a revocation: the org of the key it revokes
            try:
                reg = self.registry.get(VerifierKey.parse(pred.vkey).keyid)
            except ScalegateError:
                reg = None
            org = reg.org if reg else None
        signer = next((s for s in good if org_of(s) == org), good[0])
        self._clean.clear()
        try:
            self.registry.apply(idx, pred, signer)
        except KeyNotAuthorized as exc:
            v("key-refused", f"entry {idx}: {exc.message}", at)
            return None
        self._report.count("keys registered" if pred.KIND == "key" else "keys revoked")
        return signer.keyid

    def signer(
        self, idx: int, kind: str, run_id: str | None, facts: dict[str, Any],
        when: datetime | None, verified: list[KeyPair],
        failed: list[KeyPair], at: tuple[int, bytes],
    ) -> RegisteredKey | None:
        """The registered key in standing that signed an ordinary statement, else ``None``."""
        if len(verified) == 1 and not failed and when is not None and kind != "run":
            memo = (*verified[0], kind, run_id, facts.get("role"), facts.get("org"))
            reg = self._clean.get(memo)
            if reg is not None and reg.valid_at(when):
                return reg
        else:
            memo = None
            if kind == "run":  # may set the run's organisation, which later checks use
                self._clean.clear()
        reg = self._signer(idx, kind, run_id, facts, when, verified, failed, at)
        if memo is not None and reg is not None and self._clean_now:
            self._clean[memo] = reg
        return reg

    def _signer(
        self, idx: int, kind: str, run_id: str | None, facts: dict[str, Any],
        when: datetime | None, verified: list[KeyPair],
        failed: list[KeyPair], at: tuple[int, bytes],
    ) -> RegisteredKey | None:
        registry, v = self.registry, self._violation
        regs = [r for k, pub in verified if (r := registry.get(k)) and r.vkey.public == pub]
        bad = [k for k, pub in failed if (r := registry.get(k)) and r.vkey.public == pub]
        where = f"entry {idx} ({kind})"
        if bad:
            v("bad-signature", f"{where}: the signature by {bad[0]} does not verify.", at,
              run_id=run_id)
            return None
        if not regs:
            who = ", ".join(sorted({k for k, _ in verified + failed})) or "no known key"
            rooted = " (an organisation root signs only key statements)" if any(
                k in self.roots for k, _ in verified) else ""
            v("unregistered-signer", f"{where}: signed by {who}, which no trusted root had "
              f"registered before it{rooted}.", at, run_id=run_id)
            return None
        if when is None:
            v("signer-not-valid", f"{where}: the entry has no readable time, so its signer's "
              "validity cannot be checked.", at, run_id=run_id)
            return None
        signer = next((r for r in regs if r.valid_at(when)), None)
        if signer is None:
            first = regs[0]
            revoked = first.revoked_at is not None and when >= first.revoked_at
            v("revoked-signer" if revoked else "signer-not-valid",
              f"{where} at {_iso(when)}: signer {first.problem_at(when)}.", at, run_id=run_id)
            return None
        self._clean_now = self._roles_and_orgs(where, kind, run_id, facts, signer, at)
        return signer

    def _roles_and_orgs(self, where: str, kind: str, run_id: str | None, facts: dict[str, Any],
                        signer: RegisteredKey, at: tuple[int, bytes]) -> bool:
        """Report role and organisation violations; whether there were none."""
        found: list[str] = []

        def v(kind: str, *args: Any, **kwargs: Any) -> None:
            found.append(kind)
            self._violation(kind, *args, **kwargs)

        allowed = self.allowed_roles(kind) if self.allowed_roles else None
        if allowed is not None and not allowed.intersection(signer.roles):
            v("wrong-role", f"{where}: signer {signer.keyid} holds roles {list(signer.roles)}; "
              f"the trust file allows {sorted(allowed)} for {kind} statements.", at,
              run_id=run_id)
        claimed = facts.get("role")
        if kind == "approval" and claimed is not None and claimed not in signer.roles:
            v("wrong-role", f"{where}: the approval claims role {claimed!r}, but signer "
              f"{signer.keyid} holds {list(signer.roles)}.", at, run_id=run_id)
        org = facts.get("org")
        if kind == "run" and run_id is not None:
            self.run_orgs.setdefault(run_id, org or signer.org)
        if org is not None and kind in ("run", "attestation", "endorsement") \
                and org != signer.org:
            v("wrong-org", f"{where}: speaks for organisation {org!r} but is signed by "
              f"{signer.keyid} of {signer.org!r}.", at, run_id=run_id)
        elif run_id is not None and self.run_orgs.get(run_id, signer.org) != signer.org:
            v("wrong-org", f"{where}: run {run_id} belongs to {self.run_orgs[run_id]!r} but "
              f"this is signed by {signer.keyid} of {signer.org!r}.", at, run_id=run_id)
        return not found
