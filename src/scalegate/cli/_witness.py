"""`scalegate witness ...`: a C2SP tlog-witness that keeps its own state and cosigns checkpoints
that extend what it cosigned before (and refuses, with evidence, those that do not).

Exit status: 0 cosigned, 3 split view detected (evidence kept in the state file),
1 any other refusal or error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from scalegate.cli._arguments import key_text
from scalegate.cli._console import console, err_console, print_error
from scalegate.errors import KeyMaterialError, LedgerError, ScalegateError
from scalegate.units import counted

app = typer.Typer(
    help="A transparency-log witness (C2SP tlog-witness add-checkpoint): verifies the log's "
    "signature and consistency with what it cosigned before, then cosigns. Exit status: 0 "
    "cosigned; 3 refused as a split view (evidence kept in the state file); 1 any other "
    "refusal (a conflict: 409, a bad request) or error.",
    no_args_is_help=True,
)

StateOpt = typer.Option(..., "--state", help="The witness's state file (JSON).")


def _log_key(text: str) -> str:
    """A verifier key given as text, or as a file whose last non-empty line is one."""
    from scalegate.ledger import VerifierKey

    try:
        return VerifierKey.parse(key_text(text)).text()
    except KeyMaterialError as exc:
        raise KeyMaterialError(f"--log: {exc.message}", hint=exc.hint) from None


def _fail(exc: ScalegateError) -> typer.Exit:
    print_error(exc)
    return typer.Exit(exc.exit_code)


@app.command("init")
def init(
    key: Path = typer.Option(..., "--key", help="The witness's private key file."),
    log: list[str] = typer.Option(
        ..., "--log", help="A log's verifier key (text or file) to witness; repeatable."),
    origin: str | None = typer.Option(
        None, "--origin", help="The log's checkpoint origin when it is not the key's name "
        "(only with a single --log)."),
    state: Path = StateOpt,
) -> None:
    """Start a witness for the given logs; print its cosignature key (for trust files)."""
    from scalegate.audit import Witness
    from scalegate.ledger import VerifierKey

    try:
        keys = [VerifierKey.parse(_log_key(t)) for t in log]
        if origin is not None and len(keys) != 1:
            raise KeyMaterialError("--origin names the origin of a single --log; give one.")
        logs = {origin or k.name: k for k in keys}
        witness = Witness.create(state, key, logs)
    except ScalegateError as exc:
        raise _fail(exc) from None
    console.print(f"witness {witness.verifier.keyid} now witnesses "
                  f"{', '.join(sorted(logs))}; state in {state}.", highlight=False,
                  soft_wrap=True)
    print(witness.verifier.text(), flush=True)


@app.command("cosign")
def cosign(
    ledger: Path = typer.Option(..., "--ledger", "-l", help="The ledger to witness."),
    state: Path = StateOpt,
    attach: bool = typer.Option(
        True, "--attach/--no-attach",
        help="Also store the cosignature with the ledger's checkpoint (so receipts carry it)."),
) -> None:
    """Cosign the ledger's latest checkpoint if consistent; print the cosigned checkpoint."""
    from scalegate.audit import (
        Witness,
        witness_ledger,
    )
    from scalegate.ledger import Checkpoint, Ledger, parse_note

    try:
        witness = Witness.open(state)
        with Ledger.open(ledger) as led:
            note = witness_ledger(led, witness, attach=attach)
            size = led.size
    except ScalegateError as exc:
        raise _fail(exc) from None
    sys.stdout.write(note)
    sys.stdout.flush()
    covered = Checkpoint.parse(parse_note(note)[0]).size
    if size > covered:
        err_console.print(f"note: cosigned the log's latest checkpoint, of size {covered}; "
                          f"the log holds {counted(size - covered, 'later entries')} beyond "
                          "it, covered once it issues a new checkpoint (`scalegate ledger "
                          "checkpoint`).", highlight=False, soft_wrap=True)


@app.command("add-checkpoint")
def add_checkpoint(
    state: Path = StateOpt,
    request: Path = typer.Argument(
        Path("-"), help="The add-checkpoint request body ('-': standard input)."),
) -> None:
    """Answer one C2SP add-checkpoint request: print cosignature line(s), or refuse.

    A conflict (the spec's 409) prints the size this witness last cosigned.
    """
    from scalegate.audit import Witness
    from scalegate.errors import WitnessConflict

    try:
        body = sys.stdin.buffer.read() if str(request) == "-" else request.read_bytes()
        response = Witness.open(state).add_checkpoint_request(body)
    except WitnessConflict as exc:
        print(exc.size, flush=True)
        raise _fail(exc) from None
    except OSError as exc:
        err_console.print(f"[bold red]error:[/bold red] cannot read {request}: {exc}")
        raise typer.Exit(1) from None
    except ScalegateError as exc:
        raise _fail(exc) from None
    sys.stdout.write(response)
    sys.stdout.flush()


@app.command("request")
def request(
    ledger: Path = typer.Option(..., "--ledger", "-l", help="The log's ledger."),
    old: int = typer.Option(..., "--old", help="The size the witness last cosigned (0: none; "
                            "a witness that refuses with 409 prints it)."),
) -> None:
    """Print the C2SP add-checkpoint request the log sends a witness: its latest checkpoint
    and the consistency proof from size --old (answer it with `witness add-checkpoint`)."""
    from scalegate.audit import format_add_checkpoint
    from scalegate.ledger import Checkpoint, Ledger, parse_note

    try:
        with Ledger.open(ledger) as led:
            note = led.latest_checkpoint()
            if note is None:
                raise LedgerError(f"ledger {led.path} has issued no checkpoint yet.",
                                       hint="Issue one with `scalegate ledger checkpoint`.")
            size = Checkpoint.parse(parse_note(note)[0]).size
            if not 0 <= old <= size:
                raise LedgerError(f"--old {old} is not a size up to the latest "
                                       f"checkpoint's ({size}).")
            proof = led.consistency_proof(old, size) if 0 < old < size else []
    except ScalegateError as exc:
        raise _fail(exc) from None
    sys.stdout.write(format_add_checkpoint(old, proof, note))
    sys.stdout.flush()


@app.command("show")
def show(state: Path = StateOpt) -> None:
    """Show what this witness cosigned, per log, and any split-view evidence."""
    from scalegate.audit import Witness

    try:
        witness = Witness.open(state)
        evidence = witness.evidence()
    except ScalegateError as exc:
        raise _fail(exc) from None
    console.print(f"witness {witness.verifier.text()}", highlight=False, soft_wrap=True)
    for origin in sorted(witness.logs):
        rec = witness.latest(origin)
        seen = "nothing cosigned yet" if rec is None else (
            f"size {rec.size}, root {rec.root_hash.hex()[:16]}…, cosigned {rec.cosigned_at}")
        console.print(f"  {origin}: {seen}", highlight=False, soft_wrap=True)
    if evidence:
        proven = sum(1 for item in evidence if item.get("conclusive", True))
        records = counted(len(evidence), "split-view evidence records")
        console.print(f"[bold red]{records}[/bold red] ({proven} conclusive, "
                      f"{len(evidence) - proven} unproven: a consistency proof that did not "
                      "verify):", highlight=False)
        for item in evidence[-5:]:
            tag = "" if item.get("conclusive", True) else " [unproven]"
            console.print(f"  {item['detected_at']} {item['origin']}{tag}: {item['reason']}",
                          highlight=False, soft_wrap=True)


@app.command("serve")
def serve(
    state: Path = StateOpt,
    listen: str = typer.Option("127.0.0.1:8090", "--listen",
                               help="Address to listen on, HOST:PORT."),
    key: Path | None = typer.Option(None, "--key", help="The witness's private key file "
                                    "(default: the one recorded in the state)."),
) -> None:
    """Serve this witness over HTTP: C2SP tlog-witness POST /add-checkpoint."""
    from scalegate.audit import Witness
    from scalegate.cli._serve import listen_address, run_server, server_extra
    from scalegate.ledger import SigningKey

    create_witness_app = server_extra().create_witness_app
    host, port = listen_address(listen)
    witness = Witness.open(state, key=SigningKey.load(key) if key else None)
    err_console.print(f"witness {witness.verifier.name} at http://{host}:{port}/")
    run_server(create_witness_app(witness), host, port)
