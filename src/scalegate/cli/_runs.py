"""`scalegate attest | approve | resume | notify | runs | run status`: runs and the people who
govern them.

Officers attest safeguards and approve a resumption, each with their own key; the trainer
resumes a paused run once the gate's ``resumption`` allows it, from the checkpoint the pause
recorded. ``runs`` and ``run status`` show what the ledger says about each run and, for a
paused run, exactly what its resumption still lacks. Every command takes ``--ledger PATH``
(default ``$SCALEGATE_LEDGER``, else ``./scalegate.db``; a log served over HTTP is read
through its verified mirror and written by submission) and writes nothing when it refuses.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from scalegate.cli._console import console, err_console
from scalegate.cli._ledger import LedgerOpt
from scalegate.errors import RunError, RunPaused
from scalegate.units import counted

if TYPE_CHECKING:
    from scalegate.cli._runs_view import ObligationLine, RunView
    from scalegate.ledger import Ledger, SigningKey
    from scalegate.policy import Policy
    from scalegate.state import RunState

KeyOpt = typer.Option(..., "--key", "-k", help="Your private key file (mode 0600).")
PolicyOpt = typer.Option(
    None, "--policy", "-p",
    help="Policy name or file (default: the one the run registered under, from the ledger).",
)

run_app = typer.Typer(help="One run: its compute, evaluations, decisions and pauses.",
                      no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``attest``, ``approve``, ``resume``, ``notify``, ``runs`` and ``run status``."""
    app.command("attest")(attest)
    app.command("approve")(approve)
    app.command("resume")(resume)
    app.command("notify")(notify)
    app.command("runs")(runs)
    app.add_typer(run_app, name="run")


# --- shared ----------------------------------------------------------------------------------


def _ledger(path: str | None) -> Ledger:
    from scalegate.cli._ledger import _open

    return _open(path)


def _key(path: Path) -> SigningKey:
    from scalegate.ledger import SigningKey

    return SigningKey.load(path)


def _may_sign(led: Ledger, key: SigningKey, now: datetime) -> tuple[str, ...]:
    """The roles ``key`` holds; :class:`KeyNotAuthorized` if it may not sign in ``led``."""
    return led.registry().check_signer(key.vkey, now).roles


def _run_policy(led: Ledger, state: RunState, given: str | None) -> Policy:
    """The run's policy from the ledger, or ``given`` if it is exactly that policy."""
    from scalegate.policy import load_policy
    from scalegate.runs import policy_of_run

    if given is None:
        return policy_of_run(led, state)
    policy = load_policy(given)
    assert state.run is not None
    cited = state.run.predicate.policy
    if policy.digest() != cited.digest:
        raise RunError(
            f"run {state.run_id!r} was registered under policy {cited.id} {cited.version} "
            f"(digest {cited.digest[:12]}…), not {policy.id} {policy.version} "
            f"(digest {policy.digest()[:12]}…).",
            hint="Leave out --policy to use the policy the ledger holds for the run.",
        )
    return policy


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True, markup=False)


def _flop(value: float | None) -> str:
    from scalegate.units import sig2

    return "-" if value is None else sig2(value)


def _bullets(items: list[str]) -> str:
    return "\n".join(f"  - {m}" for m in items)


def _resumption_report(led: Ledger, run_id: str) -> None:
    """After an attestation or approval: what the paused run still lacks, or that it may go."""
    from scalegate.gate import resumption
    from scalegate.ledger import now_utc
    from scalegate.runs import load_state, policy_of_run

    state = load_state(led, run_id)
    if state.active_pause is None:
        return
    res = resumption(policy_of_run(led, state), state, now=now_utc())
    if res.may_resume:
        _say(f"run {run_id} may resume now: run `scalegate resume {run_id}`.")
    else:
        _say(f"run {run_id} still lacks:\n" + _bullets(res.missing_messages()))


# --- attest ------------------------------------------------------------------------------------


def _policies_in(led: Ledger) -> list[Policy]:
    from scalegate.ledger import PolicyPredicate
    from scalegate.policy import parse_policy

    out = []
    for e in led.entries(kind="policy"):
        pred = e.statement.predicate
        if isinstance(pred, PolicyPredicate):
            out.append(parse_policy(pred.document, source=f"ledger entry #{e.index}"))
    return out


def _policy_naming(led: Ledger, safeguard: str) -> Policy:
    """Among the policies the ledger holds, the one whose ``safeguard`` lasts the shortest."""
    from datetime import timedelta

    policies = _policies_in(led)
    if not policies:
        raise RunError(
            f"ledger {led.path} holds no policy, so safeguard {safeguard!r} cannot be checked.",
            hint="Pass --policy NAME|FILE, or --run RUN to attest for one run.",
        )
    naming = [p for p in policies if p.safeguard(safeguard) is not None]
    if not naming:
        known = "; ".join(
            f"{p.id} {p.version}: {', '.join(s.id for s in p.safeguards) or 'none'}"
            for p in policies
        )
        raise RunError(
            f"no policy in ledger {led.path} names safeguard {safeguard!r} (their safeguards: "
            f"{known}).",
            hint="Check the safeguard id, or pass --policy.",
        )

    def max_age(p: Policy) -> timedelta:
        sg = p.safeguard(safeguard)
        return sg.max_age if sg is not None and sg.max_age is not None else timedelta.max

    return min(naming, key=max_age)


def attest(
    safeguard: str = typer.Argument(..., help="The safeguard's id, as the policy names it."),
    key: Path = KeyOpt,
    ledger: str | None = LedgerOpt,
    run: str | None = typer.Option(
        None, "--run", "-r", help="Attest for this run only (default: organisation-wide)."
    ),
    policy: str | None = PolicyOpt,
    evidence: Path | None = typer.Option(
        None, "--evidence", help="Evidence file; its SHA-256 is recorded, not its content."
    ),
    evidence_uri: str | None = typer.Option(
        None, "--evidence-uri", help="Where an auditor can obtain the evidence."
    ),
    valid_for: str | None = typer.Option(
        None, "--valid-for",
        help="How long the attestation holds (30d, 6mo; default: the safeguard's maximum age).",
    ),
) -> None:
    """Attest that a safeguard is in place, signed with your key (e.g. the CISO's)."""
    from scalegate import governance
    from scalegate.ledger import now_utc
    from scalegate.policy import load_policy
    from scalegate.runs import require_run
    from scalegate.units import format_duration, parse_duration

    signer = _key(key)
    duration = None
    if valid_for is not None:
        try:
            duration = parse_duration(valid_for)
        except ValueError as exc:
            raise RunError(f"--valid-for: {exc}.") from None
    if evidence is not None and not evidence.is_file():
        raise RunError(f"evidence file {evidence} does not exist.", hint="Pass an existing file.")
    now = now_utc()
    with _ledger(ledger) as led:
        roles = _may_sign(led, signer, now)
        if run is not None:
            pol = _run_policy(led, require_run(led, run), policy)
        elif policy is not None:
            pol = load_policy(policy)
        else:
            pol = _policy_naming(led, safeguard)
        sg = pol.safeguard(safeguard)
        if sg is None:
            raise RunError(
                f"policy {pol.id} {pol.version} has no safeguard {safeguard!r}.",
                hint=f"Its safeguards are: {', '.join(s.id for s in pol.safeguards) or 'none'}.",
            )
        if not set(roles) & set(sg.attested_by):
            raise RunError(
                f"{signer.name} may not attest {safeguard}: policy {pol.id} lets "
                f"{', '.join(sg.attested_by)} attest it, and this key holds "
                f"{', '.join(roles) or 'no roles'}.",
                hint="Sign with the key of someone who holds that role.",
            )
        ref = governance.attest(led, signer, safeguard, policy=pol, run_id=run,
                                evidence=evidence, evidence_uri=evidence_uri,
                                valid_for=duration, now=now)
        org = signer.name.split("/", 1)[0]
        scope = f"for run {run}" if run else f"for {org} (organisation-wide)"
        lasts = duration or sg.max_age
        until = (f"valid until {(now + lasts):%Y-%m-%d %H:%M} UTC ({format_duration(lasts)})"
                 if lasts else "valid until revoked")
        _say(f"attested {safeguard} {scope} as entry {ref.index}, signed by {signer.name}; "
             f"{until}.")
        if run is not None:
            _resumption_report(led, run)


# --- approve -----------------------------------------------------------------------------------


def _ceiling_value(text: str, at_pause: float) -> float:
    """``2x`` (of the compute at the pause) or an absolute figure; above the pause's compute."""
    from scalegate.units import parse_quantity, parse_ratio

    t = text.strip()
    try:
        value = parse_ratio(t) * at_pause if t.endswith(("x", "X", "×")) else parse_quantity(t)
    except ValueError as exc:
        raise RunError(f"--ceiling {text!r}: {exc}.",
                       hint="Write a multiple of the compute at the pause (2x) or effective "
                       "FLOP (3e21).") from None
    if not math.isfinite(value):  # a huge multiple of the compute at the pause
        raise RunError(f"--ceiling {text!r} is more effective FLOP than a number holds.",
                       hint="Write a multiple of the compute at the pause (2x) or effective "
                       "FLOP (3e21).")
    if value <= at_pause:
        # An approval's ceiling can only lower the quorum's; one at or below the pause would
        # block this pause for good, so it is refused rather than recorded.
        raise RunError(
            f"--ceiling {text} is {_flop(value)} effective FLOP, not above the "
            f"{_flop(at_pause)} at which the run paused; the run could not go on at all.",
            hint="Give a ceiling above the pause, e.g. 2x.",
        )
    return value


def approve(
    run: str = typer.Argument(..., help="The paused run."),
    key: Path = KeyOpt,
    rationale: str = typer.Option(..., "--rationale", "-m", help="Why you approve (recorded)."),
    role: str | None = typer.Option(
        None, "--role", help="The governance role you approve in (default: your only one)."
    ),
    ceiling: str | None = typer.Option(
        None, "--ceiling",
        help="Let the run go on only up to this: a multiple of its compute at the pause (2x) "
        "or effective FLOP (3e21); it pauses again there.",
    ),
    ledger: str | None = LedgerOpt,
) -> None:
    """Approve resuming a paused run, bound to its pause, signed with your key."""
    from scalegate import governance
    from scalegate.ledger import (
        ApprovalPredicate,
        now_utc,
    )
    from scalegate.runs import require_run

    signer = _key(key)
    if not rationale.strip():
        raise RunError("--rationale is empty; an approval must say why.")
    now = now_utc()
    with _ledger(ledger) as led:
        _may_sign(led, signer, now)
        state = require_run(led, run)
        pause = state.active_pause
        if pause is None:
            raise RunError(f"run {run!r} is not paused; there is nothing to approve.",
                           hint=f"See `scalegate run status {run}`.")
        at_pause = pause.predicate.effective_flop
        value = _ceiling_value(ceiling, at_pause) if ceiling is not None else None
        ref = governance.approve(led, signer, run, rationale, role=role, ceiling=value, now=now)
        entry = led.entry(ref.index).statement.predicate
        assert isinstance(entry, ApprovalPredicate)
        limit = (f"; ceiling {_flop(value)} effective FLOP ({value / at_pause:.3g}x the "
                 f"{_flop(at_pause)} at the pause)" if value is not None else "")
        _say(f"approved resuming run {run} from pause #{pause.index} as "
             f"{entry.role}, entry {ref.index}, signed by {signer.name}{limit}.")
        _resumption_report(led, run)


# --- notify ------------------------------------------------------------------------------------


def notify(
    run: str = typer.Argument(..., help="The run that owes the obligation."),
    obligation: str = typer.Option(
        ..., "--obligation", "-o", help="The obligation's id (see `scalegate run status RUN`)."),
    evidence: Path = typer.Option(
        ..., "--evidence", help="What was sent (a file); its SHA-256 is recorded, not its "
        "content."),
    key: Path = KeyOpt,
    recipient: str | None = typer.Option(
        None, "--recipient", help="Who was notified (default: the one the policy names)."),
    sent_at: str | None = typer.Option(
        None, "--sent-at", help="When it was sent, as an ISO date and time (default: now)."),
    held_to: str | None = typer.Option(
        None, "--policy", help="An obligation of this other policy (a bundled name or a file) "
        "the run is held to, e.g. eu-ai-act, rather than of its own."),
    ledger: str | None = LedgerOpt,
) -> None:
    """Record that an obligation was met: the recipient notified, signed with your key."""
    from scalegate import governance
    from scalegate.ledger import now_utc
    from scalegate.policy import load_policy

    signer = _key(key)
    if not evidence.is_file():
        raise RunError(f"evidence file {evidence} does not exist.",
                       hint="Pass the file that was sent (or a record of it).")
    now = now_utc()
    when = _when(sent_at) if sent_at is not None else now
    with _ledger(ledger) as led:
        _may_sign(led, signer, now)
        ref = governance.notify(led, signer, run, obligation, evidence=evidence,
                                recipient=recipient, sent_at=when, now=now,
                                held_to=load_policy(held_to) if held_to else None)
    _say(f"recorded notification {obligation} of run {run} as entry {ref.index} (sent "
         f"{when:%Y-%m-%d %H:%M} UTC), signed by {signer.name}.")


def _when(text: str) -> datetime:
    from datetime import UTC

    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RunError(f"--sent-at {text!r} is not a date and time.",
                       hint="Write it as 2026-03-01T14:30 (UTC unless a zone is given).") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


# --- resume ------------------------------------------------------------------------------------


def resume(
    run: str = typer.Argument(..., help="The paused run."),
    key: Path = KeyOpt,
    ledger: str | None = LedgerOpt,
    policy: str | None = PolicyOpt,
) -> None:
    """Lift a run's pause if the gate allows it, and print the checkpoint to resume from."""
    from scalegate import governance
    from scalegate.ledger import (
        CheckpointPredicate,
        ResumePredicate,
        now_utc,
    )
    from scalegate.runs import require_run

    signer = _key(key)
    now = now_utc()
    with _ledger(ledger) as led:
        _may_sign(led, signer, now)
        state = require_run(led, run)
        if state.active_pause is None:
            raise RunError(f"run {run!r} is not paused; there is nothing to resume.",
                           hint=f"See `scalegate run status {run}`.")
        pol = _run_policy(led, state, policy)
        try:
            ref = governance.resume(led, signer, run, policy=pol, now=now)
        except RunPaused as exc:
            raise RunPaused(
                f"run {run!r} may not resume yet from pause #{state.active_pause.index}; the "
                f"ledger still lacks:\n{_bullets(exc.missing)}\nAttest with `scalegate attest`, "
                f"approve with `scalegate approve`, then run `scalegate resume {run}` again.",
                missing=exc.missing,
            ) from None
        done = led.entry(ref.index).statement.predicate
        assert isinstance(done, ResumePredicate)
        ck = led.entry(done.checkpoint.index).statement.predicate
        assert isinstance(ck, CheckpointPredicate)
    approvals = ", ".join(f"#{a.index}" for a in done.approvals)
    _say(f"resumed run {run}: entry {ref.index} lifts pause #{done.pause.index} "
         f"(approvals {approvals}; decision #{done.decision.index}).")
    _say(f"checkpoint entry: {done.checkpoint.index}\ncheckpoint step: {ck.step}\n"
         f"checkpoint digest: sha256:{ck.digest}\ncheckpoint uri: {ck.uri or '-'}")
    if done.ceiling_flop is not None:
        _say(f"ceiling: {_flop(done.ceiling_flop)} effective FLOP (the run pauses again there)")
    else:
        _say("ceiling: none")


# --- runs and run status -------------------------------------------------------------------------


def runs(
    ledger: str | None = LedgerOpt,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """List the runs in the ledger: status, steps, effective compute, last verdict and values."""
    from rich import box
    from rich.table import Table

    from scalegate.cli._runs_view import summarize
    from scalegate.ledger import now_utc
    from scalegate.runs import list_runs

    now = now_utc()
    with _ledger(ledger) as led:
        rows = [summarize(led, run_id, now) for run_id in list_runs(led)]
        where = led.path
        unverified = led.coverage().unverified()
    for reason in unverified:  # on stderr: --json stays one document
        err_console.print(f"[bold yellow]ledger unverified:[/bold yellow] {reason} These runs "
                          "are what the database holds (`scalegate ledger verify`).",
                          soft_wrap=True, highlight=False)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    table = Table(title=f"{where}: {counted(len(rows), 'runs')}", title_justify="left",
                  box=box.SIMPLE, collapse_padding=True)
    # Narrow terminals: org over model, and one evaluation a line, keep every column legible.
    for col in ("run", "org / model", "policy", "status", "steps", "eff. FLOP", "verdict",
                "last evaluations", "open obligations"):
        table.add_column(col, justify="right" if col in ("steps", "eff. FLOP") else "left",
                         overflow="fold", no_wrap=col in ("run", "steps", "eff. FLOP", "verdict"))
    for r in rows:
        evals = "\n".join(f"{k} {_value(v)}" for k, v in r.last_evaluations.items())
        owed = "\n".join(f"{o.id} {_due(o, now)}" for o in r.obligations)
        table.add_row(r.run_id, f"{r.org}\n{r.model}", f"{r.policy_id} {r.policy_version}",
                      r.status_text, str(r.steps), _flop(r.effective_flop),
                      r.last_verdict or "-", evals or "-", owed or "-")
    console.print(table)


def _due(o: ObligationLine, now: datetime) -> str:
    from scalegate.cli._runs_view import time_left

    if o.deadline is None:
        return "(no deadline)"
    if o.overdue:
        return f"OVERDUE since {o.deadline:%Y-%m-%d}"
    return f"by {o.deadline:%Y-%m-%d} ({time_left(o.deadline - now)} left)"


def _value(v: float | None) -> str:
    return "failed" if v is None else f"{v:.3g}"


@run_app.command("status")
def status(
    run: str = typer.Argument(..., help="The run id (see `scalegate runs`)."),
    ledger: str | None = LedgerOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """One screen on a run: compute vs thresholds, evaluations, decisions, pauses, obligations,
    and what a paused run still lacks."""
    from scalegate.cli._runs_view import render, view

    with _ledger(ledger) as led:
        v: RunView = view(led, run)
    if as_json:
        print(json.dumps(v.model_dump(mode="json"), indent=2))
    else:
        render(v, console)
