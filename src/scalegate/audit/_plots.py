"""The audit report's plots for one run (Plotly figures, built from the replayed state):

- compute vs the policy's thresholds, on a log scale, with the plan, the resumption
  ceilings, pauses and resumptions;
- evaluation scores vs effective compute, with each capability level's alert and
  trigger lines;
- a timeline of decisions (by verdict), evaluations, attestations, pauses (shaded until
  their resumption), approvals, resumptions, notifications and violations.

Ledger text (run ids, messages) is HTML-escaped before it reaches a figure: Plotly
renders a subset of HTML in labels, and the ledger is not trusted.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scalegate.ledger.statements import Predicate

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from scalegate.audit.replay import RunReplay
    from scalegate.policy import Policy
    from scalegate.state import RunState

MAX_POINTS = 2000  # compute points drawn per series; longer runs are thinned evenly
VERDICT_COLOURS = {"continue": "#2e7d32", "alert": "#ef6c00", "evaluate": "#1565c0",
                   "pause": "#c62828"}
TIMELINE_ROWS = ["violations", "notifications", "resumptions", "approvals", "pauses",
                 "attestations", "evaluations", "decisions"]


def esc(text: object) -> str:
    """Ledger text made safe for a Plotly label."""
    return html.escape(str(text), quote=True)


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


def _layout(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    fig.update_layout(**{"title": title, "template": "plotly_white", "height": 460,
                         "margin": {"l": 70, "r": 30, "t": 60, "b": 50},
                         "legend": {"orientation": "h", "y": -0.18}, **kw})
    return fig


def compute_figure(policy: Policy, state: RunState) -> go.Figure:
    """Compute (effective and by regime) over time against the thresholds, log scale."""
    import plotly.graph_objects as go

    fig = go.Figure()
    recs = state.compute
    keep = _thin(len(recs))
    xs = [recs[i].predicate.at for i in keep]
    eff = [policy.compute.effective_flop(recs[i].predicate.flop_by_phase) for i in keep]
    mode = "lines+markers" if len(keep) <= 200 else "lines"
    fig.add_trace(go.Scatter(x=xs, y=[v if v > 0 else None for v in eff], mode=mode,
                             name="effective compute", line={"width": 3}))
    eff_regime, mult = policy.compute.effective.regime, policy.compute.effective.multiplier
    for name in policy.compute.regimes:
        if name == eff_regime and mult == 1:
            continue
        ys = [policy.compute.totals(recs[i].predicate.flop_by_phase).get(name, 0.0)
              for i in keep]
        fig.add_trace(go.Scatter(x=xs, y=[v if v > 0 else None for v in ys], mode="lines",
                                 name=f"{esc(name)} (raw)", line={"dash": "dot"}))
    for t in policy.compute.thresholds:
        colour = {"pause": "#c62828", "evaluate": "#1565c0"}.get(t.action, "#6a1b9a")
        fig.add_hline(y=t.flop, line={"dash": "dash", "color": colour, "width": 1},
                      annotation_text=esc(f"{t.id}: {t.action} at {t.flop:.2g} ({t.regime}, "
                                          f"{t.basis})"), annotation_position="top left")
    if state.planned_flop:
        fig.add_hline(y=state.planned_flop, line={"dash": "dot", "color": "#555"},
                      annotation_text=f"planned {state.planned_flop:.2g}",
                      annotation_position="bottom right")
    end = recs[-1].predicate.at if recs else None
    for r in state.resumes:
        ceiling = r.predicate.ceiling_flop
        later = [p.predicate.at for p in state.pauses if p.index > r.index]
        if ceiling and end is not None:
            stop = min(later) if later else max(end, r.predicate.at)
            fig.add_trace(go.Scatter(x=[r.predicate.at, stop], y=[ceiling, ceiling],
                                     mode="lines", name=f"ceiling of resume #{r.index}",
                                     line={"color": "#c62828", "dash": "longdash"}))
    if state.pauses:
        fig.add_trace(go.Scatter(
            x=[p.predicate.at for p in state.pauses],
            y=[max(p.predicate.effective_flop, 1.0) for p in state.pauses], mode="markers",
            name="pause", marker={"symbol": "x", "size": 13, "color": "#c62828"},
            text=[f"pause #{p.index}: {esc(p.predicate.public_statement)[:300]}"
                  for p in state.pauses], hoverinfo="text+x+y"))
    at_pause = {p.index: p.predicate.effective_flop for p in state.pauses}
    if state.resumes:
        fig.add_trace(go.Scatter(
            x=[r.predicate.at for r in state.resumes],
            y=[max(at_pause.get(r.predicate.pause.index, 1.0), 1.0) for r in state.resumes],
            mode="markers", name="resumption",
            marker={"symbol": "triangle-up", "size": 12, "color": "#2e7d32"}))
    return _layout(fig, "compute vs thresholds", yaxis={"type": "log", "title": "FLOP"},
                   xaxis={"title": "time (UTC)"})


def evals_figure(policy: Policy, state: RunState) -> go.Figure:
    """Evaluation scores vs effective compute, with the levels' alert and trigger lines."""
    import plotly.graph_objects as go

    fig = go.Figure()
    series: dict[tuple[str, str], list[Any]] = {}
    for rec in state.evals:
        p = rec.predicate
        if p.status == "success" and p.value is not None:
            series.setdefault((p.evaluation_id, p.metric), []).append(rec)
    for (eid, metric), recs in series.items():
        fig.add_trace(go.Scatter(
            x=[max(r.predicate.effective_flop, 1.0) for r in recs],
            y=[r.predicate.value for r in recs], mode="lines+markers",
            name=esc(f"{eid} ({metric})"),
            error_y={"type": "data", "array": [r.predicate.stderr or 0.0 for r in recs],
                     "visible": True},
            text=[f"entry #{r.index}, step {r.predicate.step}" for r in recs],
            hoverinfo="text+x+y"))
    for cap in policy.capabilities:
        for level in cap.levels:
            for trig in level.evaluations:
                for which, colour in (("alert", "#ef6c00"), ("trigger", "#c62828")):
                    value = getattr(trig, which)
                    if value is None:
                        continue
                    fig.add_hline(y=value, line={"dash": "dash", "color": colour, "width": 1},
                                  annotation_text=esc(f"{level.id} {which} {value:g} "
                                                      f"({trig.evaluation} {trig.metric})"),
                                  annotation_position="top left")
    return _layout(fig, "evaluation scores vs compute",
                   xaxis={"type": "log", "title": "effective FLOP of the evaluated checkpoint"},
                   yaxis={"title": "score"})


def timeline_figure(state: RunState, replay: RunReplay | None) -> go.Figure:
    """Everything that happened to the run, in time; pauses shaded until resumed."""
    import plotly.graph_objects as go

    fig = go.Figure()
    times: dict[int, datetime] = {}

    def row(name: str, recs: list[Any], label: Any, colour: Any = None,
            symbol: str = "circle") -> None:
        if not recs:
            return
        xs = [when(r.predicate) for r in recs]
        for r, x in zip(recs, xs, strict=True):
            if x is not None:
                times[r.index] = x
        fig.add_trace(go.Scatter(
            x=xs, y=[name] * len(recs), mode="markers", name=name, showlegend=False,
            marker={"size": 11, "symbol": symbol, "color": colour or "#455a64"},
            text=[f"#{r.index}: {label(r)}" for r in recs], hoverinfo="text+x"))

    matches = {d.ref.index: d for d in (replay.decisions if replay else [])}
    row("decisions", state.decisions, lambda r: esc(
        f"{r.predicate.verdict} {', '.join(x.rule for x in r.predicate.reasons)}"
        + (" — replay differs" if r.index in matches and not matches[r.index].matches
           else "")),
        [VERDICT_COLOURS.get(r.predicate.verdict, "#000") for r in state.decisions])
    row("evaluations", state.evals, lambda r: esc(
        f"{r.predicate.evaluation_id} {r.predicate.metric} = {r.predicate.value}"))
    row("attestations", state.attestations, lambda r: esc(
        f"{r.predicate.safeguard} by {r.signer}, until {r.predicate.valid_until}"),
        "#6a1b9a", "diamond")
    row("pauses", state.pauses, lambda r: esc(r.predicate.public_statement[:300]),
        "#c62828", "x")
    row("approvals", state.approvals, lambda r: esc(
        f"{r.predicate.role} ({r.signer}) of pause #{r.predicate.pause.index}: "
        f"{r.predicate.rationale}"), "#00838f", "star")
    row("resumptions", state.resumes, lambda r: esc(
        f"resumes pause #{r.predicate.pause.index}, ceiling {r.predicate.ceiling_flop}"),
        "#2e7d32", "triangle-up")
    row("notifications", state.notifications, lambda r: esc(
        f"{r.predicate.obligation_id} to {r.predicate.recipient}"), "#5d4037", "square")
    violations = replay.violations if replay else []
    wanted = {v.refs[-1].index for v in violations if v.refs} - set(times)
    if wanted:  # violations mostly point at compute statements: find their times
        for recs in (state.compute, state.checkpoints):
            for r in recs:
                if r.index in wanted:
                    times[r.index] = r.predicate.at
    located = [(v, times.get(v.refs[-1].index) if v.refs else None) for v in violations]
    if any(t for _, t in located):
        fig.add_trace(go.Scatter(
            x=[t for _, t in located if t], y=["violations"] * sum(1 for _, t in located if t),
            mode="markers", name="violations", showlegend=False,
            marker={"size": 13, "symbol": "x-thin-open", "color": "#b71c1c",
                    "line": {"width": 3}},
            text=[esc(f"{v.kind}: {v.message}")[:400] for v, t in located if t],
            hoverinfo="text+x"))
    last = max(times.values(), default=None)
    for p in state.pauses:
        r = state.resume_of(p.ref)
        end = r.predicate.at if r else last
        if end is not None and end > p.predicate.at:
            fig.add_vrect(x0=p.predicate.at, x1=end, fillcolor="#c62828", opacity=0.08,
                          line_width=0)
    return _layout(fig, "timeline: decisions, pauses, approvals, resumptions",
                   yaxis={"type": "category", "categoryorder": "array",
                          "categoryarray": TIMELINE_ROWS},
                   xaxis={"title": "time (UTC)"}, height=420)


def run_figures(policy: Policy, replay: RunReplay) -> list[tuple[str, go.Figure]]:
    """The three figures of one run, with their short names."""
    state = replay.state
    assert state is not None
    return [("compute", compute_figure(policy, state)),
            ("evaluations", evals_figure(policy, state)),
            ("timeline", timeline_figure(state, replay))]
