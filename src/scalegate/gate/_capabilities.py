"""Rules 3, 4 and 6: capability levels reached or alerted, and what reaching one means.

A level is *reached* once any of its evaluations has met its trigger, and stays
reached (a later, lower result does not undo it: the policy errs towards acting as if
crossed). It is *alerted* once an early-warning value is met and it is not reached.
Reaching a level pauses until the safeguards it ``requires`` are attested, pauses
whatever is attested (``on_reach: pause``), or is recorded only (``on_reach: continue``);
either way its notifications are owed and its ``on_alert`` cadence applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from scalegate.gate._measure import Finding, plus
from scalegate.ledger import (
    AttestationPredicate,
    EvalPredicate,
    Obligation,
    Reason,
    Ref,
)
from scalegate.policy import Capability, EvaluationTrigger, Level, Notify, Policy
from scalegate.state import Recorded, RunState


@dataclass
class LevelStatus:
    """What the evaluations say about one capability level."""

    capability: Capability
    level: Level
    triggered: list[tuple[EvaluationTrigger, Recorded[EvalPredicate]]] = field(default_factory=list)
    alerted: list[tuple[EvaluationTrigger, Recorded[EvalPredicate]]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"{self.capability.id}/{self.level.id}"


def level_statuses(policy: Policy, state: RunState) -> list[LevelStatus]:
    """Every level with any alert or trigger hit, in policy order."""
    out = []
    for cap in policy.capabilities:
        for level in cap.levels:
            status = LevelStatus(cap, level)
            for trig in level.evaluations:
                for rec in state.evals:
                    p = rec.predicate
                    if (
                        p.status != "success"
                        or p.value is None
                        or p.evaluation_id != trig.evaluation
                        or p.metric != trig.metric
                    ):
                        continue
                    if trig.meets(p.value, "trigger"):
                        status.triggered.append((trig, rec))
                    elif trig.meets(p.value, "alert"):
                        status.alerted.append((trig, rec))
            status.triggered.sort(key=lambda h: h[1].index)
            status.alerted.sort(key=lambda h: h[1].index)
            if status.triggered or status.alerted:
                out.append(status)
    return out


@dataclass
class SafeguardCheck:
    """Whether a safeguard has a valid attestation at ``now``, and if not why."""

    ok: bool
    expired: bool
    refs: list[Ref]
    notes: list[str]


def check_safeguard(
    policy: Policy, state: RunState, safeguard_id: str, now: datetime
) -> SafeguardCheck:
    """Rule 3/6: a valid attestation by an allowed role, in scope, not expired, not too old."""
    sg = policy.safeguard(safeguard_id)
    allowed_roles = set(sg.attested_by) if sg else set()
    notes: list[str] = []
    expired: list[Recorded[AttestationPredicate]] = []
    for rec in state.attestations:
        p = rec.predicate
        if p.safeguard != safeguard_id:
            continue
        if not allowed_roles & set(rec.roles):
            held = ", ".join(rec.roles) or "no roles"
            notes.append(
                f"attestation #{rec.index} by {rec.signer or 'an unknown key'} ({held}) not "
                f"counted: it must be signed by {' or '.join(sorted(allowed_roles))}"
            )
            continue
        if p.valid_from > now:
            notes.append(
                f"attestation #{rec.index} is valid only from {p.valid_from:%Y-%m-%d %H:%M} UTC"
            )
            continue
        until = [p.valid_until] if p.valid_until else []
        if sg and sg.max_age:
            until.append(plus(p.valid_from, sg.max_age))
        if until and now >= min(until):
            expired.append(rec)
            continue
        return SafeguardCheck(True, False, [rec.ref], [])
    if expired:
        last = expired[-1]
        p = last.predicate
        ends = [p.valid_until] if p.valid_until else []
        if sg and sg.max_age:
            ends.append(plus(p.valid_from, sg.max_age))
        notes.insert(0, f"attestation #{last.index} expired on {min(ends):%Y-%m-%d %H:%M} UTC")
        return SafeguardCheck(False, True, [last.ref], notes)
    return SafeguardCheck(False, False, [], notes)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "recipient"


def _notify(
    notes: list[Notify], status: LevelStatus, when: datetime, kind: str, done: set[str]
) -> list[Obligation]:
    out = []
    for n in notes:
        oid = n.id or f"{status.path}/{kind}/{_slug(n.recipient)}"
        if oid in done:
            continue
        out.append(
            Obligation(
                id=oid,
                recipient=n.recipient,
                deadline=plus(when, n.deadline) if n.deadline else None,
                rule=f"notify-{kind}:{status.path}",
                message=f"capability level {status.path} "
                + ("reached" if kind == "trigger" else "early warning"),
            )
        )
    return out


def _safeguard_findings(policy: Policy, state: RunState, status: LevelStatus, seen: str,
                        now: datetime) -> list[Finding]:
    """Rule 3/6: a pause for each safeguard the reached level requires that is not attested."""
    trig, rec = status.triggered[0]
    level = status.level
    name = status.capability.name or status.capability.id
    out = []
    for sid in level.requires:
        check = check_safeguard(policy, state, sid, now)
        if check.ok:
            continue
        sg = policy.safeguard(sid)
        roles = " or ".join(sg.attested_by) if sg else "?"
        kind = "safeguard-expired" if check.expired else "safeguard-missing"
        problem = "has expired" if check.expired else "has no valid attestation"
        message = f"{name} level {level.id} reached: {seen}; safeguard {sid} {problem}"
        if check.notes:
            message += " (" + "; ".join(check.notes) + ")"
        out.append(
            Finding(
                "pause",
                Reason(
                    rule=f"{kind}:{status.path}/{sid}",
                    message=message,
                    threshold=trig.trigger,
                    observed=rec.predicate.value,
                    refs=[rec.ref, *check.refs],
                ),
                missing_kind="attestation",
                missing_items=[sid],
                missing_message=f"a valid attestation of safeguard {sid} signed by "
                f"{roles} (required by {status.path})",
            )
        )
    return out


def _reached_finding(status: LevelStatus, seen: str) -> Finding:
    """Rule 3 with ``on_reach: pause``: the policy trains no run past this level, whatever is
    attested. The level stays reached, so only a new policy can let the run go on."""
    trig, rec = status.triggered[0]
    name = status.capability.name or status.capability.id
    return Finding(
        "pause",
        Reason(
            rule=f"capability-reached:{status.path}",
            message=f"{name} level {status.level.id} reached: {seen}; the policy pauses here "
            "whatever is attested (on_reach: pause)",
            threshold=trig.trigger,
            observed=rec.predicate.value,
            refs=[rec.ref],
        ),
        missing_kind="policy",
        missing_items=[status.path],
        missing_message=f"a policy change: {status.path} is reached and this policy trains no "
        "run past it (on_reach: pause); approvals cannot lift that. A new policy version, "
        "approved under governance.policy_change, must say what reaching it requires",
    )


def _alert_finding(status: LevelStatus) -> Finding:
    """Rule 4: an early-warning value is met (the level is not reached)."""
    trig, rec = status.alerted[0]
    level = status.level
    name = status.capability.name or status.capability.id
    value = rec.predicate.value
    assert value is not None
    tighter = f"; evaluations now every {level.on_alert.every:g}x" if level.on_alert.every else ""
    return Finding(
        "alert",
        Reason(
            rule=f"capability-alert:{status.path}",
            message=f"{name} level {level.id} early warning: {trig.evaluation} "
            f"{trig.metric} {value:g} met the alert value {trig.alert:g} "
            f"(entry #{rec.index}){tighter}",
            threshold=trig.alert,
            observed=value,
            refs=[rec.ref],
        ),
    )


def capability_findings(
    policy: Policy, state: RunState, now: datetime
) -> tuple[list[Finding], list[Obligation], list[Level]]:
    """Findings for reached levels (lacking safeguards, or ``on_reach: pause``) and alerted
    levels; their obligations; and every level alerted or reached, whose ``on_alert``
    tightens the cadence (the early warning does not lapse because the danger came closer)."""
    findings: list[Finding] = []
    obligations: list[Obligation] = []
    warned: list[Level] = []
    done = {n.predicate.obligation_id for n in state.notifications}
    for status in level_statuses(policy, state):
        level = status.level
        warned.append(level)
        if not status.triggered:
            findings.append(_alert_finding(status))
            rec = status.alerted[0][1]
            obligations += _notify(level.on_alert.notify, status, rec.predicate.at, "alert", done)
            continue
        trig, rec = status.triggered[0]
        value = rec.predicate.value
        assert value is not None
        seen = (
            f"{trig.evaluation} {trig.metric} {value:g} met the trigger {trig.trigger:g} "
            f"(entry #{rec.index})"
        )
        if level.on_reach == "pause":
            findings.append(_reached_finding(status, seen))
        findings += _safeguard_findings(policy, state, status, seen, now)
        obligations += _notify(level.on_trigger.notify, status, rec.predicate.at, "trigger", done)
        # The alert line was met too (at the latest when the trigger was): still owed.
        first = min((h[1] for h in status.alerted + status.triggered), key=lambda r: r.index)
        obligations += _notify(level.on_alert.notify, status, first.predicate.at, "alert", done)
    return findings, obligations, warned
