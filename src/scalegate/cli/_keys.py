"""`scalegate keys ...`: make and inspect Ed25519 signing keys (C2SP signed-note format)."""

from __future__ import annotations

from pathlib import Path

import typer

from scalegate.cli._console import console

app = typer.Typer(
    help="Make and inspect Ed25519 signing keys (private key files are written with mode 0600).",
    no_args_is_help=True,
)


def default_key_path(name: str) -> Path:
    """``acme/trainer`` -> ``./acme-trainer.key``."""
    return Path(name.replace("/", "-") + ".key")


@app.command("new")
def new(
    name: str = typer.Argument(..., help="Key name, 'org/person-or-service' (e.g. acme/trainer)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Private key file to write (default: ./NAME.key, '/' -> '-')."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing key file."),
) -> None:
    """Generate a key; write the private key file (0600) and print the verifier key last."""
    from scalegate.ledger.keys import SigningKey

    key = SigningKey.generate(name)
    path = out or default_key_path(name)
    key.save(path, overwrite=overwrite)
    console.print(f"wrote private key {key.vkey.keyid} to {path} (mode 0600); keep it secret.",
                  highlight=False, soft_wrap=True)
    console.print("verifier key (share it):", highlight=False)
    # The verifier key is the last line of standard output, unwrapped, so scripts can take it.
    print(key.vkey.text(), flush=True)


@app.command("show")
def show(
    key_file: Path = typer.Argument(..., help="A private key file written by `keys new`."),
) -> None:
    """Print the verifier key of a private key file (refuses loose file permissions)."""
    from scalegate.ledger.keys import SigningKey

    key = SigningKey.load(key_file)
    print(key.vkey.text(), flush=True)
