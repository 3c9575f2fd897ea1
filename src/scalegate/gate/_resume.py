"""``resumption``: may a paused run resume, and if not, exactly what is missing.

A pause lifts only when (1) the gate, deciding as if the pause were lifted (under the
ceiling the new approvals set), no longer says pause; (2) approvals bound to this
pause's leaf hash, by keys holding the roles, satisfy every quorum clause with distinct
keys; (3) the policy's ceiling rules are met; and (4) after a pause at a ceiling (or
whenever the policy requires it) every evaluation has been run again on the checkpoint
at the pause. The resume must then start from the checkpoint the pause recorded.
"""

from __future__ import annotations

from datetime import datetime

from scalegate.gate._cadence import eval_info, reevaluation_missing
from scalegate.gate._decide import Ceiling, assess, build, ceiling_for, pause_level, utc
from scalegate.gate._measure import Finding, Measures, flop, reached
from scalegate.gate._model import Missing, Resumption
from scalegate.ledger import (
    ApprovalPredicate,
    PausePredicate,
    Ref,
)
from scalegate.policy import Policy, QuorumClause, seat_quorum
from scalegate.state import Recorded, RunState, same_ref


def match_quorum(
    clauses: list[QuorumClause], approvals: list[Recorded[ApprovalPredicate]]
) -> tuple[list[Ref], list[tuple[QuorumClause, int]], list[str]]:
    """Assign approvals to quorum seats, one seat per distinct key (maximum matching, as
    :func:`~scalegate.policy.seat_quorum` reads every quorum).

    Returns the refs of the approvals used, the clauses still short (with how many), and
    notes on approvals that could not count.
    """
    notes: list[str] = []
    # What each key may fill: the roles it approved with and actually holds.
    offers: dict[str, dict[str, Ref]] = {}
    for a in approvals:
        p = a.predicate
        signer = a.signer or f"entry #{a.index}"
        if p.role not in a.roles:
            held = ", ".join(a.roles) or "no roles"
            notes.append(
                f"approval #{a.index} by {signer} as {p.role!r} not counted: the key holds {held}"
            )
            continue
        offers.setdefault(signer, {}).setdefault(p.role, a.ref)
    seating = seat_quorum(clauses, offers)
    used = sorted((offers[key][role] for _, key, role in seating.seated), key=lambda r: r.index)
    return used, seating.short, notes


def _previous_ceiling(
    policy: Policy, state: RunState, m: Measures, pause: Recorded[PausePredicate]
) -> Ceiling | None:
    """The ceiling in force when ``pause`` was declared (from the resume before it)."""
    earlier = [p for p in state.pauses if p.index < pause.index]
    if not earlier:
        return None
    resume = state.resume_of(earlier[-1].ref)
    if resume is None or resume.index > pause.index:
        return None
    return ceiling_for(policy, state, m, earlier[-1], (resume.predicate.ceiling_flop, resume.ref))


def resumption_for(
    policy: Policy, state: RunState, pause: Recorded[PausePredicate], now: datetime
) -> Resumption:
    """The resumption analysis for a pause record of ``state``."""
    rule = policy.governance.resumption
    done = state.resume_of(pause.ref)
    if done is not None:
        return Resumption(
            may_resume=False,
            pause=pause.ref,
            checkpoint=pause.predicate.checkpoint,
            missing=[Missing(kind="pause", item=str(pause.index),
                             message=f"pause #{pause.index} was already lifted by resume "
                             f"#{done.index}")],
        )
    m = Measures(policy, state)
    at_pause = pause_level(m, pause)
    approvals = state.approvals_for(pause.ref)
    used, short, notes = match_quorum(list(rule.quorum), approvals)
    missing = _missing_approvals(pause, short, notes)
    ceiling = ceiling_for(policy, state, m, pause)
    approved_ceiling = any(
        a.predicate.ceiling_flop is not None and a.predicate.role in a.roles for a in approvals
    )
    if rule.require_ceiling and not approved_ceiling:
        missing.append(
            Missing(kind="ceiling", item="ceiling",
                    message="a compute ceiling on the approvals (the policy requires one on "
                    "every resumption)")
        )
    if ceiling is not None and reached(at_pause, ceiling.value):
        missing.append(
            Missing(kind="ceiling", item="ceiling",
                    message=f"a ceiling above the compute at the pause ({flop(at_pause)} "
                    f"effective FLOP); approved: {flop(ceiling.value)}")
        )
        ceiling = None  # the gate is asked as if the run went on without one
    a = assess(policy, state, now, ceiling=ceiling or False)
    missing += _missing_from_findings(a.findings)
    previous = _previous_ceiling(policy, state, m, pause)
    at_ceiling = previous is not None and reached(at_pause, previous.value)
    if at_ceiling or rule.require_evaluation:
        why = "the pause was at its ceiling" if at_ceiling else "the policy requires it"
        for eid in reevaluation_missing(eval_info(policy, state, m), at_pause):
            if any(x.kind == "evaluation" and x.item == eid for x in missing):
                continue
            missing.append(
                Missing(
                    kind="evaluation",
                    item=eid,
                    message=f"a successful evaluation {eid} of the checkpoint at the pause "
                    f"({flop(at_pause)} effective FLOP): {why}",
                )
            )
    return Resumption(
        may_resume=not missing,
        pause=pause.ref,
        checkpoint=pause.predicate.checkpoint,
        approvals=used,
        ceiling_flop=ceiling.value if ceiling else None,
        missing=missing,
        decision=build(state, now, a, []),
    )


def _missing_approvals(pause: Recorded[PausePredicate], short: list[tuple[QuorumClause, int]],
                       notes: list[str]) -> list[Missing]:
    """What the quorum still lacks: per clause, how many more approvals from which roles."""
    suffix = f" ({'; '.join(notes)})" if notes else ""
    out = []
    for clause, n in short:
        who = clause.describe() if n == clause.count else f"{n} more of {', '.join(clause.any_of)}"
        out.append(Missing(kind="approval", item=" | ".join(clause.any_of),
                           message=f"approval of pause #{pause.index} by {who}" + suffix))
    return out


def _missing_from_findings(findings: list[Finding]) -> list[Missing]:
    """What the gate's pausing findings ask for before the run may go on."""
    out = []
    for f in findings:
        if f.verdict != "pause":
            continue
        for item in f.missing_items or [f.reason.rule]:
            out.append(
                Missing(
                    kind=f.missing_kind,
                    item=item,
                    message=(f.missing_message or f.reason.message)
                    if f.missing_kind != "evaluation"
                    else f"a successful evaluation {item} ({f.reason.rule})",
                )
            )
    return out


def resumption(
    policy: Policy, state: RunState, pause: Ref | None = None, now: datetime | None = None
) -> Resumption:
    """Whether the run may resume from ``pause`` (default: its active pause) at ``now``
    (default: the latest time in the state), and if not exactly what is missing: which
    roles' approvals, which attestations, which evaluations, which ceiling."""
    when = utc(now) if now is not None else (state.latest_time or datetime(1970, 1, 1))
    when = utc(when)
    if pause is None:
        record = state.active_pause
        if record is None:
            return Resumption(
                may_resume=False,
                missing=[Missing(kind="pause", item="", message="the run is not paused")],
            )
    else:
        record = next((p for p in state.pauses if same_ref(p.ref, pause)), None)
        if record is None:
            return Resumption(
                may_resume=False,
                pause=pause,
                missing=[Missing(kind="pause", item=str(pause.index),
                                 message=f"no pause of run {state.run_id} at entry "
                                 f"#{pause.index} with that leaf hash")],
            )
    return resumption_for(policy, state, record, when)
