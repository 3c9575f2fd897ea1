"""`scalegate report RUN --html FILE`: one run as an HTML report with plots.

The run's compute against the policy's thresholds, its evaluation scores against the
alert and trigger lines, a timeline of decisions, pauses, approvals and resumptions,
and every recorded decision next to the gate's replay. With ``--trust`` the whole log
is verified first (as ``scalegate verify``); without, the run is replayed from the
ledger as it stands and the report says that the log itself was not verified.
"""

from __future__ import annotations

from pathlib import Path

import typer

from scalegate.cli._console import err_console
from scalegate.cli._ledger import LedgerOpt
from scalegate.cli._verify import parse_time
from scalegate.errors import RunError
from scalegate.units import counted


def report(
    run: str = typer.Argument(..., help="The run id (see `scalegate runs`)."),
    html: Path = typer.Option(..., "--html", "--out", "-o",
                              help="Write the HTML report to this file."),
    ledger: str | None = LedgerOpt,
    trust: Path | None = typer.Option(
        None, "--trust", "-t", help="Verify the log against this trust file first."),
    at: str | None = typer.Option(
        None, "--at", help="Audit time for notification deadlines (RFC 3339; default: now)."),
) -> None:
    """Write an HTML report on one run: compute vs thresholds, evaluations, decisions
    (recorded and replayed), pauses, approvals and resumptions, with plots."""
    from scalegate.audit import write_html
    from scalegate.cli._ledger import _open
    from scalegate.cli._remote import audited_location
    from scalegate.ledger import default_ledger_path

    now = parse_time(at)
    target = ledger if ledger is not None else default_ledger_path()
    if trust is not None:
        from scalegate.audit import audit_ledger, load_trust

        trusted = load_trust(trust)
        audit = audit_ledger(audited_location(target, trusted), trusted, run_ids=[run],
                             now=now, use_state=False)
    else:
        from scalegate.audit import replay_ledger

        with _open(target) as led:
            audit = replay_ledger(led, run_ids=[run], now=now)
    if audit.run(run) is None:
        raise RunError(f"run {run!r} has no statements in ledger {target}.",
                       hint="Check the run id (`scalegate runs`) or --ledger.")
    write_html(html, audit, run_ids=[run])
    found = audit.run(run)
    assert found is not None
    bad = len(found.replay.violations) if found.replay else None
    rep = audit.report
    verified = ("log verified" if trust is not None and not rep.could_not_verify
                else "log NOT verified (pass --trust)")
    what = (f"{counted(bad, 'violations')} in the replay" if bad is not None
            else f"not replayed: {found.problem}")
    err_console.print(f"report on run {run} written to {html}: {what}; {verified}",
                      highlight=False, markup=False)
    if trust is not None:
        raise typer.Exit(rep.exit_code)
