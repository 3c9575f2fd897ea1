"""What ``scalegate runs`` and ``scalegate run status`` show: a run as the ledger records it.

:func:`summarize` gives one row per run; :func:`view` gives everything ``run status``
shows (compute against thresholds, evaluations against alert and trigger values,
decisions, pauses, approvals and resumes, safeguards, obligations, and what a paused
run's resumption still lacks, from the gate itself); :func:`render` draws it with rich.
Both are pydantic models, so ``--json`` prints exactly what the screen shows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, computed_field

from scalegate.units import sig2

if TYPE_CHECKING:
    from rich.console import Console

    from scalegate.ledger import Ledger, Obligation
    from scalegate.policy import Policy
    from scalegate.state import RunState

RECENT = 8  # decisions and evaluations shown on screen (all of them are in --json)


def _flop(value: float | None) -> str:
    return "-" if value is None else sig2(value)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def _time(t: datetime | None) -> str:
    return "-" if t is None else f"{t:%Y-%m-%d %H:%M} UTC"


class ObligationLine(BaseModel):
    """An open obligation (e.g. notify a regulator) with its deadline."""

    id: str
    recipient: str
    deadline: datetime | None
    overdue: bool
    message: str


class RunSummary(BaseModel):
    """One row of ``scalegate runs``."""

    run_id: str
    org: str
    model: str
    policy_id: str
    policy_version: str
    status: Literal["running", "paused", "resumed"]
    paused_since: int | None = None
    ceiling_flop: float | None = None
    steps: int
    effective_flop: float
    last_verdict: str | None = None
    last_evaluations: dict[str, float | None] = {}
    obligations: list[ObligationLine] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status_text(self) -> str:
        """``running`` / ``paused since entry N`` / ``resumed (ceiling X)``."""
        if self.status == "paused":
            return f"paused since entry {self.paused_since}"
        if self.status == "resumed":
            return f"resumed (ceiling {_flop(self.ceiling_flop)})" if self.ceiling_flop else (
                "resumed (no ceiling)")
        return "running"


def summary_of(state: RunState) -> RunSummary:
    """The ``runs`` row of a folded, registered run."""
    assert state.run is not None
    run = state.run.predicate
    pause, resumed = state.active_pause, state.last_resume
    last = state.latest_compute
    evals: dict[str, float | None] = {}
    for e in state.evals:
        evals[e.predicate.evaluation_id] = (
            e.predicate.value if e.predicate.status == "success" else None)
    return RunSummary(
        run_id=run.run_id, org=run.org, model=run.model, policy_id=run.policy.id,
        policy_version=run.policy.version,
        status="paused" if pause else "resumed" if resumed else "running",
        paused_since=pause.index if pause else None,
        ceiling_flop=resumed.predicate.ceiling_flop if resumed and not pause else None,
        steps=state.step, effective_flop=last.predicate.effective_flop if last else 0.0,
        last_verdict=state.decisions[-1].predicate.verdict if state.decisions else None,
        last_evaluations=evals,
    )


def summarize(led: Ledger, run_id: str, now: datetime | None = None) -> RunSummary:
    """The ``runs`` row of ``run_id``, with the obligations it has not met at ``now``."""
    from scalegate.governance import open_obligations
    from scalegate.ledger import now_utc
    from scalegate.runs import policy_of_run, require_run

    now = now or now_utc()
    state = require_run(led, run_id)
    owed = open_obligations(policy_of_run(led, state), state, now)
    return summary_of(state).model_copy(update={"obligations": _obligation_lines(owed, now)})


def _obligation_lines(owed: list[Obligation], now: datetime) -> list[ObligationLine]:
    return [ObligationLine(id=o.id, recipient=o.recipient, deadline=o.deadline,
                           overdue=o.deadline is not None and now > o.deadline,
                           message=o.message) for o in owed]


# --- run status --------------------------------------------------------------------------------


class ThresholdLine(BaseModel):
    """A compute threshold on a regime, and whether the run has reached (or plans) it."""

    id: str
    flop: float
    basis: str
    action: str
    recipient: str | None = None
    met: bool


class RegimeLine(BaseModel):
    """A regime's total so far and the thresholds on it."""

    regime: str
    total_flop: float
    thresholds: list[ThresholdLine]


class EvalLine(BaseModel):
    """One evaluation result against the alert and trigger values the policy sets for it."""

    index: int
    evaluation_id: str
    metric: str
    step: int
    effective_flop: float
    value: float | None
    stderr: float | None
    status: str
    lines: list[str]
    met: str


class DecisionLine(BaseModel):
    """One recorded decision."""

    index: int
    step: int
    effective_flop: float
    verdict: str
    rules: list[str]


class EventLine(BaseModel):
    """A pause, approval, resume or notification, in log order."""

    index: int
    kind: str
    text: str


class SafeguardLine(BaseModel):
    """A safeguard of the policy and the attestation it rests on, if any."""

    id: str
    attested_by: list[str]
    entry: int | None
    state: str
    ok: bool


class RunView(BaseModel):
    """Everything ``scalegate run status`` shows."""

    summary: RunSummary
    at: datetime
    policy_title: str
    policy_digest: str
    started_at: datetime
    planned_flop: float | None
    effective_regime: str
    multiplier: float
    regimes: list[RegimeLine]
    next_eval_at_flop: float | None
    ceiling_flop: float | None
    evaluations: list[EvalLine]
    decisions: list[DecisionLine]
    events: list[EventLine]
    safeguards: list[SafeguardLine]
    obligations: list[ObligationLine]
    verdict_now: str
    reasons_now: list[str]
    may_resume: bool | None
    missing: list[str]
    #: Why no signed checkpoint vouches for the ledger (then nothing here is verified).
    ledger_unverified: list[str] = []
    #: This run's entries past the latest checkpoint: recorded, but vouched for by nothing.
    unverified_entries: int = 0


def ledger_warnings(led: Ledger, run_id: str) -> tuple[list[str], int]:
    """Why nothing vouches for ``led`` (see :class:`~scalegate.ledger._coverage.Coverage`),
    and how many of ``run_id``'s entries lie past its latest signed checkpoint."""
    cov = led.coverage()
    if cov.tail is None:
        return cov.unverified(), 0
    with led.store.reader() as conn:
        tail = led.store.count_entries(conn, cov.covered, run_id=run_id)
    return cov.unverified(), tail


def _regimes(policy: Policy, state: RunState, totals: dict[str, float]) -> list[RegimeLine]:
    planned = state.planned_flop
    out = []
    for name in policy.compute.regimes:
        total = totals.get(name, 0.0)
        lines = [
            ThresholdLine(
                id=t.id, flop=t.flop, basis=t.basis, action=t.action, recipient=t.recipient,
                met=(planned or 0.0) >= t.flop if t.basis == "planned" else total >= t.flop,
            )
            for t in policy.compute.thresholds if t.regime == name
        ]
        out.append(RegimeLine(regime=name, total_flop=total, thresholds=lines))
    return out


def _evaluations(policy: Policy, state: RunState) -> list[EvalLine]:
    out = []
    for rec in state.evals:
        p = rec.predicate
        lines, met = [], "below"
        for cap in policy.capabilities:
            for level in cap.levels:
                for trig in level.evaluations:
                    if trig.evaluation != p.evaluation_id or trig.metric != p.metric:
                        continue
                    lines.append(f"{level.id}: {_num(trig.alert)} / {_num(trig.trigger)}")
                    if p.value is None or p.status != "success":
                        met = "failed"
                    elif trig.meets(p.value, "trigger"):
                        met = f"TRIGGER {level.id}"
                    elif trig.meets(p.value, "alert") and not met.startswith("TRIGGER"):
                        met = f"alert {level.id}"
        out.append(EvalLine(
            index=rec.index, evaluation_id=p.evaluation_id, metric=p.metric, step=p.step,
            effective_flop=p.effective_flop, value=p.value, stderr=p.stderr, status=p.status,
            lines=lines, met=met if lines else "not in policy"))
    return out


def _events(state: RunState) -> list[EventLine]:
    from scalegate.ledger import DecisionPredicate

    out = []
    for pause in state.pauses:
        p = pause.predicate
        d = state.find(p.decision)
        rules = ", ".join(r.rule for r in d.predicate.reasons) if d is not None and isinstance(
            d.predicate, DecisionPredicate) else "?"
        out.append(EventLine(index=pause.index, kind="pause", text=(
            f"paused at step {p.step} ({_flop(p.effective_flop)} effective FLOP), checkpoint "
            f"#{p.checkpoint.index}, by decision #{p.decision.index}: {rules}")))
    for a in state.approvals:
        ap = a.predicate
        held = "" if ap.role in a.roles else f" (NOT COUNTED: the key holds {', '.join(a.roles)})"
        cap = f", ceiling {_flop(ap.ceiling_flop)}" if ap.ceiling_flop is not None else ""
        out.append(EventLine(index=a.index, kind="approval", text=(
            f"{a.signer} approved pause #{ap.pause.index} as {ap.role}{held}{cap}: "
            f"{ap.rationale}")))
    for r in state.resumes:
        rp = r.predicate
        cap = _flop(rp.ceiling_flop) if rp.ceiling_flop is not None else "none"
        out.append(EventLine(index=r.index, kind="resume", text=(
            f"resumed pause #{rp.pause.index} from checkpoint #{rp.checkpoint.index} with "
            f"approvals {', '.join(f'#{x.index}' for x in rp.approvals)}; ceiling {cap}")))
    for n in state.notifications:
        np_ = n.predicate
        out.append(EventLine(index=n.index, kind="notification", text=(
            f"notified {np_.recipient} of {np_.obligation_id} at {_time(np_.sent_at)}")))
    return sorted(out, key=lambda e: e.index)


def _safeguards(policy: Policy, state: RunState, now: datetime) -> list[SafeguardLine]:
    out = []
    for sg in policy.safeguards:
        recs = [a for a in state.attestations if a.predicate.safeguard == sg.id]
        line = SafeguardLine(id=sg.id, attested_by=list(sg.attested_by), entry=None,
                             state="not attested", ok=False)
        if recs:
            a = recs[-1]
            p = a.predicate
            line.entry = a.index
            if not set(a.roles) & set(sg.attested_by):
                line.state = f"#{a.index} by {a.signer} NOT COUNTED (holds {', '.join(a.roles)})"
            elif p.valid_until is not None and now >= p.valid_until:
                line.state = f"#{a.index} by {a.signer} EXPIRED at {_time(p.valid_until)}"
            else:
                line.state = f"#{a.index} by {a.signer}, valid until {_time(p.valid_until)}"
                line.ok = True
        out.append(line)
    return out


def view(led: Ledger, run_id: str, now: datetime | None = None) -> RunView:
    """Everything ``run status`` shows, with the gate's decision and resumption at ``now``."""
    from scalegate.gate import decide, resumption
    from scalegate.ledger import now_utc
    from scalegate.remedies import missing_lines
    from scalegate.runs import policy_of_run, require_run

    now = now or now_utc()
    state = require_run(led, run_id)
    policy = policy_of_run(led, state)
    assert state.run is not None
    decision = decide(policy, state, now)
    unverified, tail = ledger_warnings(led, run_id)
    res = resumption(policy, state, now=now) if state.active_pause is not None else None
    return RunView(
        summary=summary_of(state), at=now, policy_title=policy.title,
        policy_digest=policy.digest(), started_at=state.run.predicate.started_at,
        planned_flop=state.planned_flop, effective_regime=policy.compute.effective.regime,
        multiplier=policy.compute.effective.multiplier,
        regimes=_regimes(policy, state, decision.totals),
        next_eval_at_flop=decision.next_eval_at_flop, ceiling_flop=decision.ceiling_flop,
        evaluations=_evaluations(policy, state),
        decisions=[DecisionLine(index=d.index, step=d.predicate.step,
                                effective_flop=d.predicate.effective_flop,
                                verdict=d.predicate.verdict,
                                rules=[r.rule for r in d.predicate.reasons])
                   for d in state.decisions],
        events=_events(state), safeguards=_safeguards(policy, state, now),
        obligations=_obligation_lines(decision.obligations, now),
        verdict_now=decision.verdict,
        reasons_now=[f"{r.rule}: {r.message}" for r in decision.reasons],
        may_resume=res.may_resume if res else None,
        missing=missing_lines(res, state.run_id or "") if res else [],
        ledger_unverified=unverified, unverified_entries=tail,
    )


# --- rendering -----------------------------------------------------------------------------------


def time_left(delta: timedelta) -> str:
    """A time left, to the two largest units: ``13d 23h``, ``5h 12min``, ``42min``."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {mins}min" if hours else f"{mins}min"


def _earlier(n: int) -> str:
    return f" ({n} earlier: see --json)" if n > 0 else ""


def _warn_unverified(v: RunView, console: Console) -> None:
    """Say first when what follows rests on entries no signed checkpoint covers."""
    from rich.markup import escape as e

    for reason in v.ledger_unverified:
        console.print(f"[bold yellow]ledger unverified:[/bold yellow] {e(reason)} This "
                      "status is what the database holds, not what a checkpoint vouches for "
                      "(`scalegate ledger verify`).", soft_wrap=True, highlight=False)
    if v.unverified_entries and not v.ledger_unverified:
        console.print(f"[yellow]unverified tail:[/yellow] {v.unverified_entries} of this "
                      "run's entries come after the latest signed checkpoint; nothing vouches "
                      "for them yet (`scalegate ledger checkpoint`, then `scalegate ledger "
                      "verify`).", soft_wrap=True, highlight=False)


def render(v: RunView, console: Console) -> None:
    """Draw a :class:`RunView` on one screen."""
    from rich import box
    from rich.markup import escape as e
    from rich.table import Table

    s = v.summary
    say = console.print
    style = {"paused": "bold red", "resumed": "yellow", "running": "green"}[s.status]
    _warn_unverified(v, console)
    say(f"[bold]{e(s.run_id)}[/bold]  org {e(s.org)}  model {e(s.model)}  policy "
        f"{e(s.policy_id)} {e(s.policy_version)} ({e(v.policy_title)}, digest "
        f"{v.policy_digest[:12]}…)  started {_time(v.started_at)}", soft_wrap=True)
    say(f"status: [{style}]{e(s.status_text)}[/{style}]  step {s.steps}  effective "
        f"{_flop(s.effective_flop)} FLOP ({e(v.effective_regime)} × {v.multiplier:g})  next "
        f"evaluation at {_flop(v.next_eval_at_flop)}  ceiling {_flop(v.ceiling_flop)}  planned "
        f"{_flop(v.planned_flop)}", soft_wrap=True, highlight=False)

    compute = Table(title="compute by regime", title_justify="left", box=box.SIMPLE)
    for col in ("regime", "total FLOP", "thresholds"):
        compute.add_column(col, overflow="fold")
    for r in v.regimes:
        # The threshold's kind (on planned or reached compute) and its state, told apart:
        # "reached" is a state here, never a label, and no mark reads as "done".
        marks = "; ".join(
            f"{t.id}: {t.action} when {t.basis} compute reaches {_flop(t.flop)} — "
            + ("REACHED" if t.met else "not yet")
            for t in r.thresholds) or "-"
        compute.add_row(e(r.regime), _flop(r.total_flop), e(marks))
    say(compute)

    evals = Table(title="evaluations" + _earlier(len(v.evaluations) - RECENT),
                  title_justify="left", box=box.SIMPLE)
    for col in ("entry", "evaluation", "step", "eff. FLOP", "value", "alert / trigger", "met"):
        evals.add_column(col, overflow="fold",
                         no_wrap=col in ("entry", "step", "eff. FLOP", "value"))
    for x in v.evaluations[-RECENT:]:
        value = "failed" if x.value is None else f"{x.value:.3g}" + (
            f"±{x.stderr:.2g}" if x.stderr is not None else "")
        met = f"[bold red]{e(x.met)}[/bold red]" if x.met.startswith("TRIGGER") else e(x.met)
        # One level: its id is in the "met" column; several: each line names its level.
        lines = x.lines if len(x.lines) > 1 else [ln.split(": ", 1)[-1] for ln in x.lines]
        evals.add_row(str(x.index), e(x.evaluation_id), str(x.step), _flop(x.effective_flop),
                      value, e("; ".join(lines)) or "-", met)
    say(evals)

    decisions = Table(title="decisions" + _earlier(len(v.decisions) - RECENT),
                      title_justify="left", box=box.SIMPLE)
    for col in ("entry", "step", "eff. FLOP", "verdict", "rules"):
        decisions.add_column(col, overflow="fold")
    for d in v.decisions[-RECENT:]:
        decisions.add_row(str(d.index), str(d.step), _flop(d.effective_flop), d.verdict,
                          e(", ".join(d.rules)) or "-")
    say(decisions)

    say("[bold]pauses, approvals, resumes[/bold]" + ("" if v.events else ": none"))
    for ev in v.events:
        say(f"  #{ev.index} {ev.kind}: {e(ev.text)}", soft_wrap=True, highlight=False)
    say("[bold]safeguards[/bold]" + ("" if v.safeguards else ": none in the policy"))
    for g in v.safeguards:
        mark = "[green]✓[/green]" if g.ok else "[red]✗[/red]"
        say(f"  {mark} {e(g.id)} (attested by {e(', '.join(g.attested_by))}): {e(g.state)}",
            soft_wrap=True, highlight=False)
    say("[bold]obligations[/bold]" + ("" if v.obligations else ": none open"))
    for o in v.obligations:
        due = "no deadline" if o.deadline is None else f"by {_time(o.deadline)}"
        if o.deadline is not None and not o.overdue:
            due += f" ({time_left(o.deadline - v.at)} left)"
        flag = " [bold red]OVERDUE[/bold red]" if o.overdue else ""
        what = o.message.split("; OVERDUE since")[0]  # the flag already says so
        say(f"  {e(o.id)}: notify {e(o.recipient)} {due}{flag} — {e(what)}",
            soft_wrap=True, highlight=False)

    if v.may_resume is None:
        say(f"gate now: [bold]{v.verdict_now}[/bold]"
            + "".join(f"\n  - {e(r)}" for r in v.reasons_now), soft_wrap=True, highlight=False)
    elif v.may_resume:
        say(f"[green]may resume:[/green] run `scalegate resume {e(s.run_id)}`", soft_wrap=True)
    else:
        say("[bold red]the resumption still lacks:[/bold red]"
            + "".join(f"\n  - {e(m)}" for m in v.missing), soft_wrap=True, highlight=False)
