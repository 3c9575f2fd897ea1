"""The ``scalegate`` command line (Typer). Each command group lives in its own module."""

from __future__ import annotations

import sys

import typer

from scalegate.cli._console import err_console, print_error
from scalegate.errors import ScalegateError

app = typer.Typer(
    name="scalegate",
    help="Responsible scaling policies as running software: compute, evaluations, "
    "automatic pauses, and a signed transparency ledger anyone can verify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Imported here so `scalegate --help` stays fast and each group owns its module.
    from scalegate.cli import (
        _commitment,
        _compute,
        _demo,
        _keys,
        _ledger,
        _org,
        _policy,
        _registry,
        _report,
        _runs,
        _serve,
        _transcript,
        _trust,
        _verify,
        _witness,
    )

    app.add_typer(_keys.app, name="keys")
    app.add_typer(_ledger.app, name="ledger")
    app.add_typer(_policy.app, name="policy")
    app.add_typer(_compute.app, name="compute")
    app.command("demo")(_demo.demo)
    _runs.register(app)
    app.add_typer(_trust.app, name="trust")
    app.command("verify")(_verify.verify)
    app.command("report")(_report.report)
    app.add_typer(_witness.app, name="witness")
    app.command("serve")(_serve.serve)
    app.add_typer(_registry.app, name="registry")
    app.add_typer(_commitment.app, name="commitment")
    app.add_typer(_org.app, name="org")
    app.add_typer(_transcript.app, name="transcript")


_register()


def main() -> None:
    """Console-script entry point: expected errors become a message and an exit code."""
    try:
        app()
    except ScalegateError as exc:
        print_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
