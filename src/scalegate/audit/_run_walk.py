"""The run replay's walk: one pass over a run's entries in log order (see
:mod:`scalegate.audit.replay` for what is checked and why).

The walk keeps the state folded so far (folding lazily, only up to where the gate is
asked, and in place: see ``fold(..., extend=True)``), the last compute, the pause in
force (until a *valid* resumption), and the pause the gate requires but the trainer has
not declared yet. Gate answers, recorded or the auditor's own, set the next lines to
ask again at. The work per entry is constant (and the gate keeps its per-statement
figures and extends them likewise), so a run replays in time linear in its length.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from scalegate.audit._resume_check import check_resume
from scalegate.audit._sequence import out_of_place
from scalegate.audit._times import WitnessedTimes
from scalegate.audit.replay import ReplayedDecision, RunReplay
from scalegate.audit.report import Violation
from scalegate.gate import (
    Decision,
    beyond,
    decide,
    effective_counter,
    plus,
    reached,
    resumption,
    rule_kind,
)
from scalegate.ledger import (
    AttestationPredicate,
    CheckpointPredicate,
    ComputePredicate,
    DecisionPredicate,
    EvalPredicate,
    Obligation,
    PausePredicate,
    Predicate,
    Reason,
    Ref,
    ResumePredicate,
)
from scalegate.policy import Policy
from scalegate.state import RunState, StatementOrRecord, fold

_TOL = 1e-9  # relative, as the gate compares compute with its milestones
_TRAINER_KINDS = (ComputePredicate, CheckpointPredicate, DecisionPredicate, PausePredicate,
                  ResumePredicate)
_FAR = datetime(9999, 12, 31, tzinfo=UTC)
_INDEX = operator.attrgetter("ref.index")
#: How far past a compute milestone, in steps at its own average rate, the statement that
#: first reaches it may be before it counts as having trained past it (see
#: :meth:`RunWalk._trained_past_in_one`): an honest supervisor records the step that reaches
#: the milestone, less than one step past it; the second step absorbs uneven steps.
_STEP_SLACK = 2.0


# The gate's own comparisons (relative tolerance 1e-9), so replay judges as it does.
_reached, _beyond, _plus = reached, beyond, plus


def _dropped(before: dict[str, float], after: dict[str, float]) -> bool:
    """Whether a phase's FLOP went down (as :meth:`RunWalk._backwards` reports it)."""
    for phase, flop in before.items():  # noqa: SIM110 (no generator: runs per compute)
        if after.get(phase, 0.0) < flop * (1 - _TOL):
            return True
    return False


def _flop(x: float) -> str:
    return f"{x:.3g}"


@dataclass(slots=True)
class _Base:
    """Where the run stood: the compute statement, its step and effective compute."""

    ref: Ref | None
    step: int
    eff: float

    def passed_by(self, step: int, eff: float) -> bool:
        return step > self.step or _beyond(eff, self.eff)


@dataclass
class _Required:
    """A pause the gate required at ``point`` that the trainer has not declared yet."""

    point: Ref
    answer: Decision
    base: _Base
    not_before: datetime | None  # calendar rules: going on is tolerated until then


@dataclass
class _Pause:
    ref: Ref
    base: _Base
    reported: bool = False


class RunWalk:
    """One replay of one run; :meth:`run` returns the :class:`RunReplay`."""

    def __init__(self, policy: Policy, entries: Sequence[StatementOrRecord], run_id: str,
                 now: datetime | None, grace: timedelta,
                 times: WitnessedTimes | None = None) -> None:
        self.policy, self.run_id, self.now, self.grace = policy, run_id, now, grace
        self.times = times
        self.operator_word: list[Violation] = []
        self.entries: list[StatementOrRecord] = list(entries)
        self.indices = list(map(_INDEX, self.entries))
        if any(map(operator.gt, self.indices, self.indices[1:])):  # not in log order yet
            self.entries.sort(key=_INDEX)
            self.indices.sort()
        self.misplaced = out_of_place(run_id, self.entries)
        replays = {id(e) for _, e, replayed in self.misplaced if replayed}
        if replays:  # a replayed statement is no part of the run (the fold leaves it out too)
            self.entries = [e for e in self.entries if id(e) not in replays]
            self.indices = list(map(_INDEX, self.entries))
        self.state, self.folded = RunState(run_id=run_id), 0
        self.violations: list[Violation] = []
        self.seen: set[tuple[str, object]] = set()
        self.decisions: list[ReplayedDecision] = []
        self.consults = self.resumes = 0
        self.last_ref: Ref | None = None  # the latest compute (with last_step, last_eff)
        self.last_step, self.last_eff = 0, 0.0
        self.last_tokens = 0.0
        self.last_flop: dict[str, float] = {}
        self.last_pred: ComputePredicate | None = None
        self.last_totals: dict[str, float] | None = None
        self.pause: _Pause | None = None
        self.required: _Required | None = None
        self.offending = False  # a missed pause was reported since the last declared one
        # Ask again when effective compute reaches due_at (the next milestone or ceiling,
        # as the gate compares) or goes beyond due_past (past a due evaluation).
        self.due_at: float | None = None
        self.due_past: float | None = None
        self.next_time: datetime | None = None
        self.ask_next = True
        self.after_evals: StatementOrRecord | None = None  # results not yet followed by a decision
        self.answered_at = -1  # index of the entry the last answer was given at
        self.obligations: dict[str, tuple[Obligation, Ref | None]] = {}
        cad = policy.evaluation
        self.eval_grace = cad.grace if cad else 1.0
        self.effective_of = effective_counter(policy)  # as the gate counts it
        self.reach_thresholds = [t for t in policy.compute.thresholds if t.basis == "reached"]
        self.resume_of_decision: dict[tuple[int, str], Ref] = {}
        for e in self.entries:
            p = e.predicate
            if isinstance(p, ResumePredicate) and p.run_id == run_id:
                self.resume_of_decision.setdefault((p.decision.index, p.decision.leaf_hash),
                                                   p.pause)

    # --- the walk ----------------------------------------------------------------------------

    def run(self) -> RunReplay:
        run_id = self.run_id
        for pos, e in enumerate(self.entries):
            p = e.predicate
            if type(p) is ComputePredicate and self.after_evals is None \
                    and p.run_id == run_id:  # most of a run: straight to it
                self._compute(pos, e, p)
                continue
            if isinstance(p, AttestationPredicate):
                self._attestation(e, p)
                continue
            if getattr(p, "run_id", None) != self.run_id:
                continue
            if self.after_evals is not None and not isinstance(
                    p, EvalPredicate | DecisionPredicate):
                self._ask_after_evals()
            if isinstance(p, EvalPredicate):
                self.after_evals = e if self.pause is None else None
            elif isinstance(p, ComputePredicate):
                self._compute(pos, e, p)
            elif isinstance(p, CheckpointPredicate):
                self._checkpoint(e, p)
            elif isinstance(p, DecisionPredicate):
                self.after_evals = None  # the trainer's decision on them is replayed instead
                self._decision(e, p)
            elif isinstance(p, PausePredicate):
                self._pause(e, p)
            elif isinstance(p, ResumePredicate):
                self._resume(e)
        for message, e, _ in self.misplaced:
            self._v("statement-out-of-place", message, [e.ref])
        final = self._finish()
        return RunReplay(run_id=self.run_id, decisions=self.decisions, consults=self.consults,
                         resumes=self.resumes, violations=self.violations, final=final,
                         now=self.now, state=self.state, operator_word=self.operator_word)

    def state_through(self, index: int) -> RunState:
        """The run folded over its entries up to and including ``index``."""
        k = bisect.bisect_right(self.indices, index)
        if k < self.folded:  # an earlier basis than already folded: rare, fold afresh
            return fold(self.entries[:k], run_id=self.run_id)
        if k > self.folded:  # the walk keeps only its latest state: extend it in place
            self.state = fold(self.entries[self.folded:k], run_id=self.run_id, into=self.state,
                              extend=True)
            self.folded = k
        return self.state

    def _v(self, kind: str, message: str, refs: list[Ref], key: object = None) -> None:
        if key is not None:
            if (kind, key) in self.seen:
                return
            self.seen.add((kind, key))
        self.violations.append(Violation(kind=kind, message=message, refs=refs,
                                         run_id=self.run_id))

    def _entry(self, ref: Ref, cls: type[Predicate]) -> StatementOrRecord | None:
        k = bisect.bisect_left(self.indices, ref.index)
        if k == len(self.indices) or self.indices[k] != ref.index:
            return None
        e = self.entries[k]
        if e.ref.leaf_hash != ref.leaf_hash:
            return None
        p = e.predicate
        return e if isinstance(p, cls) and getattr(p, "run_id", None) == self.run_id else None

    # --- compute and checkpoints ---------------------------------------------------------------

    def _compute(self, pos: int, e: StatementOrRecord, p: ComputePredicate) -> None:
        # Every field read once: this runs for nearly every entry of a run.
        ref, step, tokens, flop_by_phase, at = e.ref, p.step, p.tokens, p.flop_by_phase, p.at
        eff = self.effective_of(flop_by_phase)
        # Regime totals only matter for thresholds on them (the gate recounts them all).
        totals = self.policy.compute.totals(flop_by_phase) if self.reach_thresholds else {}
        last = self.last_pred
        if last is not None and self.last_ref is not None and (
                step < self.last_step or tokens < self.last_tokens * (1 - _TOL)
                or _dropped(self.last_flop, flop_by_phase)):
            self._backwards(self.last_ref, last, ref, p)
        if self.pause is not None or self.required is not None:  # else nothing to check
            self._advance(ref, step, eff, at, "compute")
        prev_totals = self.last_totals
        self.last_ref, self.last_step, self.last_eff, self.last_pred = ref, step, eff, p
        self.last_tokens, self.last_flop, self.last_totals = tokens, flop_by_phase, totals
        if self.pause is not None:
            return
        due, not_before = self._due(eff, totals, prev_totals, at)
        if not due or self._decided_right_after(pos, ref.index):
            return
        state = self.state_through(ref.index)
        self.consults += 1
        self._answer(decide(self.policy, state, at), ref, state, not_before)

    def _ask_after_evals(self) -> None:
        """New results change the answer: an honest supervisor decides right after them."""
        e, self.after_evals = self.after_evals, None
        assert e is not None
        if self.pause is not None:
            return
        state = self.state_through(e.ref.index)
        self.consults += 1
        at = getattr(e.predicate, "at")  # noqa: B009 - every kind answered here carries one
        self._answer(decide(self.policy, state, at), e.ref, state, None)

    def _backwards(self, pref: Ref, prev: ComputePredicate, ref: Ref,
                   cur: ComputePredicate) -> None:
        drops = []
        if cur.step < prev.step:
            drops.append(f"step {prev.step} → {cur.step}")
        if cur.tokens < prev.tokens * (1 - _TOL):
            drops.append(f"tokens {_flop(prev.tokens)} → {_flop(cur.tokens)}")
        for phase, before in prev.flop_by_phase.items():
            after = cur.flop_by_phase.get(phase, 0.0)
            if after < before * (1 - _TOL):
                drops.append(f"{phase} FLOP {_flop(before)} → {_flop(after)}")
        if drops:
            self._v("compute-backwards", f"compute #{ref.index} goes back from compute "
                    f"#{pref.index}: {', '.join(drops)} (compute statements are cumulative)",
                    [pref, ref])

    def _checkpoint(self, e: StatementOrRecord, p: CheckpointPredicate) -> None:
        self._advance(e.ref, p.step, -1.0, p.at, "checkpoint")

    def _advance(self, ref: Ref, step: int, eff: float, at: datetime, what: str) -> None:
        """The run moved to ``step``/``eff``: training during a pause, or past a required one?"""
        where = f"{what} #{ref.index} (step {step}" + (f", {_flop(eff)} effective FLOP)"
                                                      if eff >= 0 else ")")
        pause = self.pause
        if pause is not None:
            if not pause.reported and pause.base.passed_by(step, eff):
                pause.reported = True
                self._v("training-during-pause", f"{where} advanced the run past pause "
                        f"#{pause.ref.index} (step {pause.base.step}, {_flop(pause.base.eff)} "
                        "effective FLOP) before a valid resumption", [pause.ref, ref])
            return
        req = self.required
        if req is None or not req.base.passed_by(step, eff):
            return
        if req.not_before is not None and at <= req.not_before:
            return
        self.required = None
        if self.offending:
            return
        self.offending = True
        kinds = {rule_kind(r.rule) for r in req.answer.reasons}
        rules = ", ".join(r.rule for r in req.answer.reasons)
        said = f"the gate required a pause at entry #{req.point.index} ({rules})"
        if "ceiling" in kinds:
            ceiling = req.answer.ceiling_flop
            self._v("ceiling-exceeded", f"{where} went past the compute ceiling "
                    f"{_flop(ceiling or 0.0)} its resumption allowed: {said}, and no pause "
                    "was declared", [req.point, ref])
        if kinds & {"compute-threshold", "evaluation-missing", "safeguard-missing",
                    "safeguard-expired", "capability-reached"} or "ceiling" not in kinds:
            self._v("pause-not-declared", f"{said}; the run trained on to {where} without "
                    "declaring it", [req.point, ref])
        self._expired(req.answer, req.point)

    def _due(self, eff: float, totals: dict[str, float], prev: dict[str, float] | None,
             at: datetime) -> tuple[bool, datetime | None]:
        """Whether an honest supervisor had to ask the gate at this compute; for a calendar
        reason, until when going on is tolerated."""
        if self.ask_next or prev is None:
            return True, None
        if (self.due_at is not None and eff >= self.due_at) or (
                self.due_past is not None and eff > self.due_past):
            return True, None
        for t in self.reach_thresholds:
            if _reached(totals.get(t.regime, 0.0), t.flop) and not _reached(
                    prev.get(t.regime, 0.0), t.flop):
                return True, None
        if self.next_time is not None and at >= self.next_time:
            return True, _plus(self.next_time, self.grace)
        return False, None

    def _decided_right_after(self, pos: int, index: int) -> bool:
        """The trainer recorded a decision on exactly this state next: its replay answers."""
        if pos + 1 >= len(self.entries):
            return False
        p = self.entries[pos + 1].predicate
        return isinstance(p, DecisionPredicate) and p.run_id == self.run_id \
            and p.basis_size == index + 1

    # --- decisions -----------------------------------------------------------------------------

    def _decision(self, e: StatementOrRecord, p: DecisionPredicate) -> None:
        index, basis = e.ref.index, p.basis_size
        problems = []
        if basis > index:
            problems.append(f"its basis_size {basis} counts entries at or after itself")
            basis = index
        else:
            lo = bisect.bisect_left(self.indices, basis)
            hi = bisect.bisect_left(self.indices, index)
            ignored = [x for x in self.entries[lo:hi]
                       if isinstance(x.predicate, _TRAINER_KINDS)
                       and getattr(x.predicate, "run_id", None) == self.run_id]
            if ignored:
                problems.append(f"its basis (log size {basis}) leaves out the run's own entry "
                                f"#{ignored[0].ref.index} before it")
        state = self.state_through(basis - 1)
        pause = self.resume_of_decision.get((index, e.ref.leaf_hash))
        answer = (resumption(self.policy, state, pause, now=p.at).decision if pause is not None
                  else decide(self.policy, state, p.at))
        replayed = ReplayedDecision(
            ref=e.ref, recorded=p.verdict, replayed=answer.verdict if answer else "pause",
            recorded_rules=[r.rule for r in p.reasons],
            replayed_rules=answer.rules if answer else ["paused"], at=p.at,
            effective_flop=p.effective_flop)
        self.decisions.append(replayed)
        if not replayed.matches:
            problems.insert(0, f"recorded {p.verdict} ({', '.join(replayed.recorded_rules) or '-'})"
                            f", the gate replays {replayed.replayed} "
                            f"({', '.join(replayed.replayed_rules) or '-'})")
        if problems:
            self._v("decision-mismatch", f"decision #{index}: " + "; ".join(problems), [e.ref])
            if answer is not None:
                self._expired(answer, e.ref)
        if answer is not None:
            self._answer(answer, e.ref, state, None)

    def _answer(self, ans: Decision, point: Ref, state: RunState,
                not_before: datetime | None) -> None:
        """Take in a gate answer: obligations, skipped evaluations, a required pause, and when
        to ask again."""
        self.answered_at = point.index
        for o in ans.obligations:
            self.obligations.setdefault(o.id, (o, point))
        missing = set()
        for r in ans.reasons:
            kind, _, detail = r.rule.partition(":")
            if kind == "evaluation-missing":
                missing.add(detail)
                first = r.refs[0].index if r.refs else point.index
                refs = list(r.refs)
                if not any(x.index == point.index for x in refs):
                    refs.append(point)
                self._v("evaluation-skipped", f"{r.message} (found at entry #{point.index})",
                        refs, key=(r.rule, first))
        for r in ans.reasons:
            if r.rule == "evaluation-due:compute" and "compute" not in missing:
                self._trained_past_in_one(r, state)
        if ans.verdict == "pause" and self.pause is None:
            if self.required is None:
                latest = state.latest_compute
                base = (_Base(latest.ref, latest.predicate.step, ans.effective_flop)
                        if latest is not None else _Base(None, 0, 0.0))
                self.required = _Required(point, ans, base, not_before)
        elif ans.verdict != "pause":
            self.required = None
        eff0 = ans.effective_flop
        lines = [x for x in (ans.next_eval_at_flop, ans.ceiling_flop)
                 if x is not None and not _reached(eff0, x)]
        beyond_lines = []
        for r in ans.reasons:
            kind, _, detail = r.rule.partition(":")
            if kind == "evaluation-due" and detail not in missing:
                line = r.threshold * self.eval_grace if isinstance(r.threshold, float | int) \
                    else eff0
                beyond_lines.append(max(eff0, line))
        # _reached(eff, x) for some x is eff >= the least x·(1 - tol) (or eff > 0 for a
        # line at 0); _beyond(eff, x) for some x is eff > the least x·(1 + tol).
        reach = [x * (1 - _TOL) for x in lines if x > 0]
        past = [x * (1 + _TOL) for x in beyond_lines] + [0.0 for x in lines if x <= 0]
        self.due_at, self.due_past = min(reach, default=None), min(past, default=None)
        self.next_time = self._next_time(state, ans.at)
        self.ask_next = False

    def _trained_past_in_one(self, due: Reason, state: RunState) -> None:
        """An evaluation milestone that the run's latest ``compute`` statement made due, when
        that one statement already went past it: ``evaluation-skipped``, whichever statement
        it is (the run's last one, a final flush with nothing after it, included).

        The gate counts an evaluation as *missing* only when a statement *after* the one
        that made it due (the first to reach the milestone) trained further (beyond the
        policy's ``grace`` multiple of the milestone): it takes that first statement as the
        point where the supervisor stopped to evaluate. So a statement that jumps from below
        the milestone far past it, with nothing after it (a final flush) or followed by the
        evaluation, is judged here or not at all.

        Decision: such a statement trained past the milestone without the evaluation
        before it, whatever follows it (the supervisor evaluates *at* the milestone, and an
        evaluation at the far end does not show what the run was at the milestone), when

        - its effective compute is beyond the milestone times ``grace`` (how far the policy
          lets training go while the evaluation runs), and
        - it is past the milestone by more than ``_STEP_SLACK`` steps at the statement's own
          average rate (FLOP gained over steps taken since the run's previous ``compute``
          statement, or since step 0). An honest supervisor records the step that reaches
          the milestone, before evaluating, so its statement is less than one step past it,
          however many steps it covers; while the evaluation runs (an audit may come then)
          that statement is the run's last, and is not flagged.

        A statement that merely reaches the milestone (within those bounds) is where
        training stopped, not past it: what comes after it is the gate's to judge. A
        statement whose step did not advance gives no rate and is not judged here. Only the
        compute cadence is judged so: a calendar due point or an ``evaluate`` threshold has
        no milestone in effective compute to go past within one statement."""
        line, records = due.threshold, state.compute
        if not isinstance(line, float | int) or not records or not due.refs:
            return
        cur = records[-1]
        if due.refs[0].index != cur.ref.index:
            return  # made due by an earlier statement: the gate judges what followed it
        p = cur.predicate
        eff = self.effective_of(p.flop_by_phase)
        if not _beyond(eff, line * self.eval_grace):
            return
        prev = records[-2] if len(records) > 1 else None
        step0, eff0 = ((prev.predicate.step, self.effective_of(prev.predicate.flop_by_phase))
                       if prev is not None else (0, 0.0))
        steps = p.step - step0
        if steps <= 0 or not eff > eff0:
            return
        per_step = (eff - eff0) / steps
        if not _beyond(eff - _STEP_SLACK * per_step, line):
            return
        past = (eff - line) / per_step
        since = (f"from compute #{prev.ref.index} (step {step0}, {_flop(eff0)} effective FLOP)"
                 if prev is not None else "from the start of the run")
        refs = [prev.ref, cur.ref] if prev is not None else [cur.ref]
        self._v("evaluation-skipped", f"{due.message}; compute #{cur.ref.index} is the first "
                f"statement to reach it and went past it in one: {since} to step {p.step}, "
                f"{_flop(eff)} effective FLOP, about {past:.0f} steps past the milestone and "
                f"beyond its grace ({self.eval_grace:g}x), with no evaluation at the milestone",
                refs, key=("evaluation-missing:compute", cur.ref.index))

    def _next_time(self, state: RunState, after: datetime) -> datetime | None:
        """The next time a calendar rule can change the gate's answer."""
        policy, events = self.policy, []
        for rec in state.attestations:
            a = rec.predicate
            sg = policy.safeguard(a.safeguard)
            if sg is None:
                continue
            events.append(a.valid_from)
            if a.valid_until is not None:
                events.append(a.valid_until)
            if sg.max_age is not None:
                events.append(_plus(a.valid_from, sg.max_age))
        for t in policy.compute.thresholds:
            if t.window is not None:
                events += [t.window.start, t.window.end or _FAR]
        intervals = [policy.evaluation.max_interval] if policy.evaluation else []
        intervals += [lv.on_alert.max_interval for c in policy.capabilities for lv in c.levels]
        given = [i for i in intervals if i is not None]
        start = state.started_at or (state.compute[0].predicate.at if state.compute else None)
        if given and start is not None:
            last: dict[str, datetime] = {}
            for evr in state.evals:
                ev = evr.predicate
                if ev.status == "success" and (ev.evaluation_id not in last
                                               or ev.at > last[ev.evaluation_id]):
                    last[ev.evaluation_id] = ev.at
            ids = policy.evaluation_ids()
            bases = ([last.get(i, start) for i in ids] if ids
                     else [max(last.values(), default=start)])
            events.append(_plus(min(bases), min(given)))
        future = [t for t in events if t > after]
        return min(future, default=None)

    def _never_declared(self, now: datetime) -> None:
        """A statement of the run's own made the gate require a pause (its compute reached a
        line: a ceiling, a threshold, a milestone), and the log ends without one: the
        trainer recorded a step past the line and stopped recording instead of declaring
        it. A supervisor declares it with that step; within the grace it may be on its way.
        (A pause that only the calendar requires is not judged here: a run that has
        stopped training is not expected to notice the clock.)"""
        req = self.required
        if req is None or req.not_before is not None or self.pause is not None \
                or self.offending:
            return
        if now <= _plus(req.answer.at, self.grace):
            return
        rules = ", ".join(r.rule for r in req.answer.reasons)
        self._v("pause-not-declared", f"the gate required a pause at entry #{req.point.index} "
                f"({rules}, at {_flop(req.answer.effective_flop)} effective FLOP); by the audit "
                f"time {_iso(now)} no pause was declared", [req.point])
        self._expired(req.answer, req.point)

    def _expired(self, ans: Decision, point: Ref) -> None:
        for r in ans.reasons:
            if rule_kind(r.rule) != "safeguard-expired":
                continue
            for att in r.refs[1:]:
                self._v("attestation-expired", f"{r.message}; the run relied on attestation "
                        f"#{att.index} at entry #{point.index} after it expired", [att, point],
                        key=att.index)

    # --- pauses and resumptions ------------------------------------------------------------------

    def _pause(self, e: StatementOrRecord, p: PausePredicate) -> None:
        where = f"pause #{e.ref.index}"
        if self._entry(p.decision, DecisionPredicate) is None:
            self._v("bad-reference", f"{where} cites entry #{p.decision.index} as its decision, "
                    f"but it is no decision of run {self.run_id}", [e.ref, p.decision])
        if self._entry(p.checkpoint, CheckpointPredicate) is None:
            self._v("bad-reference", f"{where} cites entry #{p.checkpoint.index} as its "
                    f"checkpoint, but it is no checkpoint of run {self.run_id}",
                    [e.ref, p.checkpoint])
        base = _Base(self.last_ref, self.last_step, self.last_eff)
        if self.pause is not None:  # paused twice: the earlier stand-still still counts
            base = self.pause.base
        self.pause = _Pause(e.ref, base, self.pause.reported if self.pause else False)
        self.required, self.offending = None, False

    def _resume(self, e: StatementOrRecord) -> None:
        self.resumes += 1
        state = self.state_through(e.ref.index - 1)
        findings, res = check_resume(self.policy, state, e, lambda r: self._entry(
            r, DecisionPredicate) is not None)
        for kind, message, refs in findings:
            self._v(kind, message, refs)
        if res is not None and findings and res.decision is not None:
            self._expired(res.decision, e.ref)
        p = e.predicate
        assert isinstance(p, ResumePredicate)
        if not findings and self.pause is not None and self.pause.ref.index == p.pause.index:
            self.pause = None
            if self.answered_at < p.pause.index:
                self.ask_next = True  # no resumption decision to take the ceiling from

    def _attestation(self, e: StatementOrRecord, p: AttestationPredicate) -> None:
        sg = self.policy.safeguard(p.safeguard)
        if sg is None or set(sg.attested_by) & set(e.roles):
            return
        self._v("attestation-wrong-role", f"attestation #{e.ref.index} of safeguard "
                f"{p.safeguard} is signed by {e.signer or 'an unknown key'} holding "
                f"{', '.join(e.roles) or 'no roles'}; the policy allows only "
                f"{' or '.join(sg.attested_by)}", [e.ref], key=e.ref.index)

    # --- the end -------------------------------------------------------------------------------

    def _finish(self) -> Decision | None:
        state = self.state_through(self.indices[-1] if self.indices else -1)
        if self.now is None:
            self.now = state.latest_time or datetime(1970, 1, 1, tzinfo=UTC)
        now = self.now
        self._never_declared(now)
        final = None
        if state.run is not None:
            final = decide(self.policy, state, now)
            self.consults += 1
            latest = state.latest_compute
            point: Ref | None = latest.ref if latest is not None else (
                state.run.ref if state.run is not None else None)
            for o in final.obligations:
                self.obligations.setdefault(o.id, (o, point))
        sent: dict[str, list] = {}
        for n in state.notifications:
            sent.setdefault(n.predicate.obligation_id, []).append(n)
        for oid, (o, point) in self.obligations.items():
            if o.deadline is None:
                continue
            notes = sent.get(oid)
            what = f"obligation {oid} (notify {o.recipient or '?'}: {o.message})"
            refs = [point] if point is not None else []
            if not notes:
                if now > o.deadline:
                    self._v("notification-missed", f"{what} was due by {_iso(o.deadline)}; no "
                            f"notification is recorded (audit time {_iso(now)})", refs)
                continue
            self._notified(what, o.deadline, notes, refs)
        return final

    def _notified(self, what: str, deadline: datetime, notes: list[Any], refs: list[Ref]
                  ) -> None:
        """Judge an obligation's notifications by when they were logged
        (:func:`judge_notifications`): a miss is a violation, a deadline met only on the
        log operator's word is listed apart."""
        status, message, found = judge_notifications(what, deadline, notes, refs, self.times,
                                                     self.grace)
        if status == "missed":
            self._v("notification-missed", message, found)
        elif status == "operator-word":
            self.operator_word.append(Violation(kind="deadline-on-operator-word",
                                                run_id=self.run_id, refs=found, message=message))


def judge_notifications(what: str, deadline: datetime, notes: list[Any], refs: list[Ref],
                        times: WitnessedTimes | None, grace: timedelta
                        ) -> tuple[str, str, list[Ref]]:
    """How an obligation's notifications (records with ``logged_at``, at least one) stand,
    judged by when they were logged: ``met`` when a witness shows one logged by the
    deadline (plus ``grace``); ``missed`` when every one was sent after it, or witnesses
    show each logged after it, or (where no witness decides) the log's own time says so;
    otherwise ``operator-word``: met on the log operator's word only. With the message and
    the statements involved (``refs`` and the notification judged)."""
    first = min(notes, key=lambda n: n.predicate.sent_at)
    if first.predicate.sent_at > deadline:
        return ("missed", f"{what} was due by {_iso(deadline)}; the notification "
                f"#{first.index} was sent only at {_iso(first.predicate.sent_at)}",
                [*refs, first.ref])
    due = _plus(deadline, grace)
    undecided = []
    for n in notes:
        earliest, latest = times.bounds(n.index) if times else (None, None)
        if latest is not None and latest <= due:
            return ("met", f"{what} was due by {_iso(deadline)}; notification #{n.index} was "
                    f"logged by {_iso(latest)}, as a witness's cosignature shows",
                    [*refs, n.ref])
        if earliest is not None and earliest > due:
            continue  # a witness shows it logged too late
        undecided.append(n)
    on_word = [n for n in undecided if n.logged_at is None or n.logged_at <= due]
    if on_word:
        n = on_word[0]
        said = f"at {_iso(n.logged_at)}" if n.logged_at is not None else "(time unknown)"
        return ("operator-word", f"{what} was due by {_iso(deadline)}; notification #{n.index} "
                f"was logged {said} by the log's own clock, and no witnessed checkpoint shows "
                "whether it was in time", [*refs, n.ref])
    late = min(notes, key=lambda n: n.index)
    earliest, _ = times.bounds(late.index) if times else (None, None)
    shown = (f"a witness cosigned at {_iso(earliest)} a checkpoint that did not yet "
             "contain it" if earliest is not None and earliest > due else
             f"the log recorded it only at {_iso(late.logged_at)}")
    return ("missed", f"{what} was due by {_iso(deadline)}; the notification #{late.index} says "
            f"it was sent at {_iso(late.predicate.sent_at)}, but {shown}: nothing in the log "
            "shows it in time", [*refs, late.ref])


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
