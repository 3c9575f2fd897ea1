"""Gathering a commitment's evidence across logs, each audited as ``scalegate verify`` does.

:func:`gather` audits every log given against its trust file, then collects, by the
commitment's id and digest, its proposal, every endorsement and withdrawal (in whichever
log they are), and for each organisation the runs in its own log. What it finds becomes
an :class:`~scalegate.commitments.status.Evidence` for the pure status function.

**How a signature's identity is known** (only the first three count):

- ``signatory``: the key was registered, before it signed and not revoked then, by the
  trusted root of the organisation the signature speaks for (for a person: the
  affiliation they claim), with the role ``signatory``, in an audited log;
- ``domain``: the same, but that organisation's root is trusted because a
  ``domain-verification`` statement in an audited log saw it served at the
  organisation's domain (``scalegate org verify-domain``);
- ``claimed`` (never counted, and flagged): anything else: a key another organisation
  registered, a key without the signatory role, a key revoked before it signed, or a log
  that did not verify.

An organisation's *own* log is one that holds its runs, or whose trust file trusts its
root alone: only its own log can show what it trained (a shared commitments log that
holds no run of it says nothing about its compliance).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scalegate.audit import TrustFile, audit_ledger
from scalegate.commitments.document import Commitment, parse_commitment
from scalegate.commitments.joining import SIGNATORY
from scalegate.commitments.status import (
    AttestationSeen,
    ComputeSeen,
    Evidence,
    LevelSeen,
    LogEvidence,
    Method,
    RunEvidence,
    SignatureSeen,
    WithdrawalSeen,
)
from scalegate.errors import CommitmentError, ScalegateError
from scalegate.ledger import (
    AttestationPredicate,
    CommitmentPredicate,
    ComputePredicate,
    DecisionPredicate,
    DomainVerificationPredicate,
    EndorsementPredicate,
    KeyRegistry,
    Ledger,
    LogEntry,
    PausePredicate,
    Ref,
    ResumePredicate,
    RunPredicate,
    VerifierKey,
    WithdrawalPredicate,
)

__all__ = ["KINDS", "LogFacts", "LogToRead", "add_to_run", "attestations_of", "evidence_of",
           "gather", "proposed_in", "read_statements", "runs_of"]

#: What an audit finds in a log holding keys of organisations whose roots it does not trust.
_UNKNOWN_ROOT = frozenset({"untrusted-root", "unregistered-signer"})


@dataclass(frozen=True)
class LogToRead:
    """A log to gather from: where it is (a ledger file or database URL; a served log's
    synced mirror) and the trust file it is audited against."""

    location: str | os.PathLike[str]
    trust: TrustFile
    name: str = ""


#: One statement as gathering reads it: its entry, the keyid that signed it, what it says.
Stated = tuple[Ref, str, Any]


@dataclass
class LogFacts:
    """What gathering needs of one audited log: how its audit concluded, its statements
    of the kinds that matter (``statements``, by kind), the key registry folded from the
    roots its auditor trusts (``registry``, ``None`` when it did not verify) and, where
    the caller has them already, its runs' evidence (``runs``: organisation and run)."""

    name: str
    trust: TrustFile
    status: str
    detail: str
    witnessed_at: datetime | None
    statements: dict[str, list[Stated]]
    registry: KeyRegistry | None
    domain_roots: dict[str, list[VerifierKey]] = field(default_factory=dict)
    kinds: frozenset[str] = frozenset()  # the kinds of violations its audit found
    own: KeyRegistry | None = None  # the ledger's own registry (its own roots)
    runs: list[tuple[str, RunEvidence]] | None = None
    log: LogToRead | None = None


def gather(ident: str, logs: Sequence[LogToRead], *, now: datetime) -> Evidence:
    """The evidence about commitment ``ident`` (id or digest) in ``logs`` at ``now``."""
    audited = [_audit(g, now) for g in logs]
    domains = _domain_roots(audited)
    for i, a in enumerate(audited):  # roots seen at their domains: trusted where unknown
        extra = {org: keys for org, keys in domains.items() if org not in a.trust.org_roots}
        if extra and _registers(a, extra) and a.log is not None:
            audited[i] = _audit(a.log, now, extra)
    got = evidence_of(ident, audited)
    if got is None:
        raise CommitmentError(f"no log given holds a proposal of commitment {ident!r}",
                              hint="Give the log that holds its `commitment` statement "
                              "(--ledger), or propose it: `scalegate commitment propose`.")
    return got


def evidence_of(ident: str, facts: Sequence[LogFacts]) -> Evidence | None:
    """The evidence about commitment ``ident`` in logs already audited (``None`` when no
    log holds its proposal)."""
    audited = list(facts)
    proposal = _proposal(ident, audited)
    if proposal is None:
        return None
    ref, at, org, commitment = proposal
    signatures = [s for a in audited for s in _signatures(a, commitment)]
    withdrawals = [w for a in audited for w in _withdrawals(a, commitment)]
    return Evidence(commitment=commitment, proposed=ref, proposed_at=at, proposed_by=org,
                    signatures=signatures, withdrawals=withdrawals,
                    logs=_party_logs(audited))


def proposed_in(facts: Sequence[LogFacts]) -> list[str]:
    """The ids of the commitments proposed in these logs, each once, in order."""
    ids = (p.commitment_id for a in facts for _, _, p in a.statements.get("commitment", []))
    return list(dict.fromkeys(ids))


#: The statement kinds gathering reads from a log.
KINDS = ("commitment", "endorsement", "withdrawal", "domain-verification", "key")
_RUN_KINDS = ("run", "compute", "pause", "resume", "decision", "attestation")


def _audit(g: LogToRead, now: datetime,
           domain_roots: dict[str, list[VerifierKey]] | None = None) -> LogFacts:
    name = g.name or str(g.location)
    trust = g.trust if not domain_roots else g.trust.model_copy(update={
        "org_roots": {**g.trust.org_roots, **domain_roots}})
    rep = audit_ledger(g.location, trust, now=now, replay=False, use_state=False).report
    witnessed = max((w.existed_by for w in rep.witnessed_times), default=None)
    if rep.violations_total:
        status, detail = "violations", f"{rep.violations_total} violation(s) found by its audit"
    elif rep.could_not_verify:
        failed = rep.failed_checks()
        unwitnessed = any(c.name == "witnessed checkpoint" for c in failed)
        status = "unwitnessed" if unwitnessed else "unverifiable"
        detail = "; ".join(f"{c.name}: {c.detail}" for c in failed)[:500]
    else:
        status, detail = "verified", ""
    statements: dict[str, list[Stated]] = {}
    registry = own = None
    try:
        with Ledger.open(g.location, checkpoint_on_close=False) as led:
            statements = read_statements(led, (*KINDS, *_RUN_KINDS))
            own = led.registry()
            registry = own if status == "verified" else None
    except ScalegateError as exc:
        status, detail = "unreachable", exc.message
    return LogFacts(name, g.trust, status, detail, witnessed, statements, registry,
                    domain_roots or {}, frozenset(rep.violation_counts), own, log=g)


def read_statements(led: Ledger, kinds: Sequence[str]) -> dict[str, list[Stated]]:
    """The statements of ``kinds`` in ``led`` (by the ledger's kind index), that read."""
    out: dict[str, list[Stated]] = {k: [] for k in kinds}
    for kind in kinds:
        for e in led.entries(kind=kind):
            try:
                out[kind].append((_ref(e), e.signer, e.statement.predicate))
            except ScalegateError:
                continue  # the audit reports what does not read
    return out


def _registers(a: LogFacts, roots: dict[str, list[VerifierKey]]) -> bool:
    """Whether the log holds key statements signed by any of ``roots``."""
    ids = {k.keyid for keys in roots.values() for k in keys}
    return any(signer in ids for _, signer, _ in a.statements.get("key", []))


def _proposal(ident: str, audited: list[LogFacts]
              ) -> tuple[Ref, datetime, str, Commitment] | None:
    """The earliest proposal of the commitment whose document hashes to its digest."""
    found = []
    for a in audited:
        for ref, _, p in a.statements.get("commitment", []):
            assert isinstance(p, CommitmentPredicate)
            if ident not in (p.commitment_id, p.digest):
                continue
            try:
                doc = parse_commitment(p.document, source=f"{a.name} entry {ref.index}")
            except ScalegateError:
                continue
            if doc.digest() == p.digest:
                found.append((p.at, ref, p.org, doc))
    if not found:
        return None
    at, ref, org, doc = min(found, key=lambda f: (f[0], f[1].index))
    return ref, at, org, doc


def _domain_roots(audited: list[LogFacts]) -> dict[str, list[VerifierKey]]:
    """Organisation roots that domain checks in verified logs saw served by the org."""
    out: dict[str, list[VerifierKey]] = {}
    for a in audited:
        # A log that fails only for keys of roots it does not know yet still shows which
        # domain checks keys of the roots it trusts signed.
        if not (a.status == "verified" or (a.status == "violations" and a.own is not None
                                           and a.kinds <= _UNKNOWN_ROOT)):
            continue
        trusted = {r.keyid for r in a.trust.roots}
        for _, signer, p in a.statements.get("domain-verification", []):
            assert isinstance(p, DomainVerificationPredicate)
            reg = a.own.get(signer) if a.own is not None else None
            if reg is None or reg.registered_by not in trusted or reg.problem_at(p.checked_at):
                continue
            for text in p.roots:
                try:
                    out.setdefault(p.org, []).append(VerifierKey.parse(text))
                except ScalegateError:
                    continue
    return out


def _signatures(a: LogFacts, c: Commitment) -> list[SignatureSeen]:
    out = []
    for ref, signer, p in a.statements.get("endorsement", []):
        assert isinstance(p, EndorsementPredicate)
        if p.commitment_id != c.id or p.digest != c.digest():
            continue
        speaks_for = p.signatory.affiliation if p.signatory and p.signatory.affiliation \
            else p.org
        method, why = _identity(a, signer, speaks_for, p.at)
        keys = a.registry or a.own
        reg = keys.get(signer) if keys is not None else None
        out.append(SignatureSeen(ref=ref, log=a.name, org=speaks_for, at=p.at, signer=signer,
                                 signer_key=reg.vkey.text() if reg is not None else None,
                                 method=method, why=why, signatory=p.signatory))
    return out


def _withdrawals(a: LogFacts, c: Commitment) -> list[WithdrawalSeen]:
    out = []
    for ref, signer, p in a.statements.get("withdrawal", []):
        assert isinstance(p, WithdrawalPredicate)
        if p.commitment_id == c.id and p.digest == c.digest():
            method, _ = _identity(a, signer, p.org, p.at)
            out.append(WithdrawalSeen(ref=ref, org=p.org, at=p.at, effective=p.effective,
                                      method=method))
    return out


def _identity(a: LogFacts, signer: str, org: str, at: datetime) -> tuple[Method, str]:
    """How ``signer`` is known to speak for ``org`` (see the module docstring)."""
    if a.registry is None:
        return "claimed", f"its log ({a.name}) did not verify: {a.status}"
    reg = a.registry.get(signer)
    if reg is None:
        return "claimed", f"{signer} is not a registered key of {a.name}"
    if reg.org != org:
        return "claimed", (f"{signer} was registered by {reg.org}'s root, not by {org}'s: "
                           f"it may not sign for {org}")
    if SIGNATORY not in reg.roles:
        return "claimed", (f"{signer} holds {', '.join(reg.roles) or 'no roles'}, not "
                           f"{SIGNATORY}")
    problem = reg.problem_at(at)
    if problem is not None:
        return "claimed", problem
    by = f"registered by {org}'s root {reg.registered_by} (entry {reg.registered_index}) " \
         f"with the role {SIGNATORY}"
    if org in a.trust.org_roots and any(
            r.keyid == reg.registered_by for r in a.trust.org_roots[org]):
        return "signatory", f"{signer} {by}, a root the trust file of {a.name} trusts"
    if any(r.keyid == reg.registered_by for r in a.domain_roots.get(org, [])):
        return "domain", f"{signer} {by}, a root served at {org}'s domain"
    return "claimed", f"{signer} {by}, a root no trust file or domain check vouches for"


def _party_logs(audited: list[LogFacts]) -> dict[str, LogEvidence]:
    """Each organisation's own log, as its audit concluded, with its runs."""
    out: dict[str, LogEvidence] = {}
    for a in audited:
        runs = a.runs if a.runs is not None else runs_of(a.statements)
        owners = {org for org, _ in runs}
        if len(a.trust.org_roots) == 1:
            owners |= set(a.trust.org_roots)
        shown = a.status in ("verified", "unwitnessed")  # what a failed audit shows is no proof
        attested = attestations_of(a.statements.get("attestation", []),
                                   {r.run_id: org for org, r in runs})
        for org in owners:
            prior = out.get(org)
            out[org] = LogEvidence(
                status=a.status, detail=a.detail, name=a.name,
                witnessed_at=a.witnessed_at, runs=[*(prior.runs if prior else []), *(
                    r for o, r in runs if o == org and shown)],
                attestations=[*(prior.attestations if prior else []),
                              *attested.get(org, [])])
    return out


def runs_of(statements: dict[str, list[Stated]]) -> list[tuple[str, RunEvidence]]:
    """Each run's organisation and its computes, pauses, resumptions and the capability
    levels its gate recorded reaching, in log order."""
    orgs: dict[str, str] = {}
    runs: dict[str, RunEvidence] = {}
    for _, _, p in statements.get("run", []):
        assert isinstance(p, RunPredicate)
        orgs.setdefault(p.run_id, p.org)
        runs.setdefault(p.run_id, RunEvidence(run_id=p.run_id))
    for kind in ("compute", "pause", "resume", "decision"):
        for ref, _, p in statements.get(kind, []):
            run = runs.get(getattr(p, "run_id", None) or "")
            if run is not None:
                add_to_run(run, ref, p)
    return [(orgs[rid], r) for rid, r in runs.items()]


#: Decision reasons that say a capability level was reached (the rest of the rule names
#: the level, and for a missing safeguard, the safeguard after it).
_REACHED = ("capability-reached:", "safeguard-missing:", "safeguard-expired:")


def add_to_run(run: RunEvidence, ref: Ref, p: Any) -> None:
    """Add one statement of the run to what bears on a scope."""
    if isinstance(p, ComputePredicate):
        run.computes.append(ComputeSeen(ref=ref, at=p.at, flop_by_phase=p.flop_by_phase))
    elif isinstance(p, PausePredicate):
        run.pauses.append((ref, p.at))
    elif isinstance(p, ResumePredicate):
        run.resumes.append((ref, p.at))
    elif isinstance(p, DecisionPredicate):
        paths = {"/".join(r.rule.split(":", 1)[1].split("/")[:2]) for r in p.reasons
                 if r.rule.startswith(_REACHED)}
        run.levels.extend(LevelSeen(ref=ref, at=p.at, path=path) for path in sorted(paths))


def attestations_of(stated: list[Stated], run_orgs: dict[str, str]
                    ) -> dict[str, list[AttestationSeen]]:
    """Each organisation's attestations: its own, and those for its runs."""
    out: dict[str, list[AttestationSeen]] = {}
    for ref, _, p in stated:
        assert isinstance(p, AttestationPredicate)
        org = p.org if p.scope == "org" else run_orgs.get(p.run_id or "")
        if org is not None:
            out.setdefault(org, []).append(AttestationSeen(
                ref=ref, safeguard=p.safeguard, run_id=p.run_id if p.scope == "run" else None,
                valid_from=p.valid_from, valid_until=p.valid_until))
    return out


def _ref(e: LogEntry) -> Ref:
    return Ref(index=e.index, leaf_hash=e.leaf_hash.hex())
