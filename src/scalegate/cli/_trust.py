"""`scalegate trust init`: write an auditor's trust file from what the auditor chooses to
trust (organisation roots, witnesses, a quorum), with the log read from the ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from scalegate.cli._arguments import key_text
from scalegate.cli._console import err_console
from scalegate.errors import ScalegateError, TrustFileError

app = typer.Typer(help="The auditor's trust file: what `scalegate verify` believes unchecked.",
                  no_args_is_help=True)


def _roles(rules: list[str]) -> dict[str, list[str]]:
    """``KIND[,KIND...]=ROLE[,ROLE...]`` rules as the trust file's ``roles`` mapping."""
    out: dict[str, list[str]] = {}
    for rule in rules:
        kinds, sep, held = rule.partition("=")
        names = [r.strip() for r in held.split(",") if r.strip()]
        which = [k.strip() for k in kinds.split(",") if k.strip()]
        if not sep or not which or not names:
            raise TrustFileError(f"--role {rule!r} is not KIND=ROLE[,ROLE...].",
                                 hint="E.g. --role decision=trainer --role policy=rso,board.")
        for kind in which:
            got = out.setdefault(kind, [])
            got.extend(n for n in names if n not in got)
    return out


def init(
    org_root: list[str] = typer.Option(
        ..., "--org-root", help="An organisation root verifier key you trust (text, or a file "
        "whose last line is one); repeatable."),
    witness: list[str] = typer.Option(
        [], "--witness", help="A witness's cosignature key you trust (what `scalegate witness "
        "init` prints; text or file); repeatable."),
    quorum: int | None = typer.Option(
        None, "--quorum", min=0, help="How many of the witnesses must cosign (default: 1)."),
    role: list[str] = typer.Option(
        [], "--role", help="Who may sign statements of a kind, KIND[,KIND]=ROLE[,ROLE] (e.g. "
        "policy=rso,board); repeatable."),
    log: str | None = typer.Option(
        None, "--log", help="The log's verifier key as its operator publishes it; it must be "
        "the ledger's (default: read from the ledger)."),
    ledger: str | None = typer.Option(
        None, "--ledger", "-l", show_default=False,
        help="Ledger file or URL (default: $SCALEGATE_LEDGER, else ./scalegate.db)."),
) -> None:
    """Print a trust file (YAML) for `scalegate verify --trust`: the ledger's log (origin and
    checkpoint key) and the roots, witnesses and quorum given here.

      scalegate trust init --ledger lab.db --org-root acme-root.pub \\
          --witness "$WITNESS_VKEY" > trust.yaml
    """
    from scalegate.audit import trust_for
    from scalegate.cli._ledger import _open, _vkey
    from scalegate.ledger import CosignatureVerifier

    roots = [_vkey(r, "--org-root") for r in org_root]
    witnesses = []
    for w in witness:
        text = key_text(w)
        try:
            witnesses.append(CosignatureVerifier.parse(text))
        except ScalegateError as exc:
            raise TrustFileError(f"--witness {w[:60]!r}: {exc.message}", hint="Give the key "
                                 "`scalegate witness init` printed (name+hexid+base64).") from None
    with _open(ledger) as led:
        origin, log_key, admitted, where = led.origin, led.log_vkey, led.org_roots, led.path
    if log is not None and _vkey(log, "--log") != log_key:
        raise TrustFileError(
            f"--log {_vkey(log, '--log').keyid} is not the key ledger {where} is signed with "
            f"({log_key.keyid}): this ledger is not the log you meant to audit, or its "
            "operator published another key.", hint="Check with the log's operator.")
    trust = trust_for(origin, log_key, roots, witnesses=witnesses, quorum=quorum,
                      roles=_roles(role))
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    source = "given with --log and matching" if log is not None else "read from"
    print(f"# trust file for log {origin}, written by `scalegate trust init` on {stamp}.\n"
          f"# The log key was {source} the ledger {where}: compare it with the key the\n"
          f"# log's operator publishes before relying on this file.")
    print(trust.to_yaml(), end="", flush=True)
    foreign = [r.keyid for r in roots if r not in admitted]
    if foreign:
        err_console.print(f"note: ledger {where} admits keys registered by other roots; "
                          f"{', '.join(foreign)} registered nothing in it.", highlight=False,
                          soft_wrap=True)
    if not witnesses:
        err_console.print("note: no witness is trusted, so the log's own checkpoint anchors the "
                          "audit and every time in it is the log operator's word (add "
                          "--witness KEY).", highlight=False, soft_wrap=True)


app.command("init")(init)
