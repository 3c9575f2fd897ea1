"""`scalegate verify`: audit a ledger (or one receipt) trusting only a trust file, and
replay every run in it.

Exit status: 0 nothing violated, 3 violations found, 4 could not verify.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from scalegate.cli._console import console, err_console, print_error
from scalegate.errors import ScalegateError, VerificationError
from scalegate.units import counted

if TYPE_CHECKING:
    from rich.console import Console

    from scalegate.audit import (
        AuditReport,
        HeldTo,
        LedgerAudit,
        RunAudit,
        Violation,
    )


def verify(
    trust: Path = typer.Option(..., "--trust", "-t", help="The trust file (YAML)."),
    ledger: str | None = typer.Option(
        None, "--ledger", "-l", show_default=False,
        help="Ledger file or URL (default: $SCALEGATE_LEDGER, else ./scalegate.db)."),
    state: Path | None = typer.Option(
        None, "--state", help="Auditor state: checkpoints accepted before, so a log that "
        "rewrites history is caught (default: $XDG_STATE_HOME/scalegate/auditor.json, else "
        "~/.local/state/scalegate/auditor.json; its path is printed when first used)."),
    no_state: bool = typer.Option(False, "--no-state", help="Neither read nor record state."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
    workers: int | None = typer.Option(None, "--workers", help="Signature-checking processes."),
    full: bool = typer.Option(False, "--full", help="Validate every predicate's fields too."),
    receipt: Path | None = typer.Option(
        None, "--receipt", help="Check this C2SP tlog-proof receipt offline (needs --entry)."),
    entry: Path | None = typer.Option(
        None, "--entry", help="The entry the receipt is for: its DSSE envelope JSON, or its "
        "line of `scalegate ledger show --json`."),
    html: Path | None = typer.Option(
        None, "--html", help="Also write an HTML audit report with plots to this file."),
    at: str | None = typer.Option(
        None, "--at", help="Audit time for notification deadlines (RFC 3339; default: now)."),
    no_replay: bool = typer.Option(False, "--no-replay", help="Check the log only; do not "
                                   "replay the runs."),
    runs: list[str] | None = typer.Option(
        None, "--run", help="Replay only this run (repeatable; default: every run)."),
    policies: list[str] | None = typer.Option(
        None, "--policy", help="Also hold every run to this policy, whatever policy it "
        "registered under: a bundled name (eu-ai-act, ca-sb53, fli-pause-2023...) or a file; "
        "repeatable."),
) -> None:
    r"""Audit a ledger end to end, trusting only the trust file.

    Fails closed on: the checkpoint's log signature and witness quorum; the tree
    recomputed from the entries against every checkpoint, every stored node and
    every checkpoint this auditor accepted before (--state); every signature;
    every signer registered by a trusted root, valid at the time, not revoked,
    with an allowed role and the right organisation.

    Then replays every run under the policy the log publishes for it: every
    recorded decision re-decided by the gate, and the gate consulted wherever the
    trainer had to decide. Reports training during a pause, pauses required but not
    declared, skipped evaluations, decisions that differ, resumptions without
    quorum, too early or from another checkpoint, training past an approved
    ceiling, approvals bound to another pause, missed notification deadlines,
    compute going backwards, attestations by a wrong role or used after expiry.

    With --policy NAME (repeatable), every run is also held to that policy, as a
    regulator holds a lab to the law whatever policy it chose: each compute
    threshold reached or not, notifications owed and whether they were logged in
    time (by the witnesses' times), and training past a pause threshold inside its
    window (a moratorium). Findings are labelled with the policy; a missed
    notification or training in a moratorium is a violation.

    With --receipt FILE --entry FILE: check one statement offline from its
    C2SP tlog-proof receipt (`scalegate ledger prove INDEX`) instead.

    Trust file (YAML; `scalegate trust init` writes one from the keys you trust):

      log: {origin: example.org/log, key: example.org/log+1a2b3c4d+AU...}
      witnesses: {witness.example/w1: witness.example/w1+5e6f7a8b+BA...}
      witness_quorum: 1
      org_roots: {acme: \[acme/root+0badc0de+AQ...]}
      roles: {decision: \[trainer]}   # optional: kind -> roles allowed
      timestamp_authorities:          # optional: RFC 3161 TSAs (PEM inline or a path)
        - {name: tsa.example, ca: tsa-root.pem}

    Exit status: 0 nothing violated, 3 violations found, 4 could not verify.
    """
    from scalegate.audit import AuditReport

    try:
        if (receipt is not None or entry is not None) and (html is not None
                                                            or ledger is not None
                                                            or policies):
            raise VerificationError("--receipt checks one entry offline; --html, --ledger and "
                                    "--policy are for a ledger audit.", hint="Drop them, or "
                                    "audit the ledger without --receipt.")
        if state is not None and no_state:
            raise VerificationError("--state and --no-state contradict each other.",
                                    hint="Pass one of them.")
        audit = _run(trust, ledger, state, no_state, as_json, workers, full, receipt, entry,
                     replay=not no_replay, now=parse_time(at), runs=runs or None,
                     policies=policies or [])
        report = audit if isinstance(audit, AuditReport) else audit.report
        if html is not None and not isinstance(audit, AuditReport):
            from scalegate.audit import write_html

            write_html(html, audit)
            err_console.print(f"audit report written to {html}", highlight=False)
    except ScalegateError as exc:
        if as_json:
            print(json.dumps({"ok": False, "could_not_verify": True, "exit_code": 4,
                              "error": str(exc)}, indent=2))
        else:
            print_error(exc)
        raise typer.Exit(VerificationError.exit_code) from None
    if as_json:
        print(json.dumps(audit.to_json_data(), indent=2))
    elif isinstance(audit, AuditReport):
        render_report(report, console, runs=None, held_to=None)
    else:
        render_report(report, console, runs=audit.runs, held_to=audit.held_to)
    raise typer.Exit(report.exit_code)


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time with its offset (``Z`` allowed), or ``None``."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.utcoffset() is None:
        raise VerificationError(f"--at {text!r} is not an RFC 3339 time with an offset.",
                                hint="Write e.g. 2026-03-15T12:00:00Z.")
    return when


def _run(trust: Path, ledger: str | None, state: Path | None, no_state: bool, as_json: bool,
         workers: int | None, full: bool, receipt: Path | None, entry: Path | None, *,
         replay: bool = True, now: datetime | None = None,
         runs: list[str] | None = None, policies: list[str] | None = None
         ) -> AuditReport | LedgerAudit:
    from scalegate.audit import load_trust
    from scalegate.policy import load_policy

    trusted = load_trust(trust)
    held_to = [load_policy(p) for p in dict.fromkeys(policies or [])]
    if state is None and not no_state:
        state = _default_state()
        if not state.exists():  # first use: say where this auditor's memory is kept
            err_console.print(
                f"auditor state: recording the checkpoints this audit accepts in {state} "
                "(first use). Pass --state FILE to keep it elsewhere (one per auditor), or "
                "--no-state to keep none.", highlight=False, soft_wrap=True)
    elif state is not None and not no_state and not state.parent.is_dir():
        raise VerificationError(f"--state {state}: the directory {state.parent} does not "
                                "exist.", hint="Create it, or pass a file in an existing "
                                "directory.")
    if receipt is not None or entry is not None:
        if receipt is None or entry is None:
            raise VerificationError("--receipt and --entry go together: the receipt proves "
                                    "that entry.")
        from scalegate.audit import audit_receipt

        return audit_receipt(_read(receipt, "receipt"), _entry(entry), trusted,
                             state_path=None if no_state else state,
                             source=str(receipt))
    from scalegate.audit import audit_ledger
    from scalegate.cli._remote import audited_location
    from scalegate.ledger import default_ledger_path

    given = ledger if ledger is not None else default_ledger_path()
    target = audited_location(given, trusted)
    kwargs = {"state_path": state, "use_state": not no_state, "workers": workers, "full": full,
              "replay": replay, "now": now, "run_ids": runs, "held_to": held_to}
    if as_json or not err_console.is_terminal:
        audit = audit_ledger(target, trusted, **kwargs)  # type: ignore[arg-type]
    else:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("auditing"), BarColumn(), TextColumn("{task.completed}/"
                      "{task.total}"), TimeRemainingColumn(), console=err_console,
                      transient=True) as bar:
            task = bar.add_task("audit", total=None)
            audit = audit_ledger(target, trusted, progress=lambda done, total: bar.update(
                task, completed=done, total=total), **kwargs)  # type: ignore[arg-type]
    if target != given:  # a served log, audited through its mirror: name both
        audit.report.ledger = f"{given} (mirror {audit.report.ledger})"
    return audit


def _default_state() -> Path:
    from scalegate.audit import default_state_path

    return default_state_path()


def _entry(path: Path) -> bytes:
    """The --entry file's bytes, which must at least be JSON (a wrong file is a mistake to
    say, not a finding about the log)."""
    import orjson

    data = _read(path, "entry")
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        raise VerificationError(
            f"--entry {path} is not JSON: it is not an entry of a ledger.",
            hint="Pass the entry's DSSE envelope (JSON), or its line of `scalegate ledger "
            "show --json`.") from None
    return data


def _read(path: Path, what: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise VerificationError(f"cannot read the {what} file {path}: "
                                f"{exc.strerror or exc}.") from None


def render_runs(runs: list[RunAudit], out: Console) -> None:
    """One line per run: its policy, replayed decisions, where it stands, violations."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="runs replayed", title_justify="left", header_style="bold")
    for col in ("run", "policy", "decisions", "gate now", "status", "violations"):
        table.add_column(col, overflow="fold", no_wrap=col in ("decisions", "violations"))
    for r in runs:
        rep, pol = r.replay, r.policy
        if rep is None or pol is None:
            table.add_row(escape(r.run_id), "-", "-", "-", f"[red]not replayed: "
                          f"{escape(r.problem or '?')}[/red]", "-")
            continue
        state, final = rep.state, rep.final
        bad = len(rep.violations)
        table.add_row(
            escape(r.run_id), escape(f"{pol.id} {pol.version}"),
            f"{len(rep.decisions)} ({len(rep.mismatches)} differ)" if rep.mismatches
            else f"{len(rep.decisions)} match",
            escape(f"{final.verdict}, {final.effective_flop:.3g} FLOP") if final else "-",
            "[red]paused[/red]" if state is not None and state.active_pause else "running",
            f"[red]{bad}[/red]" if bad else "[green]0[/green]")
    out.print(table, highlight=False)


_STATUS_STYLE = {"missed": "red", "breached": "red", "operator-word": "yellow", "due": "yellow",
                 "owed": "yellow", "met": "green", "sent": "green", "respected": "green",
                 "reached": "bold", "not-reached": "dim", "outside-window": "dim"}


def render_held_to(held: HeldTo, out: Console) -> None:
    """One policy the runs were held to: its summary, and each finding with its status."""
    from rich.markup import escape
    from rich.table import Table

    bad = len(held.violations)
    mark = f"[red]✗ {counted(bad, 'violations')}[/red]" if bad else "[green]✓[/green]"
    table = Table(title=f"held to {escape(held.label)} ({held.kind}) {mark}", title_justify="left",
                  header_style="bold", caption=escape(held.summary() + (
                      f"; not judged: {', '.join(held.not_judged)}" if held.not_judged else "")),
                  caption_justify="left")
    for col in ("run", "what", "status", "finding"):
        table.add_column(col, overflow="fold", no_wrap=col in ("status",))
    for f in held.findings:
        style = _STATUS_STYLE.get(f.status, "")
        refs = ", ".join(f"#{r.index}" for r in f.refs)
        table.add_row(escape(f.run_id), escape(f"{f.kind} {f.subject}"),
                      f"[{style}]{f.status}[/{style}]" if style else f.status,
                      escape(f.message) + (f" [dim]({refs})[/dim]" if refs else ""))
    out.print(table, highlight=False)


def render_report(report: AuditReport, out: Console, *, per_kind: int = 5,
                  runs: list[RunAudit] | None = None,
                  held_to: list[HeldTo] | None = None) -> None:
    """The terminal summary: checks, the runs replayed, each other policy they were held
    to, violations grouped by kind, and the verdict."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"audit of {report.ledger} ({report.origin})", title_justify="left",
                  show_header=False, box=None, pad_edge=False)
    table.add_column("", width=1)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for c in report.checks:
        table.add_row("[green]✓[/green]" if c.ok else "[red]✗[/red]", escape(c.name),
                      escape(c.detail))
    out.print(table, highlight=False)
    if runs:
        out.print()
        render_runs(runs, out)
    shown_apart: dict[str, int] = {}  # violations the held-to sections show
    for held in held_to or []:
        out.print()
        render_held_to(held, out)
        for f in held.violations:
            shown_apart[f.violation or ""] = shown_apart.get(f.violation or "", 0) + 1
    groups: dict[str, list[Violation]] = {}
    for v in report.violations:
        if v.policy is None or held_to is None:
            groups.setdefault(v.kind, []).append(v)
    for kind, items in groups.items():
        total = report.violation_counts[kind] - shown_apart.get(kind, 0)
        out.print(f"\n[bold red]{kind}[/bold red] ({total})", highlight=False)
        for v in items[:per_kind]:
            refs = ", ".join(f"#{r.index}" for r in v.refs)
            out.print(f"  • {escape(v.message)}" + (f" [dim]({refs})[/dim]" if refs else ""),
                      highlight=False, soft_wrap=True)
        rest = total - min(len(items), per_kind)
        if rest > 0:
            out.print(f"  … and {rest} more {kind} (see --json)", highlight=False)
    if report.operator_word:
        out.print(f"\n[bold yellow]met on the log operator's word[/bold yellow] "
                  f"({len(report.operator_word)})", highlight=False)
        for v in report.operator_word[:per_kind]:
            refs = ", ".join(f"#{r.index}" for r in v.refs)
            out.print(f"  • {escape(v.message)}" + (f" [dim]({refs})[/dim]" if refs else ""),
                      highlight=False, soft_wrap=True)
    counts = ", ".join(counted(v, k) for k, v in report.counts.items())
    if report.violations_total:
        verdict = f"[bold red]✗ {counted(report.violations_total, 'violations')} found[/bold red]"
    elif report.could_not_verify:
        verdict = "[bold yellow]? could not verify[/bold yellow]"
    else:
        verdict = "[bold green]✓ nothing violated[/bold green]"
    out.print(f"\n{verdict} — " + (f"{counts} in " if counts else "")
              + f"{report.seconds:.2f} s", highlight=False, soft_wrap=True)

