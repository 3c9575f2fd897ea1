"""`scalegate commitment check | list | propose | endorse | withdraw | status`: joint
commitments (a pause all key actors sign), with verified signatories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from scalegate.cli._console import console
from scalegate.cli._ledger import LedgerOpt, _open

if TYPE_CHECKING:
    from scalegate.commitments import Commitment
    from scalegate.commitments.status import CommitmentStatus
    from scalegate.ledger import Ledger

app = typer.Typer(help="Joint commitments: propose one, join it, leave it, and see its "
                  "status and each party's compliance from their audited logs.",
                  no_args_is_help=True)

KeyOpt = typer.Option(..., "--key", "-k", help="Your private key file: a key your "
                      "organisation's root registered with the role signatory.")
CommitmentArg = typer.Argument(..., help="A commitment: its id (as proposed in the ledger), "
                               "a bundled name, or a file.")


@app.command("check")
def check(path: Path = typer.Argument(..., help="A commitment file (YAML).")) -> None:
    """Check a commitment document; every problem with file:line:column and field."""
    from scalegate.commitments import load_commitment

    c = load_commitment(path)
    console.print(f"{escape(str(path))}: commitment {c.id} is valid (digest {c.digest()})",
                  highlight=False)


@app.command("list")
def list_() -> None:
    """The commitments that ship with scalegate."""
    from scalegate.commitments import bundled_commitments, load_commitment

    table = Table("name", "title", "binds")
    for name in bundled_commitments():
        c = load_commitment(name)
        a = c.activation
        binds = "immediately" if a.immediately else f"{a.needed} of {len(a.parties)} parties"
        table.add_row(name, c.title, binds)
    console.print(table)


@app.command("propose")
def propose(commitment: str = typer.Argument(..., help="A bundled name or a commitment file."),
            key: Path = KeyOpt, ledger: str | None = LedgerOpt) -> None:
    """Log a commitment, proposed by your organisation; parties then join it."""
    from scalegate.commitments import read_commitment
    from scalegate.commitments.joining import propose as propose_
    from scalegate.ledger import SigningKey

    doc, text = read_commitment(commitment)
    signer = SigningKey.load(key)
    with _open(ledger) as led:
        ref = propose_(led, signer, doc, text)
    console.print(f"proposed {doc.id} (digest {doc.digest()[:12]}…) as entry {ref.index}; "
                  f"it binds {_binds(doc)}", highlight=False)


@app.command("endorse")
def endorse(commitment: str = CommitmentArg, key: Path = KeyOpt,
            ledger: str | None = LedgerOpt,
            name: str | None = typer.Option(None, "--name", help="For a person signing: "
                                            "your name."),
            title: str | None = typer.Option(None, "--title", help="Your title."),
            affiliation: str | None = typer.Option(
                None, "--affiliation", help="The organisation you sign for (its id). It counts "
                "only if its root registered your key as a signatory.")) -> None:
    """Join a commitment: your organisation, or you (--name) for an open letter."""
    from scalegate.commitments.joining import endorse as endorse_
    from scalegate.ledger import Signatory, SigningKey

    signer = SigningKey.load(key)
    who = Signatory(name=name, title=title, affiliation=affiliation) if name else None
    with _open(ledger) as led:
        doc = _commitment(led, commitment)
        ref = endorse_(led, signer, doc, signatory=who)
    console.print(f"signed {doc.id} (digest {doc.digest()[:12]}…) as entry {ref.index}, by "
                  f"{signer.name}", highlight=False)


@app.command("withdraw")
def withdraw(commitment: str = CommitmentArg, key: Path = KeyOpt,
             ledger: str | None = LedgerOpt,
             effective: str | None = typer.Option(
                 None, "--effective", help="When it takes effect (RFC 3339; default and "
                 "earliest: after the commitment's notice)."),
             reason: str = typer.Option("", "--reason", help="Why, for the record.")) -> None:
    """Leave a commitment, after the notice it requires."""
    from scalegate.cli._ledger import _when
    from scalegate.commitments.joining import withdraw as withdraw_
    from scalegate.ledger import SigningKey, now_utc

    signer = SigningKey.load(key)
    with _open(ledger) as led:
        doc = _commitment(led, commitment)
        ref = withdraw_(led, signer, doc, effective=_when(effective, "--effective",
                                                          base=now_utc()), reason=reason)
    console.print(f"withdrew from {doc.id} as entry {ref.index}", highlight=False)


@app.command("status")
def status(
    commitment: str = typer.Argument(..., help="The commitment's id or digest."),
    ledger: list[str] = typer.Option([], "--ledger", "-l", help="A log to gather from "
                                     "(a ledger file, database URL or served log's address); "
                                     "repeat for each."),
    trust: list[Path] = typer.Option([], "--trust", "-t", help="The trust file of each "
                                     "--ledger, in the same order."),
    registry: str | None = typer.Option(None, "--registry", help="Instead of logs: a "
                                        "registry's address; its judgement is shown (it "
                                        "audits the logs it follows)."),
    at: str | None = typer.Option(None, "--at", help="The time to judge at (RFC 3339; "
                                  "default: now)."),
    stale_after: str = typer.Option("1h", "--stale-after", help="A party's log without a "
                                    "witnessed checkpoint this recent is unverifiable."),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """A commitment's status and each party's compliance, from every log given (each
    audited as `scalegate verify` audits it), or as a registry judged it. Exits 3 when a
    party is in breach, 4 when one is unverifiable, else 0."""
    if registry is not None:
        got = _from_registry(registry, commitment)
    else:
        got = _from_logs(commitment, ledger, trust, at, stale_after)
    if as_json:
        print(json.dumps(got.model_dump(mode="json"), indent=2))
    else:
        _show(got)
    comps = {p.compliance for p in got.parties}
    raise typer.Exit(3 if "in breach" in comps else 4 if "unverifiable" in comps else 0)


def _from_logs(commitment: str, ledger: list[str], trust: list[Path], at: str | None,
               stale_after: str) -> CommitmentStatus:
    from scalegate.audit import load_trust
    from scalegate.cli._ledger import _when
    from scalegate.cli._remote import audited_location
    from scalegate.commitments.evidence import LogToRead, gather
    from scalegate.commitments.status import commitment_status
    from scalegate.errors import CommitmentError
    from scalegate.ledger import now_utc
    from scalegate.units import parse_duration

    if not ledger or len(ledger) != len(trust):
        raise CommitmentError(f"{len(ledger)} --ledger but {len(trust)} --trust: give the "
                              "logs to gather from, each with its trust file, in the same "
                              "order (or --registry URL)")
    when = _when(at, "--at", base=now_utc()) or now_utc()
    logs = []
    for where, t in zip(ledger, trust, strict=True):
        tf = load_trust(t)
        logs.append(LogToRead(audited_location(where, tf), tf, name=where))
    return commitment_status(gather(commitment, logs, now=when), when,
                             stale_after=parse_duration(stale_after))


def _from_registry(url: str, ident: str) -> CommitmentStatus:
    """A registry's judgement of ``ident`` (``GET /api/commitments/ID``)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from scalegate.commitments.status import CommitmentStatus
    from scalegate.errors import CommitmentError

    where = url.rstrip("/") + "/api/commitments/" + urllib.parse.quote(ident, safe="")
    try:
        with urllib.request.urlopen(where, timeout=30) as r:
            body = r.read(16 << 20)
    except urllib.error.HTTPError as exc:
        raise CommitmentError(f"{where}: the registry answered {exc.code}" + (
            ": it follows no log that proposes it" if exc.code == 404 else "")) from None
    except (OSError, ValueError) as exc:
        raise CommitmentError(f"cannot reach the registry at {url}: {exc}") from None
    try:
        data = json.loads(body)
        data.pop("checked_at", None)
        return CommitmentStatus.model_validate(data)
    except ValueError as exc:
        raise CommitmentError(f"{where} did not answer with a commitment's status "
                              f"({str(exc).splitlines()[0]})") from None


def _show(s: CommitmentStatus) -> None:
    console.print(f"[bold]{escape(s.id)}[/bold] {escape(s.summary)}", highlight=False)
    table = Table("party", "joined", "how it is known", "compliance", "why / proof",
                  title="parties", title_justify="left")
    for p in s.parties:
        sig = p.joined_by
        proof = ", ".join(f"entry {r.index}" for r in p.proof)
        table.add_row(p.org + ("" if p.named else " (not named)"),
                      sig.at.isoformat() if sig else "-",
                      f"{sig.method}: {sig.why}" if sig else "-",
                      p.compliance + (f" (withdrawn from {p.withdrawn_from.isoformat()})"
                                      if p.withdrawn_from else ""),
                      p.why + (f" [{proof}]" if proof else ""))
    console.print(table)
    if s.alerts:
        console.print("[bold red]identity alerts[/bold red] (claimed, not verified; not "
                      "counted):", highlight=False)
        for a in s.alerts:
            console.print(f"  {escape(a)}", highlight=False)


def _binds(c: Commitment) -> str:
    a = c.activation
    return "immediately" if a.immediately else f"once {a.needed} of {len(a.parties)} " \
        f"parties ({', '.join(a.parties)}) have joined"


def _commitment(led: Ledger, ident: str) -> Commitment:
    """The commitment as proposed in ``led``, else from a bundled name or file."""
    from scalegate.commitments import bundled_commitments, load_commitment
    from scalegate.commitments.joining import find_commitment
    from scalegate.errors import CommitmentError

    found = find_commitment(led, ident)
    if found is not None:
        return found[1]
    if Path(ident).exists() or ident in bundled_commitments():
        return load_commitment(ident)
    raise CommitmentError(
        f"this ledger holds no proposal of commitment {ident!r}, and there is no such file "
        "or bundled commitment", hint="Give the commitment's file (its document, as "
        "proposed: a withdrawal or endorsement names it by digest), or a bundled name: "
        + ", ".join(bundled_commitments()) + ".")

__all__ = ["app"]
