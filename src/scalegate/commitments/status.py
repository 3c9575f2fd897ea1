"""A commitment's status at a time, from evidence: a pure function, tested like the gate.

:func:`commitment_status` takes what verifiers found (:class:`Evidence`: the commitment,
every signature on it with how the signer's identity is known, every withdrawal, and each
party's log as its audit concluded) and a time, and says:

- the commitment's state: ``proposed`` (k of the N parties it needs have joined),
  ``active`` (since when, until when), ``lapsed`` (a withdrawal left fewer parties than it
  needs, from that withdrawal's effective time), ``expired`` (its window ended);
- per party: whether it joined (only *verified* signatures count: by a key its root
  registered as a signatory, or its root itself, or one a domain check bound to it; a
  signature merely *claiming* an organisation never counts and is flagged), whether it
  withdrew (effective after the notice), and its compliance while bound:
  ``compliant`` (its log verified, a witness vouching for it at the end of the time it was
  bound or later, and no run trained past the scope inside the window without pausing),
  ``in breach`` (with the statements that prove it), ``unverifiable`` (no log, a log no
  witness vouched for since, unwitnessed or failing its audit: silence is not compliance)
  or ``not bound``. A commitment that binds ``immediately`` (a pledge, a
  regulator's moratorium) binds the parties it names from its proposal, joined or not,
  and anyone who joins from then.

A run breaches the compute scope with a compute statement inside the bound window whose
regime total is at or past the scope's FLOP, unless that statement is the one the run
paused at (the next statement of the run is its pause, and it trained no further inside
the window before resuming after it). It breaches a capability scope when, inside the
window, its gate recorded reaching the level (a decision naming it: the party's own
policy defines the level), a safeguard the scope names was not attested then, and the
run trained on after it without pausing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from scalegate.commitments.document import Commitment
from scalegate.ledger import Ref, Signatory

__all__ = [
    "AttestationSeen",
    "CommitmentStatus",
    "Evidence",
    "LevelSeen",
    "LogEvidence",
    "PartyStatus",
    "RunEvidence",
    "SignatureSeen",
    "WithdrawalSeen",
    "commitment_status",
]

#: How a signer's identity is known, strongest first; ``claimed`` never counts.
Method = Literal["root", "signatory", "domain", "claimed"]
VERIFIED: tuple[Method, ...] = ("root", "signatory", "domain")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignatureSeen(_Model):
    """One endorsement, as a verifier found it in some log."""

    ref: Ref
    log: str = ""  # which log holds it
    org: str  # the organisation it speaks for (or a person claims as affiliation)
    at: datetime
    signer: str  # the signing key's name+id
    signer_key: str | None = None  # its verifier key text, where the log registered it
    method: Method
    why: str = ""  # how the identity is known (or why it is only claimed)
    signatory: Signatory | None = None


class WithdrawalSeen(_Model):
    """One withdrawal, as a verifier found it."""

    ref: Ref
    org: str
    at: datetime
    effective: datetime
    method: Method


class ComputeSeen(_Model):
    ref: Ref
    at: datetime
    flop_by_phase: dict[str, float]


class LevelSeen(_Model):
    """A decision the run's gate recorded saying a capability level was reached."""

    ref: Ref
    at: datetime
    path: str  # capability/level, as the party's own policy names them


class AttestationSeen(_Model):
    """A safeguard attested in the party's log: for the organisation, or one run."""

    ref: Ref
    safeguard: str
    run_id: str | None = None
    valid_from: datetime
    valid_until: datetime | None = None

    def holds(self, at: datetime, run_id: str) -> bool:
        return (self.run_id is None or self.run_id == run_id) and self.valid_from <= at and (
            self.valid_until is None or at < self.valid_until)


class RunEvidence(_Model):
    """A run's statements that bear on a scope, in log order."""

    run_id: str
    computes: list[ComputeSeen] = Field(default_factory=list)
    pauses: list[tuple[Ref, datetime]] = Field(default_factory=list)
    resumes: list[tuple[Ref, datetime]] = Field(default_factory=list)
    levels: list[LevelSeen] = Field(default_factory=list)


class LogEvidence(_Model):
    """A party's log as its audit concluded."""

    status: Literal["verified", "violations", "unverifiable", "stale", "unwitnessed",
                    "unreachable", "none"]
    detail: str = ""
    name: str = ""  # which log
    attestations: list[AttestationSeen] = Field(default_factory=list)
    witnessed_at: datetime | None = None  # the latest time a trusted witness vouched for
    runs: list[RunEvidence] = Field(default_factory=list)


class Evidence(_Model):
    """Everything :func:`commitment_status` judges from."""

    commitment: Commitment
    proposed: Ref | None = None
    proposed_at: datetime | None = None
    proposed_by: str | None = None
    signatures: list[SignatureSeen] = Field(default_factory=list)
    withdrawals: list[WithdrawalSeen] = Field(default_factory=list)
    logs: dict[str, LogEvidence] = Field(default_factory=dict)


class PartyStatus(_Model):
    org: str
    named: bool  # one of the parties the commitment names
    log: str = ""  # its own log, where the proof of a breach is
    joined_at: datetime | None = None
    joined_by: SignatureSeen | None = None
    withdrawn_from: datetime | None = None
    bound: tuple[datetime, datetime] | None = None
    compliance: Literal["compliant", "in breach", "unverifiable", "not bound"]
    why: str
    proof: list[Ref] = Field(default_factory=list)


class CommitmentStatus(_Model):
    id: str
    title: str = ""
    text: str = ""
    digest: str
    at: datetime
    state: Literal["proposed", "active", "lapsed", "expired", "not proposed"]
    joined: int
    needed: int
    of: int
    activated_at: datetime | None = None
    window: tuple[datetime, datetime] | None = None
    lapsed_at: datetime | None = None
    parties: list[PartyStatus]
    signatures: list[SignatureSeen]  # every one made by ``at``, verified or claimed
    alerts: list[str]  # signatures claiming an identity their key is not bound to
    summary: str


def commitment_status(e: Evidence, at: datetime, *,
                      stale_after: timedelta = timedelta(hours=1)) -> CommitmentStatus:
    """The commitment's state and each party's compliance at ``at`` (module docstring)."""
    c = e.commitment
    joined = _joined(e, at)
    needed = c.activation.needed
    activated = _activated(e, joined, needed)
    window = c.window.span(activated) if activated is not None else None
    lapsed = _lapsed(e, joined, needed, at) if activated is not None else None
    if e.proposed is None:
        state = "not proposed"
    elif activated is None or activated > at:
        state = "proposed"
    elif window is not None and at >= window[1]:
        state = "expired"
    elif lapsed is not None and lapsed <= at:
        state = "lapsed"
    else:
        state = "active"
    orgs = list(dict.fromkeys([*c.activation.parties, *joined,
                               *(s.org for s in e.signatures if s.at <= at)]))
    parties = [_party(e, org, joined.get(org), window, lapsed, at, stale_after)
               for org in orgs]
    made = [s for s in e.signatures if s.at <= at]  # what had been signed by then
    alerts = [f"{s.signer} signed as {_who(s)} (entry {s.ref.index}{_in(s)}): {s.why}"
              for s in made if s.method == "claimed"]
    n_joined = sum(1 for org in joined if org in c.activation.parties or not c.activation.parties)
    return CommitmentStatus(
        id=c.id, title=c.title, text=c.text, digest=c.digest(), at=at, state=state,
        joined=n_joined, needed=needed,
        of=len(c.activation.parties), activated_at=activated, window=window,
        lapsed_at=lapsed, parties=parties, signatures=made, alerts=alerts,
        summary=_summary(state, n_joined, needed, len(c.activation.parties), window, lapsed,
                         parties))


def _joined(e: Evidence, at: datetime) -> dict[str, SignatureSeen]:
    """Each organisation's first verified endorsement made by ``at``."""
    out: dict[str, SignatureSeen] = {}
    for s in sorted(e.signatures, key=lambda s: (s.at, s.ref.index)):
        if s.method in VERIFIED and s.at <= at and s.org not in out:
            out[s.org] = s
    return out


def _withdrawn(e: Evidence, org: str, at: datetime) -> datetime | None:
    """When ``org``'s verified withdrawal (said by ``at``) takes effect, at the earliest
    the notice after it was said."""
    notice = e.commitment.withdrawal.notice
    times = [max(w.effective, w.at + notice) for w in e.withdrawals
             if w.org == org and w.method in VERIFIED and w.at <= at]
    return min(times, default=None)


def _activated(e: Evidence, joined: dict[str, SignatureSeen], needed: int) -> datetime | None:
    """When it bound: on proposal (``immediately``), or when the ``needed``-th named party
    joined."""
    if e.proposed_at is None:
        return None
    if needed == 0:
        return e.proposed_at
    named = sorted(s.at for org, s in joined.items() if org in e.commitment.activation.parties)
    if len(named) < needed:
        return None
    return max(named[needed - 1], e.proposed_at)


def _lapsed(e: Evidence, joined: dict[str, SignatureSeen], needed: int,
            at: datetime) -> datetime | None:
    """When withdrawals left fewer named parties than it needs (never, for a pledge)."""
    if needed == 0:
        return None
    leaving = sorted(t for org in joined if org in e.commitment.activation.parties
                     if (t := _withdrawn(e, org, at)) is not None)
    in_it = sum(1 for org in joined if org in e.commitment.activation.parties)
    for t in leaving:
        in_it -= 1
        if in_it < needed:
            return t
    return None


def _party(e: Evidence, org: str, sig: SignatureSeen | None,
           window: tuple[datetime, datetime] | None, lapsed: datetime | None, at: datetime,
           stale_after: timedelta) -> PartyStatus:
    named = org in e.commitment.activation.parties
    withdrawn = _withdrawn(e, org, at)
    own = e.logs.get(org)
    base = {"org": org, "named": named, "joined_at": sig.at if sig else None,
            "joined_by": sig, "withdrawn_from": withdrawn, "log": own.name if own else ""}
    since = sig.at if sig is not None else None
    if since is None and named and e.commitment.activation.needed == 0:
        since = e.proposed_at  # a moratorium binds the parties it names from the start
    if since is None:
        claimed = [g for g in e.signatures if g.org == org and g.method == "claimed"]
        return PartyStatus(**base, compliance="not bound", why="it has not joined: " + (
            f"{len(claimed)} signature(s) claim it, by keys not bound to it"
            if claimed else "no verified signature on the commitment"))
    if window is None:
        return PartyStatus(**base, compliance="not bound", why="the commitment is not "
                           "active yet: too few parties have joined")
    start = max(window[0], since)
    end = min(t for t in (window[1], withdrawn, lapsed, at) if t is not None)
    if end <= start:
        why = ("its window has not begun" if start > at else
               "it withdrew before it was bound" if withdrawn is not None and withdrawn <= start
               else "the commitment lapsed before it was bound")
        return PartyStatus(**base, compliance="not bound", why=why)
    bound = (start, end)
    log = e.logs.get(org)
    if log is not None and log.status in ("verified", "stale", "unwitnessed", "violations"):
        proof = _breach(e.commitment, log, bound)
        if proof is not None:
            refs, why = proof
            return PartyStatus(**base, bound=bound, compliance="in breach", why=why,
                               proof=refs)
    problem = _unverifiable(log, bound[1], stale_after)
    if problem is not None:
        return PartyStatus(**base, bound=bound, compliance="unverifiable", why=problem)
    return PartyStatus(**base, bound=bound, compliance="compliant", why="its log is "
                       "verified and witnessed, and no run trained past the scope while it "
                       "was bound")


def _unverifiable(log: LogEvidence | None, until: datetime, stale_after: timedelta
                  ) -> str | None:
    """Why the party's log cannot show what it did while bound (``until`` the end of
    that), or ``None``: its log verified, and a witness vouched for it at the end of the
    time it was bound or later (a log gone stale since still covers a window that ended)."""
    if log is None or log.status == "none":
        return "no log of this party is followed: silence is not compliance"
    if log.status not in ("verified", "stale"):
        return f"its log is {log.status}" + (f" ({log.detail})" if log.detail else "")
    if log.witnessed_at is None or until - log.witnessed_at > stale_after:
        return ("its log has no witnessed checkpoint from the end of the time it was bound: "
                "what it did then is unknown")
    return None


def _breach(c: Commitment, log: LogEvidence, bound: tuple[datetime, datetime]
            ) -> tuple[list[Ref], str] | None:
    """The first statements that show training past the scope while bound, if any."""
    return _past_compute(c, log, bound) or _past_level(c, log, bound)


def _past_level(c: Commitment, log: LogEvidence, bound: tuple[datetime, datetime]
                ) -> tuple[list[Ref], str] | None:
    """A level the scope names, reached while bound (as the run's gate recorded it) with a
    safeguard the scope names not attested, and training on after it."""
    start, end = bound
    for want in c.scope.capabilities:
        path = f"{want.capability}/{want.level}"
        for run in log.runs:
            for lv in run.levels:
                if lv.path != path or not start <= lv.at < end:
                    continue
                missing = [sid for sid in want.unless if not any(
                    a.safeguard == sid and a.holds(lv.at, run.run_id) for a in log.attestations)]
                after = _trained_after(run, lv.ref.index, end)
                if (missing or not want.unless) and after is not None:
                    without = f"without {', '.join(missing)} attested" if missing else \
                        "(the scope allows no safeguard)"
                    return [lv.ref, after.ref], (
                        f"run {run.run_id} reached {path} (its gate's decision, entry "
                        f"{lv.ref.index}, {lv.at.isoformat()}) {without}, and trained on "
                        f"(entry {after.ref.index}) while bound")
    return None


def _trained_after(run: RunEvidence, index: int, end: datetime) -> ComputeSeen | None:
    """The first compute after entry ``index`` and before ``end`` with no pause between."""
    paused = min((p.index for p, _ in run.pauses if p.index > index), default=None)
    for comp in run.computes:
        if comp.ref.index > index and comp.at < end:
            return comp if paused is None or comp.ref.index < paused else None
    return None


def _past_compute(c: Commitment, log: LogEvidence, bound: tuple[datetime, datetime]
                  ) -> tuple[list[Ref], str] | None:
    """The first compute statement past the scope's FLOP while bound, not paused at."""
    scope = c.scope.compute
    if scope is None:
        return None
    start, end = bound
    for run in log.runs:
        pauses = sorted(run.pauses, key=lambda p: p[0].index)
        prev = 0.0
        for i, comp in enumerate(run.computes):
            total = scope.total(comp.flop_by_phase)
            inside = start <= comp.at < end
            if inside and total >= scope.flop * (1 - 1e-9) and (
                    prev >= scope.flop * (1 - 1e-9) or not _paused_at(run, i, pauses)):
                return [comp.ref], (
                    f"run {run.run_id} trained to {total:.3g} FLOP of {scope.regime} compute "
                    f"(entry {comp.ref.index}, {comp.at.isoformat()}), at or past the scope's "
                    f"{scope.flop:.3g} FLOP, while bound ({start.isoformat()} to "
                    f"{end.isoformat()})" + ("" if prev < scope.flop * (1 - 1e-9) else
                                             ", already past it before")
                    + ", without pausing there")
            prev = total
    return None


def _paused_at(run: RunEvidence, i: int, pauses: list[tuple[Ref, datetime]]) -> bool:
    """Whether the run paused right after its ``i``-th compute (no compute between)."""
    here = run.computes[i].ref.index
    after = run.computes[i + 1].ref.index if i + 1 < len(run.computes) else None
    return any(here < p.index and (after is None or p.index < after) for p, _ in pauses)


def _who(s: SignatureSeen) -> str:
    if s.signatory is not None:
        return f"{s.signatory.name}" + (f", {s.signatory.title}" if s.signatory.title else "") \
            + f" of {s.signatory.affiliation or s.org}"
    return s.org


def _in(s: SignatureSeen) -> str:
    return f" of {s.log}" if s.log else ""


def _summary(state: str, joined: int, needed: int, of: int,
             window: tuple[datetime, datetime] | None, lapsed: datetime | None,
             parties: list[PartyStatus]) -> str:
    head = {"not proposed": "not proposed in any log given",
            "proposed": f"proposed: {joined} of the {needed} parties it needs have joined"
            + (f" (of {of} named)" if of != needed else ""),
            "active": "active", "expired": "expired", "lapsed": "lapsed"}[state]
    if window is not None and state in ("active", "expired", "lapsed"):
        head += f" (window {window[0].isoformat()} to {window[1].isoformat()})"
    if lapsed is not None and state == "lapsed":
        head += f", from {lapsed.isoformat()}: a withdrawal left too few parties"
    counts: dict[str, int] = {}
    for p in parties:
        counts[p.compliance] = counts.get(p.compliance, 0) + 1
    return head + "; " + ", ".join(f"{n} {k}" for k, n in counts.items())
