"""The audit report's plots for one run (SVG charts, built from the replayed state):

- compute vs the policy's thresholds, on a log scale, with the plan, the resumption
  ceilings, pauses and resumptions;
- evaluation scores vs effective compute, with each capability level's alert and
  trigger lines;
- a timeline of decisions (by verdict), evaluations, attestations, pauses (shaded until
  their resumption), approvals, resumptions, notifications and violations.

Ledger text reaches a chart only through :mod:`scalegate.audit._svg`, which escapes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from scalegate.audit._svg import Band, Chart, Line, Series
from scalegate.ledger import Predicate

if TYPE_CHECKING:
    from scalegate.audit.replay import RunReplay
    from scalegate.policy import Policy
    from scalegate.state import RunState

MAX_POINTS = 2000  # compute points drawn per series; longer runs are thinned evenly
VERDICT_COLOURS = {"continue": "#2e7d32", "alert": "#ef6c00", "evaluate": "#1565c0",
                   "pause": "#c62828"}
TIMELINE_ROWS = ["violations", "notifications", "resumptions", "approvals", "pauses",
                 "attestations", "evaluations", "decisions"]
_REGIME_COLOURS = ["#00838f", "#6d4c41", "#7b1fa2", "#455a64", "#9e9d24"]


def when(p: Predicate) -> datetime | None:
    """A statement's own time (``at``, ``sent_at``, ``started_at`` or ``valid_from``)."""
    for name in ("at", "sent_at", "started_at", "valid_from"):
        value = getattr(p, name, None)
        if isinstance(value, datetime):
            return value
    return None


def _thin(n: int) -> list[int]:
    if n <= MAX_POINTS:
        return list(range(n))
    step = (n - 1) / (MAX_POINTS - 1)
    return sorted({round(i * step) for i in range(MAX_POINTS)} | {n - 1})


def compute_figure(policy: Policy, state: RunState) -> Chart:
    """Compute (effective and by regime) over time against the thresholds, log scale."""
    chart = Chart("compute vs thresholds", "time", "log", "time (UTC)", "FLOP")
    recs = state.compute
    keep = _thin(len(recs))
    xs = [recs[i].predicate.at for i in keep]
    eff = [policy.compute.effective_flop(recs[i].predicate.flop_by_phase) for i in keep]
    chart.series.append(Series("effective compute", xs, [v if v > 0 else None for v in eff],
                               markers=len(keep) <= 200,
                               labels=[f"entry #{recs[i].index}, step {recs[i].predicate.step}"
                                       for i in keep]))
    eff_regime, mult = policy.compute.effective.regime, policy.compute.effective.multiplier
    for k, name in enumerate(policy.compute.regimes):
        if name == eff_regime and mult == 1:
            continue
        ys = [policy.compute.totals(recs[i].predicate.flop_by_phase).get(name, 0.0)
              for i in keep]
        chart.series.append(Series(f"{name} (raw)", xs, [v if v > 0 else None for v in ys],
                                   colour=_REGIME_COLOURS[k % len(_REGIME_COLOURS)],
                                   markers=False, dash=True))
    for t in policy.compute.thresholds:
        colour = {"pause": "#c62828", "evaluate": "#1565c0"}.get(t.action, "#6a1b9a")
        chart.lines.append(Line(t.flop, f"{t.id}: {t.action} at {t.flop:.2g} ({t.regime}, "
                                        f"{t.basis})", colour))
    if state.planned_flop:
        chart.lines.append(Line(state.planned_flop, f"planned {state.planned_flop:.2g}", "#555"))
    end = recs[-1].predicate.at if recs else None
    for r in state.resumes:
        ceiling = r.predicate.ceiling_flop
        later = [p.predicate.at for p in state.pauses if p.index > r.index]
        if ceiling and end is not None:
            stop = min(later) if later else max(end, r.predicate.at)
            chart.series.append(Series(f"ceiling of resume #{r.index}", [r.predicate.at, stop],
                                       [ceiling, ceiling], colour="#c62828", markers=False,
                                       dash=True))
    if state.pauses:
        chart.series.append(Series(
            "pause", [p.predicate.at for p in state.pauses],
            [max(p.predicate.effective_flop, 1.0) for p in state.pauses], colour="#c62828",
            lines=False, symbol="x",
            labels=[f"pause #{p.index}: {p.predicate.public_statement[:300]}"
                    for p in state.pauses]))
    at_pause = {p.index: p.predicate.effective_flop for p in state.pauses}
    if state.resumes:
        chart.series.append(Series(
            "resumption", [r.predicate.at for r in state.resumes],
            [max(at_pause.get(r.predicate.pause.index, 1.0), 1.0) for r in state.resumes],
            colour="#2e7d32", lines=False, symbol="triangle",
            labels=[f"resumption #{r.index}" for r in state.resumes]))
    return chart


def evals_figure(policy: Policy, state: RunState) -> Chart:
    """Evaluation scores vs effective compute, with the levels' alert and trigger lines."""
    chart = Chart("evaluation scores vs compute", "log", "linear",
                  "effective FLOP of the evaluated checkpoint", "score")
    series: dict[tuple[str, str], list[Any]] = {}
    for rec in state.evals:
        p = rec.predicate
        if p.status == "success" and p.value is not None:
            series.setdefault((p.evaluation_id, p.metric), []).append(rec)
    for k, ((eid, metric), recs) in enumerate(series.items()):
        chart.series.append(Series(
            f"{eid} ({metric})", [max(r.predicate.effective_flop, 1.0) for r in recs],
            [r.predicate.value for r in recs],
            colour=["#1565c0", *_REGIME_COLOURS][k % (1 + len(_REGIME_COLOURS))],
            errors=[r.predicate.stderr or 0.0 for r in recs],
            labels=[f"entry #{r.index}, step {r.predicate.step}: {r.predicate.value:g}"
                    for r in recs]))
    for cap in policy.capabilities:
        for level in cap.levels:
            for trig in level.evaluations:
                for which, colour in (("alert", "#ef6c00"), ("trigger", "#c62828")):
                    value = getattr(trig, which)
                    if value is not None:
                        chart.lines.append(Line(value, f"{level.id} {which} {value:g} "
                                                       f"({trig.evaluation} {trig.metric})",
                                                colour))
    return chart


def timeline_figure(state: RunState, replay: RunReplay | None) -> Chart:
    """Everything that happened to the run, in time; pauses shaded until resumed."""
    chart = Chart("timeline: decisions, pauses, approvals, resumptions", "time", "category",
                  "time (UTC)", "", categories=list(reversed(TIMELINE_ROWS)))
    times: dict[int, datetime] = {}

    def row(name: str, recs: list[Any], label: Any, colour: str = "#455a64",
            symbol: Any = "circle") -> None:
        recs = [r for r in recs if when(r.predicate) is not None]
        if not recs:
            return
        xs = [when(r.predicate) for r in recs]
        for r, x in zip(recs, xs, strict=True):
            times[r.index] = x  # type: ignore[assignment]
        chart.series.append(Series(name, xs, [name] * len(recs),  # type: ignore[arg-type]
                                   colour=colour, lines=False, symbol=symbol, legend=False,
                                   labels=[f"#{r.index}: {label(r)}" for r in recs]))

    matches = {d.ref.index: d for d in (replay.decisions if replay else [])}
    for verdict, colour in VERDICT_COLOURS.items():
        row("decisions", [d for d in state.decisions if d.predicate.verdict == verdict],
            lambda r: f"{r.predicate.verdict} "
            f"{', '.join(x.rule for x in r.predicate.reasons)}"
            + (" — replay differs" if r.index in matches and not matches[r.index].matches
               else ""), colour)
    row("evaluations", state.evals,
        lambda r: f"{r.predicate.evaluation_id} {r.predicate.metric} = {r.predicate.value}")
    row("attestations", state.attestations,
        lambda r: f"{r.predicate.safeguard} by {r.signer}, until {r.predicate.valid_until}",
        "#6a1b9a", "diamond")
    row("pauses", state.pauses, lambda r: r.predicate.public_statement[:300], "#c62828", "x")
    row("approvals", state.approvals,
        lambda r: f"{r.predicate.role} ({r.signer}) of pause #{r.predicate.pause.index}: "
        f"{r.predicate.rationale}", "#00838f", "diamond")
    row("resumptions", state.resumes,
        lambda r: f"resumes pause #{r.predicate.pause.index}, ceiling "
        f"{r.predicate.ceiling_flop}", "#2e7d32", "triangle")
    row("notifications", state.notifications,
        lambda r: f"{r.predicate.obligation_id} to {r.predicate.recipient}", "#5d4037", "square")
    violations = replay.violations if replay else []
    wanted = {v.refs[-1].index for v in violations if v.refs} - set(times)
    if wanted:  # violations mostly point at compute statements: find their times
        for recs in (state.compute, state.checkpoints):
            for r in recs:
                if r.index in wanted:
                    times[r.index] = r.predicate.at
    located = [(v, t) for v in violations if v.refs
               for t in [times.get(v.refs[-1].index)] if t is not None]
    if located:
        chart.series.append(Series(
            "violations", [t for _, t in located], ["violations"] * len(located),
            colour="#b71c1c", lines=False, symbol="x", legend=False,
            labels=[f"{v.kind}: {v.message}"[:400] for v, _ in located]))
    last = max(times.values(), default=None)
    for p in state.pauses:
        lifted = state.resume_of(p.ref)
        end = lifted.predicate.at if lifted else last
        if end is not None and end > p.predicate.at:
            chart.bands.append(Band(p.predicate.at, end))
    return chart


def run_figures(policy: Policy, replay: RunReplay) -> list[tuple[str, Chart]]:
    """The three charts of one run, with their short names."""
    state = replay.state
    assert state is not None
    return [("compute", compute_figure(policy, state)),
            ("evaluations", evals_figure(policy, state)),
            ("timeline", timeline_figure(state, replay))]
