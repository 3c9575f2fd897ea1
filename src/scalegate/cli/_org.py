"""`scalegate org verify-domain`: bind an organisation to its domain, in a log."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from scalegate.cli._console import console
from scalegate.cli._ledger import LedgerOpt

app = typer.Typer(help="Organisations: check the root keys an organisation serves at its "
                  "domain, and record what was seen.", no_args_is_help=True)


@app.command("verify-domain")
def verify_domain(
    domain: str = typer.Argument(..., help="The organisation's domain (acme.example, or "
                                 "host:port)."),
    key: Path = typer.Option(..., "--key", "-k", help="Your private key file (a key "
                             "registered in the ledger): you sign what you saw."),
    ledger: str | None = LedgerOpt,
    ca: Path | None = typer.Option(None, "--ca", help="A CA certificate file to check the "
                                   "domain's certificate with (default: the system's)."),
) -> None:
    """Fetch https://DOMAIN/.well-known/scalegate.json over HTTPS, check it, and log what it
    says (the organisation, its root keys, the time, the TLS certificate's digest) as a
    statement you sign. Verifiers who trust your log then know those roots as the
    organisation's (`scalegate commitment status`)."""
    from scalegate.cli._ledger import _open
    from scalegate.commitments.domain import check_domain
    from scalegate.ledger import SigningKey, sign_statement

    seen = check_domain(domain, cafile=ca)
    signer = SigningKey.load(key)
    with _open(ledger) as led:
        got = led.append(sign_statement(seen, signer))
    console.print(f"{escape(domain)} serves {len(seen.roots)} root key(s) of "
                  f"{escape(seen.org)}: {', '.join(r.rsplit('+', 1)[0] for r in seen.roots)}; "
                  f"recorded as entry {got.index} (certificate sha256 "
                  f"{seen.tls_certificate_sha256[:16]}…)", highlight=False)
