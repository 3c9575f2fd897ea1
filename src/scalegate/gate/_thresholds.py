"""Rules 1 and 5: compute thresholds that pause (inside their window) or create obligations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from scalegate.gate._measure import Finding, Measures, flop, plus, reached
from scalegate.ledger import (
    Obligation,
    Reason,
    Ref,
)
from scalegate.policy import ComputeThreshold, Policy
from scalegate.state import RunState


@dataclass
class Crossing:
    """A threshold the run has crossed: what was observed, when, and on which statement."""

    threshold: ComputeThreshold
    observed: float
    when: datetime | None
    ref: Ref | None
    index: int | None  # the compute statement that crossed it (None: crossed by the plan)


def crossings(policy: Policy, state: RunState, m: Measures) -> list[Crossing]:
    """Every compute threshold the run's plan or its recorded compute has reached."""
    out = []
    for t in policy.compute.thresholds:
        if t.basis == "planned":
            planned = state.planned_flop
            if planned is None or not reached(planned, t.flop):
                continue
            ref = state.run.ref if state.run else None
            out.append(Crossing(t, planned, state.started_at, ref, None))
        else:
            i = m.first_total(t.regime, t.flop)
            if i is None:
                continue
            observed = m.max_total(t.regime)
            out.append(Crossing(t, observed, m.records[i].predicate.at, m.ref(i), i))
    return out


def _in_window(t: ComputeThreshold, when: datetime | None) -> bool:
    if t.window is None:
        return True
    return when is not None and t.window.contains(when)


def pause_findings(crossed: list[Crossing], now: datetime) -> list[Finding]:
    """Rule 1: a ``pause`` threshold reached, while its window (if any) is open."""
    out = []
    for c in crossed:
        t = c.threshold
        if t.action != "pause" or not _in_window(t, now):
            continue
        until = (
            f" until the window ends on {t.window.end:%Y-%m-%d %H:%M} UTC"
            if t.window is not None and t.window.end is not None
            else ""
        )
        message = (
            f"compute threshold {t.id}: {t.regime} compute {t.basis} {flop(c.observed)} "
            f"reached {flop(t.flop)} FLOP; training pauses{until}"
        )
        out.append(
            Finding(
                "pause",
                Reason(
                    rule=f"compute-threshold:{t.id}",
                    message=message,
                    threshold=t.flop,
                    observed=c.observed,
                    refs=[c.ref] if c.ref else [],
                ),
                missing_kind="compute-threshold",
                missing_items=[t.id],
                missing_message=f"threshold {t.id} pauses training past {flop(t.flop)} FLOP"
                + (until or " (no window: it never lifts; change the policy)"),
            )
        )
    return out


def obligations(
    crossed: list[Crossing], state: RunState, now: datetime
) -> list[Obligation]:
    """Rule 5: ``notify`` thresholds reached or planned, not yet discharged by a notification."""
    done = {n.predicate.obligation_id for n in state.notifications}
    chosen: dict[str, tuple[Crossing, datetime | None]] = {}
    for c in crossed:
        t = c.threshold
        if t.action != "notify" or not _in_window(t, c.when) or t.obligation_id in done:
            continue
        deadline = plus(c.when, t.deadline) if (c.when and t.deadline) else None
        prior = chosen.get(t.obligation_id)
        if prior is None or _earlier(deadline, prior[1]):
            chosen[t.obligation_id] = (c, deadline)
    out = []
    for oid, (c, deadline) in chosen.items():
        t = c.threshold
        what = "is planned to reach" if t.basis == "planned" else "reached"
        entry = f" (entry #{c.ref.index})" if c.ref else ""
        message = f"{t.regime} compute {what} {flop(t.flop)} FLOP{entry}"
        if t.cite:
            message += f"; {t.cite}"
        if deadline is not None and now > deadline:
            message += f"; OVERDUE since {deadline:%Y-%m-%d %H:%M} UTC"
        out.append(
            Obligation(
                id=oid,
                recipient=t.recipient or "",
                deadline=deadline,
                rule=f"notify-threshold:{t.id}",
                message=message,
            )
        )
    return out


def _earlier(a: datetime | None, b: datetime | None) -> bool:
    if a is None:
        return False
    return b is None or a < b
