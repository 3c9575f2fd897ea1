"""Rule 2: when an evaluation is due (effective compute, calendar time, an ``evaluate``
threshold) and what happens when the run trains on without it (``on_missing``).

Each evaluation id the policy's levels rely on keeps its own milestone: the effective
compute of the checkpoint it last measured times the cadence (tightened by the ``on_alert``
of any level alerted or reached: the early warning does not lapse because the danger came
closer), and its last time plus ``max_interval``. A policy with a cadence
but no capability levels counts any evaluation (id ``*``). An evaluation is *missing*
when, after the statement that made it due, the run recorded more compute (beyond the
``grace`` multiple of the milestone) without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scalegate.gate._measure import Finding, Measures, flop, plus, reached
from scalegate.gate._thresholds import Crossing
from scalegate.ledger import (
    Reason,
    Ref,
)
from scalegate.policy import Level, Policy
from scalegate.state import RunState
from scalegate.units import format_duration

ANY = "*"


@dataclass
class EvalInfo:
    """The latest successful results of one evaluation id."""

    level: float | None = None  # highest effective compute measured
    level_ref: Ref | None = None
    last_time: datetime | None = None
    refs: list[Ref] = field(default_factory=list)


def eval_info(policy: Policy, state: RunState, m: Measures) -> dict[str, EvalInfo]:
    """Per required evaluation id: the compute and time of its latest successful result."""
    ids = policy.evaluation_ids() or [ANY]
    info = {i: EvalInfo() for i in ids}
    for rec in state.evals:
        p = rec.predicate
        if p.status != "success":
            continue
        for key in (p.evaluation_id, ANY):
            slot = info.get(key)
            if slot is None:
                continue
            lvl = m.eval_level(rec)
            if slot.level is None or lvl > slot.level:
                slot.level, slot.level_ref = lvl, rec.ref
            if slot.last_time is None or p.at >= slot.last_time:
                slot.last_time = p.at
    return info


def _tightest(values: list[float | None]) -> float | None:
    given = [v for v in values if v is not None]
    return min(given) if given else None


def _tightest_time(values: list[timedelta | None]) -> timedelta | None:
    given = [v for v in values if v is not None]
    return min(given) if given else None


@dataclass
class CadenceResult:
    findings: list[Finding]
    next_eval_at_flop: float | None
    due: list[str]
    milestones: dict[str, float]


def cadence_findings(
    policy: Policy,
    state: RunState,
    m: Measures,
    now: datetime,
    warned: list[Level],
    crossed: list[Crossing],
) -> CadenceResult:
    """Evaluation-due and evaluation-missing findings, the next milestone, the ids due now.

    ``warned``: the levels alerted or reached, whose ``on_alert`` cadence applies."""
    cad = policy.evaluation
    c = _Cadence(m, eval_info(policy, state, m), cad.grace if cad else 1.0,
                 cad.on_missing if cad else "pause")
    every = _tightest([cad.every if cad else None] + [lv.on_alert.every for lv in warned])
    interval = _tightest_time(
        [cad.max_interval if cad else None] + [lv.on_alert.max_interval for lv in warned]
    )
    if every is not None:
        c.by_compute(every, cad.first_at if cad else None)
    if interval is not None:
        start = state.started_at or (state.compute[0].predicate.at if state.compute else None)
        c.by_time(interval, start, now)
    for crossing in crossed:
        c.by_threshold(crossing)
    next_eval = min(c.milestones.values()) if c.milestones else None
    return CadenceResult(c.findings, next_eval, list(c.due), c.milestones)


@dataclass
class _Cadence:
    """The findings of one gate call, rule by rule (compute, time, thresholds)."""

    m: Measures
    info: dict[str, EvalInfo]
    grace: float
    on_missing: str
    findings: list[Finding] = field(default_factory=list)
    due: dict[str, None] = field(default_factory=dict)
    milestones: dict[str, float] = field(default_factory=dict)

    def due_now(self, rule: str, ids: list[str], message: str, threshold: float | str,
                observed: float | str, refs: list[Ref]) -> None:
        """Evaluations ``ids`` are due now (``evaluation-due:<rule>``)."""
        self.findings.append(Finding(
            "evaluate",
            Reason(rule=f"evaluation-due:{rule}", message=message, threshold=threshold,
                   observed=observed, refs=refs),
            missing_kind="evaluation", missing_items=ids,
        ))
        self.due.update(dict.fromkeys(ids))

    def missing(self, rule: str, ids: list[str], k: int, j: int, what: str) -> None:
        """Due at entry ``k`` (for ``what``), the run trained on to entry ``j`` without them."""
        m = self.m
        self.findings.append(Finding(
            self.on_missing,
            Reason(
                rule=f"evaluation-missing:{rule}",
                message=f"evaluation {', '.join(ids)} was due ({what}, entry "
                f"#{m.ref(k).index}) and the run trained on to {flop(m.effective_of(j))} "
                f"effective FLOP (entry #{m.ref(j).index}) without it",
                threshold=None,
                observed=m.effective_of(j),
                refs=[m.ref(k), m.ref(j)],
            ),
            missing_kind="evaluation",
            missing_items=ids,
            missing_message=f"a successful evaluation {', '.join(ids)} of the checkpoint "
            f"at the pause ({what})",
        ))

    def by_compute(self, every: float, first_at: float | None) -> None:
        """Every ``every`` x of effective compute (the first at ``first_at``)."""
        m, info, milestones = self.m, self.info, self.milestones
        for eid, ev in info.items():
            if ev.level is not None and ev.level > 0:
                milestones[eid] = ev.level * every
            else:
                milestones[eid] = first_at if first_at is not None else 0.0
        cur = m.current
        now_due = [e for e, ms in milestones.items() if reached(cur, ms)]
        if not now_due:
            return
        line = min(milestones[e] for e in now_due)
        k = m.first_effective(line)
        assert k is not None
        basis = [lvl for e in now_due if (lvl := info[e].level)]
        since = (f"{every:g}x the last evaluated {flop(min(basis))}"
                 if basis else "the first evaluation")
        refs = [m.ref(k)] + [info[e].level_ref for e in now_due if info[e].level_ref]
        self.due_now("compute", now_due, f"evaluation {', '.join(now_due)} due: effective "
                     f"compute {flop(cur)} reached the milestone {flop(line)} ({since})",
                     line, cur, [r for r in refs if r is not None])
        late = []
        for e in now_due:
            ke = m.first_effective(milestones[e])
            if ke is None:
                continue
            j = m.trained_past(ke, max(m.effective_of(ke), milestones[e] * self.grace))
            if j is not None:
                late.append((e, ke, j))
        if late:
            ids = [e for e, _, _ in late]
            self.missing("compute", ids, late[0][1], late[0][2],
                         f"milestone {flop(min(milestones[e] for e in ids))} effective FLOP")

    def by_time(self, interval: timedelta, start: datetime | None, now: datetime) -> None:
        """At most ``interval`` apart (the first ``interval`` after the run's ``start``)."""
        m, info = self.m, self.info
        time_due = []
        for eid, ev in info.items():
            base = ev.last_time or start
            if base is None:
                continue
            due_at = plus(base, interval)
            if now >= due_at:
                time_due.append((eid, base, due_at))
        if not time_due:
            return
        ids = [e for e, _, _ in time_due]
        first_due = min(d for _, _, d in time_due)
        oldest = min(b for _, b, _ in time_due)
        self.due_now("time", ids, f"evaluation {', '.join(ids)} due: more than "
                     f"{format_duration(interval)} since {oldest:%Y-%m-%d %H:%M} UTC",
                     first_due.isoformat(), now.isoformat(),
                     [r for r in (info[e].level_ref for e in ids) if r is not None])
        late = []
        for e, _, due_at in time_due:
            k = m.first_at_or_after(due_at)
            if k is None:
                continue
            j = m.trained_past(k, m.effective_of(k))
            if j is not None:
                late.append((e, k, j))
        if late:
            self.missing("time", [e for e, _, _ in late], late[0][1], late[0][2],
                         f"{format_duration(interval)} since the last evaluation")

    def by_threshold(self, c: Crossing) -> None:
        """A compute threshold with action ``evaluate`` was crossed (within its window)."""
        t, m = c.threshold, self.m
        if t.action != "evaluate":
            return
        if t.window is not None and (c.when is None or not t.window.contains(c.when)):
            return
        line = m.effective_of(c.index) if c.index is not None else 0.0
        ids = [e for e, ev in self.info.items()
               if ev.level is None or (line > 0 and not reached(ev.level, line))]
        if not ids:
            return
        self.due_now(f"threshold/{t.id}", ids, f"evaluation {', '.join(ids)} due: compute "
                     f"threshold {t.id} ({t.regime} {t.basis} {flop(c.observed)} >= "
                     f"{flop(t.flop)} FLOP)", t.flop, c.observed, [c.ref] if c.ref else [])
        k = c.index if c.index is not None else (0 if len(m) else None)
        if k is not None:
            j = m.trained_past(k, max(m.effective_of(k), line * self.grace))
            if j is not None:
                self.missing(f"threshold/{t.id}", ids, k, j, f"compute threshold {t.id}")


def reevaluation_missing(
    info: dict[str, EvalInfo], line: float
) -> list[str]:
    """Evaluation ids with no successful result at or beyond effective compute ``line``."""
    return [e for e, ev in info.items() if ev.level is None or not reached(ev.level, line)]

