"""``decide``: policy + run state + now -> decision. Pure, deterministic, total."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from scalegate.gate._cadence import cadence_findings
from scalegate.gate._capabilities import capability_findings
from scalegate.gate._measure import Finding, Measures, flop, reached
from scalegate.gate._model import Decision
from scalegate.gate._thresholds import crossings, obligations, pause_findings
from scalegate.ledger import (
    VERDICT_ORDER,
    Obligation,
    PausePredicate,
    Reason,
    Ref,
)
from scalegate.policy import Policy, quorum_roles
from scalegate.state import Recorded, RunState


def utc(now: datetime) -> datetime:
    """``now`` as an aware UTC time (a naive time is taken to be UTC)."""
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


@dataclass
class Ceiling:
    """The compute ceiling a resumption set: its value and the statements it rests on."""

    value: float
    refs: list[Ref]


def pause_level(m: Measures, pause: Recorded[PausePredicate]) -> float:
    """Effective compute at a pause (as the policy counts it)."""
    return m.effective_at_step(pause.predicate.step, pause.predicate.effective_flop)


def ceiling_for(
    policy: Policy,
    state: RunState,
    m: Measures,
    pause: Recorded[PausePredicate],
    extra: tuple[float | None, Ref] | None = None,
) -> Ceiling | None:
    """The lowest ceiling among the quorum-role approvals of ``pause``, the resume's own
    (``extra``) and the policy's ``max_ceiling``; ``None`` if nothing limits the run."""
    rule = policy.governance.resumption
    counted = set(quorum_roles(rule.quorum))
    limits: list[tuple[float, Ref]] = []
    for a in state.approvals_for(pause.ref):
        p = a.predicate
        if p.ceiling_flop is not None and p.role in a.roles and p.role in counted:
            limits.append((p.ceiling_flop, a.ref))
    if extra is not None and extra[0] is not None:
        limits.append((extra[0], extra[1]))
    if rule.max_ceiling is not None:
        limits.append((pause_level(m, pause) * rule.max_ceiling, pause.ref))
    if not limits:
        return None
    value = min(v for v, _ in limits)
    return Ceiling(value, [r for v, r in limits if v == value])


def current_ceiling(policy: Policy, state: RunState, m: Measures) -> Ceiling | None:
    """The ceiling of the resume that lifted the latest pause, if the run is running."""
    resume = state.last_resume
    if resume is None or state.active_pause is not None:
        return None
    return ceiling_for(
        policy, state, m, state.pauses[-1], (resume.predicate.ceiling_flop, resume.ref)
    )


@dataclass
class Assessment:
    """Everything the rules found, before the active-pause rule."""

    findings: list[Finding]
    obligations: list[Obligation]
    next_eval_at_flop: float | None
    due: list[str]
    milestones: dict[str, float]
    measures: Measures
    ceiling: Ceiling | None


def assess(
    policy: Policy, state: RunState, now: datetime, *, ceiling: Ceiling | bool | None = True
) -> Assessment:
    """Apply every rule except "the run is paused". ``ceiling=True``: the current one."""
    m = Measures(policy, state)
    crossed = crossings(policy, state, m)
    findings = pause_findings(crossed, now)
    cap_findings, cap_obligations, warned = capability_findings(policy, state, now)
    cadence = cadence_findings(policy, state, m, now, warned, crossed)
    findings += cadence.findings + cap_findings
    limit = current_ceiling(policy, state, m) if ceiling is True else ceiling or None
    if limit is not None and reached(m.current, limit.value):
        findings.insert(
            0,
            Finding(
                "pause",
                Reason(
                    rule="ceiling",
                    message=f"effective compute {flop(m.current)} reached the ceiling "
                    f"{flop(limit.value)} its resumption allowed; evaluate and obtain a new "
                    "approval to go further",
                    threshold=limit.value,
                    observed=m.current,
                    refs=limit.refs,
                ),
                missing_kind="ceiling",
                missing_items=["ceiling"],
                missing_message=f"approvals with a ceiling above {flop(m.current)}",
            ),
        )
    obligations_ = obligations(crossed, state, now) + cap_obligations
    obligations_.sort(key=lambda o: (o.deadline is None, o.deadline or now, o.id))
    return Assessment(findings, obligations_, cadence.next_eval_at_flop, cadence.due,
                      cadence.milestones, m, limit)


def build(state: RunState, now: datetime, a: Assessment, extra: list[Finding]) -> Decision:
    """Assemble the decision: the highest verdict, reasons in order of severity."""
    findings = extra + a.findings
    verdict = max((f.verdict for f in findings), key=VERDICT_ORDER.__getitem__, default="continue")
    ordered = sorted(findings, key=lambda f: -VERDICT_ORDER[f.verdict])
    last = state.latest_compute
    return Decision(
        verdict=verdict,
        reasons=[f.reason for f in ordered],
        obligations=a.obligations,
        next_eval_at_flop=a.next_eval_at_flop,
        ceiling_flop=a.ceiling.value if a.ceiling else None,
        evaluations_due=a.due,
        milestones=a.milestones,
        run_id=state.run_id,
        step=last.predicate.step if last else 0,
        effective_flop=a.measures.current,
        totals=a.measures.current_totals(),
        basis_size=state.size,
        at=now,
    )


def decide(policy: Policy, state: RunState, now: datetime) -> Decision:
    """The gate: what the run must do now under ``policy``.

    Verdict precedence ``pause`` > ``evaluate`` > ``alert`` > ``continue``. Reasons name the
    rule, the threshold, the observed value and the statements (by ``Ref``) they rest on;
    obligations carry recipients and deadlines; ``next_eval_at_flop`` is the next effective
    compute milestone. Never reads the clock; never raises on a valid policy and state.
    """
    from scalegate.gate._resume import resumption_for

    now = utc(now)
    a = assess(policy, state, now)
    extra: list[Finding] = []
    pause = state.active_pause
    if pause is not None:
        res = resumption_for(policy, state, pause, now)
        needs = "; ".join(res.missing_messages()) or "a resume statement citing the approvals"
        extra.append(
            Finding(
                "pause",
                Reason(
                    rule="paused",
                    message=f"the run is paused (entry #{pause.index}, step "
                    f"{pause.predicate.step}); to resume it needs: {needs}",
                    observed=pause_level(a.measures, pause),
                    refs=[pause.ref],
                ),
            )
        )
    return build(state, now, a, extra)
