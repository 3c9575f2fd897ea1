"""Shared rich consoles and the one way errors are shown to a person."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from scalegate.errors import PolicyError, ScalegateError

console = Console()
err_console = Console(stderr=True)


def print_error(exc: ScalegateError) -> None:
    """Print an expected error as one paragraph (plus listed problems), never a traceback."""
    # Messages are plain text (they may contain brackets): never interpret them as markup.
    err_console.print(
        Text.assemble(("error: ", "bold red"), str(exc)), highlight=False, soft_wrap=True
    )
    if isinstance(exc, PolicyError):
        for where, what in exc.problems:
            err_console.print(
                Text.assemble("  ", (where, "cyan"), f": {what}"), highlight=False, soft_wrap=True
            )
