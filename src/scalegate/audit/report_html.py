"""The audit as one self-contained HTML page: checks, violations, each other policy the
runs were held to (its findings in a section of their own), and per run its facts,
plots (compute vs thresholds, evaluation scores vs compute, a timeline), replayed
decisions, pauses, approvals and resumptions.

The page works offline and runs no script: every plot is inline SVG (with a tooltip per
point), and its numbers are also a JSON block (``<script type="application/json"
class="scalegate-figure">``). The whole audit is embedded too, as the JSON ``scalegate
verify --json`` prints (``<script id="scalegate-audit" type="application/json">``), so the
page is also a machine-readable record. Nothing from the ledger reaches the page
unescaped, and no local path does: the ledger is named by its file name.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalegate.audit._plots import run_figures, when
from scalegate.audit._svg import Chart
from scalegate.errors import VerificationError
from scalegate.units import counted

if TYPE_CHECKING:
    from scalegate.audit.runcheck import LedgerAudit, RunAudit
    from scalegate.state import Recorded

__all__ = ["render_html", "write_html"]

MAX_ROWS = 500  # rows per table; the rest are counted (all of it is in the embedded JSON)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#212121}
header{background:#263238;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:22px}
main{padding:8px 32px 40px;max-width:1400px}h2{margin-top:36px;border-bottom:2px solid #eceff1}
table{border-collapse:collapse;margin:8px 0 16px;width:100%}td,th{padding:4px 8px;
text-align:left;vertical-align:top;border-bottom:1px solid #eceff1}th{background:#fafafa}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:600}.warn{color:#ef6c00;font-weight:600}
.badge{display:inline-block;padding:3px 10px;border-radius:12px;font-weight:700}
.badge.ok{background:#e8f5e9}.badge.bad{background:#ffebee}.badge.warn{background:#fff3e0}
.plot{margin:12px 0 24px}.plot svg{width:100%;height:auto;max-width:1100px}
code{font-size:12px}.more{color:#757575}
.facts td:first-child{width:220px;color:#546e7a}
"""

def _js_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>``, no HTML comment opener)."""
    text = data if isinstance(data, str) else json.dumps(data, default=str)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _iso(t: datetime | None) -> str:
    if t is None:
        return "-"
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _table(head: list[str], rows: list[list[str]], *, raw: bool = False) -> str:
    """A table; cells are escaped unless ``raw`` (callers then escape themselves)."""
    shown = rows[:MAX_ROWS]
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _h(c)}</td>" for c in r) + "</tr>"
                   for r in shown)
    more = (f'<p class="more">… and {len(rows) - MAX_ROWS} more (see the embedded JSON)</p>'
            if len(rows) > MAX_ROWS else "")
    return ("<table><tr>" + "".join(f"<th>{_h(h)}</th>" for h in head) + "</tr>" + body
            + "</table>" + more)


_STATUS_CLASS = {"missed": "bad", "breached": "bad", "operator-word": "warn", "due": "warn",
                 "owed": "warn", "met": "ok", "sent": "ok", "respected": "ok"}


def _refs(refs: list[Any]) -> str:
    return ", ".join(f"#{r.index}" for r in refs)


class _Page:
    def __init__(self, audit: LedgerAudit) -> None:
        self.audit = audit
        self.parts: list[str] = []
        self.figures: list[tuple[str, str]] = []  # (div id, figure JSON)

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, name: str, chart: Chart) -> None:
        target = f"fig-{len(self.figures) + 1}-{name}"
        self.figures.append((target, json.dumps(chart.data(), default=str)))
        self.add(f'<figure class="plot" id="{target}">{chart.svg()}</figure>')

    # --- sections ----------------------------------------------------------------------------

    def summary(self) -> None:
        rep = self.audit.report
        self.add("<h2>Checks</h2>")
        self.add(_table(["", "check", "detail"], [
            ['<span class="ok">✓</span>' if c.ok else '<span class="bad">✗</span>', _h(c.name),
             _h(c.detail)] for c in rep.checks], raw=True))
        self.add(f"<h2>Violations ({rep.violations_total})</h2>")
        if not rep.violations:
            self.add('<p class="ok">None.</p>')
        else:
            counts = ", ".join(f"{n} {_h(k)}" for k, n in sorted(rep.violation_counts.items()))
            self.add(f"<p>{counts}</p>")
            self.add(_table(["kind", "run", "statements", "what"], [
                [v.kind, v.run_id or "-", _refs(v.refs), v.message] for v in rep.violations]))
        self.times()

    def times(self) -> None:
        """When entries were logged, as the witnesses bound it; what rests on the operator."""
        rep = self.audit.report
        self.add("<h2>Time from the witnesses</h2>")
        if not rep.witnessed_times and not rep.timestamps:
            self.add("<p>No witnessed checkpoint: every time in this log is the lab's own "
                     "claim.</p>")
        elif not rep.witnessed_times:
            self.add("<p>No witnessed checkpoint.</p>")
        else:
            self.add("<p>Entries below each size existed by the first time; entries from it "
                     "on were not yet logged at the second (as the witnesses were shown the "
                     "log).</p>")
            self.add(_table(["size", "existed by", "not yet logged at"], [
                [str(w.size), _iso(w.existed_by), _iso(w.not_before)]
                for w in rep.witnessed_times]))
        if rep.timestamps:
            self.add(f"<h3>Time-stamps from trusted authorities ({len(rep.timestamps)})</h3>")
            self.add("<p>An RFC 3161 token over a checkpoint shows that the entries below its "
                     "size existed by the token's time (give or take its accuracy). It says "
                     "nothing of later entries: an authority proves existence, not "
                     "absence.</p>")
            self.add(_table(["size", "authority", "existed by", "token"], [
                [str(t.size), t.authority, _iso(t.existed_by), f"serial {t.serial} from {t.tsa}"]
                for t in rep.timestamps]))
        if rep.operator_word:
            self.add(f"<h3>Met on the log operator's word ({len(rep.operator_word)})</h3>")
            self.add(_table(["run", "statements", "what"], [
                [v.run_id or "-", _refs(v.refs), v.message] for v in rep.operator_word]))

    def held_to(self) -> None:
        """Each other policy the runs were held to (``verify --policy``): its own section."""
        for held in self.audit.held_to:
            bad = len(held.violations)
            mark = (f'<span class="bad">✗ {counted(bad, "violations")}</span>' if bad
                    else '<span class="ok">✓ nothing violated</span>')
            self.add(f'<section class="held-to"><h2>Held to {_h(held.label)} '
                     f"({_h(held.kind)}) {mark}</h2>")
            self.add(f"<p>{_h(held.title)} (digest <code>{_h(held.digest[:16])}…</code>). "
                     "The runs are held to this policy whatever policy they registered "
                     f"under: {_h(held.summary())}.</p>")
            if held.not_judged:
                self.add(f"<p class=\"more\">Not judged: {_h(', '.join(held.not_judged))} "
                         "(they rest on the lab's own evaluations and roles).</p>")
            self.add(_table(["run", "what", "status", "statements", "when", "deadline",
                             "finding"], [
                [_h(f.run_id), _h(f"{f.kind} {f.subject}"),
                 f'<span class="{_STATUS_CLASS.get(f.status, "")}">{_h(f.status)}</span>',
                 _h(_refs(f.refs)), _h(_iso(f.when)), _h(_iso(f.deadline)), _h(f.message)]
                for f in held.findings], raw=True) if held.findings else "<p>No run.</p>")
            self.add("</section>")

    def run(self, run: RunAudit) -> None:
        rid = _h(run.run_id)
        self.add(f'<section class="run"><h2 id="run-{rid}">Run {rid}</h2>')
        rep, policy = run.replay, run.policy
        if rep is None or policy is None or rep.state is None:
            self.add(f'<p class="bad">Not replayed: {_h(run.problem or "unknown")}.</p>'
                     "</section>")
            return
        state = rep.state
        final = rep.final
        status = (f'<span class="bad">paused</span> (entry #{state.active_pause.index})'
                  if state.active_pause else "running")
        facts = [
            ("organisation / model", f"{state.org} / {state.run.predicate.model}"
             if state.run else "-"),
            ("policy", f"{policy.id} {policy.version} (digest {policy.digest()[:16]}…), from "
             "the log"),
            ("registered", f"entry #{run.run_ref.index if run.run_ref else '?'} at "
             f"{_iso(state.started_at)}"),
            ("compute", f"step {state.step}, {final.effective_flop:.3g} effective FLOP"
             if final else "-"),
            ("planned", f"{state.planned_flop:.3g} FLOP" if state.planned_flop else "-"),
            ("gate now", f"{final.verdict} ({', '.join(final.rules) or 'no rule'})"
             if final else "-"),
            ("replay", f"{counted(len(rep.decisions), 'decisions')} replayed, "
             f"{len(rep.mismatches)} differ; "
             f"{counted(rep.consults, 'further gate consultations')}"),
            ("violations", str(len(rep.violations))),
        ]
        self.add('<table class="facts">' + "".join(
            f"<tr><td>{_h(k)}</td><td>{_h(v)}</td></tr>"
            for k, v in facts) + f"<tr><td>status</td><td>{status}</td></tr></table>")
        for name, fig in run_figures(policy, rep):
            self.figure(name, fig)
        if rep.violations:
            self.add("<h3>Violations</h3>")
            self.add(_table(["kind", "statements", "what"], [
                [v.kind, _refs(v.refs), v.message] for v in rep.violations]))
        self.add("<h3>Decisions, recorded and replayed</h3>")
        self.add(_table(["entry", "time", "compute", "recorded", "replayed", ""], [
            [f"#{d.ref.index}", _iso(d.at), f"{d.effective_flop or 0:.3g}",
             f"{d.recorded} {' '.join(d.recorded_rules)}",
             f"{d.replayed} {' '.join(d.replayed_rules)}", "✓" if d.matches else "✗ differs"]
            for d in rep.decisions]))
        self.add("<h3>Pauses, approvals, resumptions</h3>")
        rows = []
        records: list[Recorded[Any]] = [*state.pauses, *state.approvals, *state.resumes]
        for rec in sorted(records, key=lambda r: r.index):
            p = rec.predicate
            kind = type(p).KIND
            if kind == "pause":
                what = f"step {p.step}, {p.effective_flop:.3g} FLOP: {p.public_statement}"
            elif kind == "approval":
                what = (f"{p.role} ({rec.signer}) approves pause #{p.pause.index}"
                        + (f" up to {p.ceiling_flop:.3g} FLOP" if p.ceiling_flop else "")
                        + f": {p.rationale}")
            else:
                what = (f"lifts pause #{p.pause.index} citing approvals "
                        f"{_refs(p.approvals)}, from checkpoint #{p.checkpoint.index}"
                        + (f", ceiling {p.ceiling_flop:.3g} FLOP" if p.ceiling_flop else ""))
            rows.append([f"#{rec.index}", kind, _iso(when(p)), what])
        self.add(_table(["entry", "kind", "time", "what"], rows) if rows else "<p>None.</p>")
        self.standing(run)
        self.add("</section>")

    def standing(self, run: RunAudit) -> None:
        """Safeguard attestations, obligations still open, and what a paused run lacks."""
        from scalegate.gate import resumption

        rep, policy = run.replay, run.policy
        assert rep is not None and rep.state is not None and policy is not None
        state = rep.state
        self.add("<h3>Safeguard attestations</h3>")
        self.add(_table(["entry", "safeguard", "by", "scope", "valid from", "valid until"], [
            [f"#{a.index}", a.predicate.safeguard, f"{a.signer} ({', '.join(a.roles)})",
             a.predicate.scope, _iso(a.predicate.valid_from), _iso(a.predicate.valid_until)]
            for a in state.attestations]) if state.attestations else "<p>None.</p>")
        open_ = rep.final.obligations if rep.final else []
        self.add(f"<h3>Obligations open at the audit time ({len(open_)})</h3>")
        self.add(_table(["obligation", "recipient", "deadline", "what"], [
            [o.id, o.recipient, _iso(o.deadline), o.message] for o in open_])
            if open_ else "<p>None.</p>")
        if state.active_pause is not None:
            lacks = resumption(policy, state, now=rep.now).missing_messages()
            self.add(f"<h3>What the resumption of pause #{state.active_pause.index} still "
                     "lacks</h3>")
            self.add("<ul>" + "".join(f"<li>{_h(m)}</li>" for m in lacks) + "</ul>" if lacks
                     else '<p class="ok">Nothing: the gate allows it to resume.</p>')

    # --- the page ------------------------------------------------------------------------------

    def render(self, title: str, run_ids: list[str] | None) -> str:
        rep = self.audit.report
        if rep.violations_total:
            found = counted(rep.violations_total, "violations")
            badge = f'<span class="badge bad">✗ {found}</span>'
        elif rep.could_not_verify:
            badge = '<span class="badge warn">? could not verify</span>'
        else:
            badge = '<span class="badge ok">✓ nothing violated</span>'
        self.summary()
        self.held_to()
        runs = [r for r in self.audit.runs if run_ids is None or r.run_id in run_ids]
        for run in runs:
            self.run(run)
        data = self.audit.to_json_data()
        data["ledger"] = _ledger_name(rep.ledger)  # the auditor's own paths stay private
        if run_ids is not None:
            data["runs"] = [r for r in data["runs"] if r["run_id"] in run_ids]
        figures = "".join(
            f'<script type="application/json" class="scalegate-figure" data-target="{t}">'
            f"{_js_json(f)}</script>" for t, f in self.figures)
        return (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_h(title)}'
            f"</title><meta name=\"viewport\" content=\"width=device-width\"><style>{_CSS}"
            f"</style></head><body><header><h1>{_h(title)}</h1><div>ledger "
            f"<code>{_h(_ledger_name(rep.ledger))}</code> · origin <code>{_h(rep.origin)}</code> · "
            f"{counted(rep.size, 'entries')} · {badge} · exit status {rep.exit_code} · generated "
            f"{_iso(datetime.now(UTC))}</div></header><main>{''.join(self.parts)}</main>"
            f'<script type="application/json" id="scalegate-audit">{_js_json(data)}</script>'
            f"{figures}</body></html>")


def render_html(audit: LedgerAudit, *, run_ids: list[str] | None = None,
                title: str | None = None) -> str:
    """The audit report as one self-contained HTML page (only ``run_ids`` if given)."""
    if title is None:
        title = ("scalegate audit" if run_ids is None or len(run_ids) != 1
                 else f"scalegate report: run {run_ids[0]}")
    return _Page(audit).render(title, run_ids)


def _ledger_name(where: str) -> str:
    """A ledger as a report names it: its file name, or its URL without a password."""
    if "://" in where and not where.startswith("sqlite:"):
        return where
    return Path(where.removeprefix("sqlite:///")).name


def write_html(path: str | os.PathLike[str], audit: LedgerAudit, **kw: Any) -> Path:
    """Render and write the report to ``path`` atomically (whole or not at all)."""
    text = render_html(audit, **kw)
    target = Path(path)
    where = target.parent if str(target.parent) else Path(".")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=where)
        os.fchmod(fd, 0o644)  # a report is for sharing (mkstemp makes files private)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise VerificationError(f"cannot write the report to {target}: "
                                f"{exc.strerror or exc}.",
                                hint="Choose a writable path for --html.") from None
    return target
