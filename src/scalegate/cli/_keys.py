"""`scalegate keys ...`: make and inspect Ed25519 signing keys (C2SP signed-note format)."""

from __future__ import annotations

from pathlib import Path

import typer

from scalegate.cli._console import console, err_console
from scalegate.errors import KeyMaterialError

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
    from scalegate.ledger import SigningKey

    path = out or default_key_path(name)
    if path.is_dir():
        raise KeyMaterialError(
            f"{path} is a directory, not a key file.",
            hint=f"Give a file path with --out, e.g. --out {path / default_key_path(name)}.",
        )
    if path.exists() and not overwrite:
        # Checked here too so the hint names the flag, not the library's argument.
        raise KeyMaterialError(
            f"key file {path} already exists; refusing to overwrite it.",
            hint="Choose another path with --out, or pass --overwrite if you mean to replace "
            "it (the old key is then lost).",
        )
    key = SigningKey.generate(name)
    key.save(path, overwrite=overwrite)
    console.print(f"wrote private key {key.vkey.keyid} to {path} (mode 0600); keep it secret.",
                  highlight=False, soft_wrap=True)
    console.print("verifier key (share it):", highlight=False)
    # The verifier key is the last line of standard output, unwrapped, so scripts can take it.
    print(key.vkey.text(), flush=True)


@app.command("show")
def show(
    key_file: Path = typer.Argument(
        ..., help="A private key file written by `keys new` (or a verifier key file)."),
) -> None:
    """Print the verifier key of a private key file (refuses loose file permissions).

    Given a verifier (public) key file instead, print the verifier key it holds.
    """
    from scalegate.ledger import (
        SigningKey,
        verifier_key_in,
    )

    public = verifier_key_in(key_file)
    if public is not None:
        err_console.print(f"note: {key_file} is a verifier (public) key file; showing the key "
                          "it holds.", highlight=False, soft_wrap=True)
        print(public.text(), flush=True)
        return
    key = SigningKey.load(key_file)
    print(key.vkey.text(), flush=True)
