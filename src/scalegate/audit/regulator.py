"""The regulator's audit: every run held to a policy it did not choose.

A run registers under its lab's own policy, and the replay judges the lab by it. A
regulator holds the same runs to the law regardless (``scalegate verify --policy
eu-ai-act``), and anyone may hold them to the 2023 pause letter. Under such a policy the
lab's decisions are not expected to match (its gate never consulted that policy), so
nothing here is replayed decision by decision. What is judged is what the policy's
**compute thresholds** require of any run, from the compute the run recorded, counted
in the policy's own regimes:

- each threshold: reached (by which statement, when) or not (the highest total
  recorded; for a ``planned`` one, the run's declared plan);
- each ``notify`` threshold reached (inside its window, if it has one) owes a
  notification: its deadline runs from when the threshold was reached — the crossing
  statement's own time, or earlier if a witnessed checkpoint shows it logged before that
  (a lab gains nothing by dating it late). A notification in the log counts for the
  obligation when it names the obligation's id or its recipient, and is judged by the
  witnessed-time rules of the replay (:func:`~scalegate.audit._run_walk.judge_notifications`):
  met, missed, or met only on the log operator's word. Past its deadline with none is
  missed; before it, the obligation is listed as due;
- each ``pause`` threshold reached: training past its line while its window was open (a
  moratorium such as the letter's six months; a threshold without a window is always
  open) is ``moratorium-training`` — a ``compute`` statement beyond the line that added
  compute, dated inside the window or shown by the witnesses logged inside it;
- ``evaluate`` thresholds are reported reached or not; the policy's evaluation cadence,
  capability levels and governance are not judged (they rest on evaluations and roles
  the lab's own policy defines), and the report says so.

Every finding carries the policy it comes from; ``notification-missed`` and
``moratorium-training`` findings are violations (exit status 3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from scalegate.audit._run_walk import judge_notifications
from scalegate.audit._times import WitnessedTimes
from scalegate.audit.replay import TIME_GRACE
from scalegate.gate import beyond, plus, reached
from scalegate.ledger import (
    ComputePredicate,
    NotificationPredicate,
    Ref,
    RunPredicate,
)
from scalegate.policy import ComputeThreshold, Policy, Window
from scalegate.state import Recorded
from scalegate.units import counted

__all__ = ["HELD_VIOLATION_KINDS", "HeldTo", "PolicyFinding", "hold_runs"]

#: The violations holding a run to another policy can find, with what they mean.
HELD_VIOLATION_KINDS: dict[str, str] = {
    "notification-missed": "a notification the policy requires was not logged by its "
    "deadline (or was sent after it)",
    "moratorium-training": "the run trained past a pause threshold of the policy while its "
    "window was open",
}

Status = Literal["reached", "not-reached", "outside-window", "met", "missed",
                 "operator-word", "due", "owed", "sent", "breached", "respected"]


class PolicyFinding(BaseModel):
    """What one policy the run was held to says about one of its thresholds or obligations."""

    model_config = ConfigDict(frozen=True)

    policy: str = Field(description="the policy's id")
    run_id: str
    kind: Literal["threshold", "notification", "moratorium"]
    subject: str = Field(description="the threshold's id, or the obligation's")
    status: Status
    message: str
    refs: list[Ref] = Field(default_factory=list)
    when: datetime | None = Field(None, description="when the threshold was reached")
    deadline: datetime | None = None
    violation: str | None = Field(None, description="the violation kind, when it is one")


class HeldTo(BaseModel):
    """Every run held to one policy: its findings, and what of the policy is not judged."""

    model_config = ConfigDict(frozen=True)

    id: str
    version: str
    kind: str
    title: str
    digest: str
    runs: int
    findings: list[PolicyFinding] = Field(default_factory=list)
    not_judged: list[str] = Field(default_factory=list)

    @property
    def label(self) -> str:
        """``id version``, as reports name the policy."""
        return f"{self.id} {self.version}"

    @property
    def violations(self) -> list[PolicyFinding]:
        """The findings that are violations."""
        return [f for f in self.findings if f.violation is not None]

    def summary(self) -> str:
        """One line: runs, thresholds reached, notifications and how they stand, breaches."""
        count = {s: sum(1 for f in self.findings if f.status == s) for s in get_args(Status)}
        owed = [f for f in self.findings if f.kind == "notification"]
        parts = [counted(self.runs, "runs"),
                 f"{count['reached']} threshold(s) reached"
                 + (f" ({count['outside-window']} outside their window)"
                    if count["outside-window"] else "")]
        if owed:
            states = [("met", "met"), ("missed", "missed"),
                      ("operator-word", "met on the log operator's word only"),
                      ("due", "not yet due"), ("sent", "sent (no deadline)"),
                      ("owed", "not sent (no deadline)")]
            parts.append(f"{counted(len(owed), 'notifications')} owed: " + ", ".join(
                f"{count[s]} {said}" for s, said in states if count[s]))
        moratoria = count["breached"] + count["respected"]
        if moratoria:
            parts.append(f"{counted(moratoria, 'pause thresholds')} reached, "
                         f"{count['breached']} breached by training inside the window")
        return "; ".join(parts)


def hold_runs(
    policy: Policy,
    runs: Mapping[str, Sequence[Recorded[Any]]],
    *,
    times: WitnessedTimes | None = None,
    now: datetime | None = None,
    grace: timedelta = TIME_GRACE,
    read: dict[tuple[str, str], Any] | None = None,
) -> HeldTo:
    """Hold every run in ``runs`` (run id -> its records, as
    :class:`~scalegate.audit.runcheck.RunCollector` keeps them) to ``policy``'s compute
    thresholds (see the module docstring). ``times`` are the witnessed bounds on when each
    entry was logged; ``now`` the audit time (default: now). ``read`` keeps what was read
    of each run's records between calls whose runs only grow (an incremental audit's), so
    that each record is read once."""
    now = now or datetime.now(UTC)
    digest = policy.digest()
    findings: list[PolicyFinding] = []
    for run_id, records in runs.items():
        key = (digest, run_id)
        got = read.get(key) if read is not None else None
        if got is None or not got.take(records):
            got = _Read(policy, run_id)
            got.take(sorted(records, key=lambda e: e.ref.index))
            if read is not None:
                read[key] = got
        findings.extend(_Run(policy, run_id, got, times, now, grace).findings())
    return HeldTo(id=policy.id, version=policy.version, kind=policy.kind, title=policy.title,
                  digest=digest, runs=len(runs), findings=findings,
                  not_judged=_not_judged(policy))


class _Read:
    """A run's records as holding it to a policy reads them: its run statement, its
    computes with each regime's total, its notifications (in log order)."""

    def __init__(self, policy: Policy, run_id: str) -> None:
        self.run_id, self.n, self.last = run_id, 0, -1
        self.run: Recorded[RunPredicate] | None = None
        self.computes: list[Recorded[ComputePredicate]] = []
        self.notes: list[Recorded[NotificationPredicate]] = []
        regimes = policy.compute.regimes
        self.include = {t.regime: regimes[t.regime].include
                        for t in policy.compute.thresholds if t.regime in regimes}
        self.totals: dict[str, list[float]] = {name: [] for name in self.include}
        # (regime, FLOP) -> (totals scanned, first reaching, highest, its position)
        self._reach: dict[tuple[str, float], tuple[int, int | None, float, int | None]] = {}

    def reaching(self, regime: str, flop: float) -> tuple[int | None, float, int | None]:
        """The position of the first compute whose ``regime`` total reaches ``flop`` (as
        the gate compares), and the highest total so far with its first position; each
        total is looked at once across calls."""
        values = self.totals.get(regime, [])
        scanned, first, top, top_i = self._reach.get((regime, flop), (0, None, 0.0, None))
        if first is None:
            for i in range(scanned, len(values)):
                v = values[i]
                if top_i is None or v > top:
                    top, top_i = v, i
                if reached(v, flop):
                    first = i
                    break
            scanned = len(values) if first is None else first + 1
        self._reach[(regime, flop)] = (scanned, first, top, top_i)
        return first, top, top_i

    def take(self, records: Sequence[Recorded[Any]]) -> bool:
        """Read the records after those read before; false (nothing read) when they do
        not simply follow them in log order."""
        new = records[self.n:]
        if any(e.ref.index <= last for e, last in zip(
                new, [self.last, *(e.ref.index for e in new)], strict=False)):
            return False
        for e in new:
            p = e.predicate
            if type(p) is ComputePredicate and p.run_id == self.run_id:
                self.computes.append(e)
                for name, include in self.include.items():
                    self.totals[name].append(float(sum(p.flop_by_phase.get(x, 0.0)
                                                       for x in include)))
            elif isinstance(p, NotificationPredicate):
                self.notes.append(e)
            elif self.run is None and isinstance(p, RunPredicate):
                self.run = e
        self.n = len(records)
        if new:
            self.last = new[-1].ref.index
        return True


def _not_judged(policy: Policy) -> list[str]:
    out = []
    if policy.evaluation is not None:
        out.append("its evaluation cadence")
    if policy.capabilities:
        out.append(f"its capability levels ({', '.join(c.id for c in policy.capabilities)})")
    if policy.safeguards:
        out.append("its safeguards")
    return out


class _Crossing:
    """A threshold reached: by which statement, at what total, and when."""

    def __init__(self, ref: Ref, observed: float, when: datetime, position: int | None,
                 how: str) -> None:
        self.ref, self.observed, self.when, self.position, self.how = (
            ref, observed, when, position, how)


class _Run:
    def __init__(self, policy: Policy, run_id: str, read: _Read,
                 times: WitnessedTimes | None, now: datetime, grace: timedelta) -> None:
        self.policy, self.run_id, self.times, self.now, self.grace = (
            policy, run_id, times, now, grace)
        self.run, self.computes, self.notes = read.run, read.computes, read.notes
        self.totals, self.read = read.totals, read
        self.out: list[PolicyFinding] = []

    def findings(self) -> list[PolicyFinding]:
        owed: dict[str, tuple[ComputeThreshold, _Crossing, datetime | None]] = {}
        for t in self.policy.compute.thresholds:
            crossing = self._crossing(t)
            if crossing is None:
                continue
            if t.window is not None and not t.window.contains(crossing.when) \
                    and t.action != "pause":
                self._add("threshold", t.id, "outside-window", f"{self._reached(t, crossing)}, "
                          f"outside the threshold's window ({_window(t.window)}): nothing owed",
                          [crossing.ref], when=crossing.when)
                continue
            self._add("threshold", t.id, "reached", self._reached(t, crossing)
                      + ("; the policy requires an evaluation (not judged here)"
                         if t.action == "evaluate" else ""), [crossing.ref], when=crossing.when)
            if t.action == "notify":
                deadline = plus(crossing.when, t.deadline) if t.deadline is not None else None
                prior = owed.get(t.obligation_id)
                if prior is None or (deadline is not None and (prior[2] is None
                                                               or deadline < prior[2])):
                    owed[t.obligation_id] = (t, crossing, deadline)
            elif t.action == "pause":
                self._moratorium(t, crossing)
        for oid, (t, crossing, deadline) in owed.items():
            self._obligation(oid, t, crossing, deadline)
        return self.out

    # --- thresholds ------------------------------------------------------------------------

    def _crossing(self, t: ComputeThreshold) -> _Crossing | None:
        """The statement that reached ``t`` (recording a "not reached" finding if none)."""
        if t.basis == "planned":
            planned = self.run.predicate.planned_flop if self.run is not None else None
            if self.run is None or planned is None or not reached(planned, t.flop):
                plan = "declares no planned compute" if planned is None else \
                    f"plans {_flop(planned)} FLOP"
                self._add("threshold", t.id, "not-reached", f"the run {plan}, below the "
                          f"{t.regime} threshold of {_flop(t.flop)} FLOP (planned)",
                          [self.run.ref] if self.run is not None else [])
                return None
            when, _ = self._logged_by(self.run.ref.index, self.run.predicate.started_at)
            return _Crossing(self.run.ref, planned, when, None, "planned")
        first, top, top_i = self.read.reaching(t.regime, t.flop)
        if first is not None:
            e = self.computes[first]
            when, _ = self._logged_by(e.ref.index, e.predicate.at)
            return _Crossing(e.ref, self.totals[t.regime][first], when, first, "reached")
        refs = [self.computes[top_i].ref] if top_i is not None else []
        self._add("threshold", t.id, "not-reached", f"{t.regime} compute reached at most "
                  f"{_flop(top)} FLOP of the {_flop(t.flop)} FLOP threshold", refs)
        return None

    def _logged_by(self, index: int, claimed: datetime) -> tuple[datetime, bool]:
        """When a statement's fact held at the latest: its own time, or the earlier time a
        witnessed checkpoint shows it logged by (a late date does not move a deadline)."""
        _, latest = self.times.bounds(index) if self.times else (None, None)
        if latest is not None and latest < claimed:
            return latest, True
        return claimed, False

    def _reached(self, t: ComputeThreshold, c: _Crossing) -> str:
        what = "the run's plan" if c.how == "planned" else f"compute #{c.ref.index}"
        return (f"{what} {'plans' if c.how == 'planned' else 'reached'} {_flop(c.observed)} "
                f"FLOP of {t.regime} compute, at or past the {_flop(t.flop)} FLOP threshold, at "
                f"{_iso(c.when)}" + (f" ({t.cite})" if t.cite else ""))

    # --- obligations ---------------------------------------------------------------------------

    def _obligation(self, oid: str, t: ComputeThreshold, c: _Crossing,
                    deadline: datetime | None) -> None:
        recipient = t.recipient or "?"
        what = f"obligation {oid} (notify {recipient}; threshold {t.id} reached at {_iso(c.when)})"
        notes = [n for n in self.notes
                 if n.predicate.obligation_id == oid or n.predicate.recipient == recipient]
        if deadline is None:
            if notes:
                self._add("notification", oid, "sent", f"{what}: notification #{notes[0].index} "
                          "records it sent (the policy sets no deadline)",
                          [c.ref, notes[0].ref])
            else:
                self._add("notification", oid, "owed", f"{what}: no notification is recorded "
                          "(the policy sets no deadline)", [c.ref])
            return
        if not notes:
            if self.now > deadline:
                self._add("notification", oid, "missed", f"{what} was due by {_iso(deadline)}; "
                          f"no notification is recorded (audit time {_iso(self.now)})",
                          [c.ref], deadline=deadline, violation="notification-missed")
            else:
                self._add("notification", oid, "due", f"{what} is due by {_iso(deadline)}; "
                          "no notification is recorded yet", [c.ref], deadline=deadline)
            return
        status, message, refs = judge_notifications(what, deadline, notes, [c.ref], self.times,
                                                    self.grace)
        self._add("notification", oid, status, message, refs, deadline=deadline,  # type: ignore[arg-type]
                  violation="notification-missed" if status == "missed" else None)

    # --- moratoria -----------------------------------------------------------------------------

    def _moratorium(self, t: ComputeThreshold, c: _Crossing) -> None:
        window = t.window
        where = f"inside its window ({_window(window)})" if window else "(it has no window: " \
            "always in force)"
        if c.position is None:  # a planned pause line: judged on the compute that follows
            first = next((i for i, v in enumerate(self.totals.get(t.regime, []))
                          if beyond(v, t.flop)), None)
            if first is None:
                self._add("moratorium", t.id, "respected", f"the plan reaches threshold {t.id}; "
                          f"no compute past {_flop(t.flop)} FLOP is recorded", [c.ref])
                return
            start = first
        else:
            start = c.position
        values = self.totals[t.regime]
        inside: list[tuple[int, str]] = []
        for i in range(start, len(values)):
            before = values[i - 1] if i > 0 else 0.0
            if not (beyond(values[i], t.flop) and beyond(values[i], before)):
                continue  # not past the line, or no compute added
            how = self._in_window(self.computes[i], window)
            if how is not None:
                inside.append((i, how))
        if not inside:
            self._add("moratorium", t.id, "respected", f"threshold {t.id} reached; no compute "
                      f"past {_flop(t.flop)} FLOP is recorded {where}", [c.ref])
            return
        (a, how_a), (b, _) = inside[0], inside[-1]
        head, last = self.computes[a], self.computes[b]
        span = (f"compute #{head.ref.index} ({_flop(values[a])} FLOP, {how_a})" if a == b else
                f"{len(inside)} compute statements from #{head.ref.index} "
                f"({_flop(values[a])} FLOP, {how_a}) to #{last.ref.index} "
                f"({_flop(values[b])} FLOP)")
        refs = [head.ref] if a == b else [head.ref, last.ref]
        self._add("moratorium", t.id, "breached", f"the run trained past threshold {t.id} "
                  f"({t.regime} {_flop(t.flop)} FLOP) {where}: {span}", refs, when=c.when,
                  violation="moratorium-training")

    def _in_window(self, e: Recorded[ComputePredicate], window: Window | None) -> str | None:
        """Why statement ``e`` falls inside ``window`` (None: it does not, or not shown)."""
        at = e.predicate.at
        if window is None:
            return f"dated {_iso(at)}"
        if window.contains(at):
            return f"dated {_iso(at)}"
        earliest, latest = self.times.bounds(e.ref.index) if self.times else (None, None)
        assert window.end is not None
        if earliest is not None and latest is not None and window.start <= earliest \
                and latest < window.end:
            return (f"dated {_iso(at)} but logged between {_iso(earliest)} and {_iso(latest)}, "
                    "as witnesses show")
        return None

    def _add(self, kind: Any, subject: str, status: Status, message: str, refs: list[Ref], *,
             when: datetime | None = None, deadline: datetime | None = None,
             violation: str | None = None) -> None:
        self.out.append(PolicyFinding(policy=self.policy.id, run_id=self.run_id, kind=kind,
                                      subject=subject, status=status, message=message,
                                      refs=refs, when=when, deadline=deadline,
                                      violation=violation))


def _window(w: Window) -> str:
    return f"{_iso(w.start)} to {_iso(w.end) if w.end else 'open'}"


def _flop(x: float) -> str:
    return f"{x:.3g}"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
