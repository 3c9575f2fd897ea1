"""Shared rich consoles and the one way errors are shown to a person."""

from __future__ import annotations

from rich.console import Console, ConsoleDimensions
from rich.text import Text

from scalegate.errors import PolicyError, ScalegateError


class _PlainWhenPiped(Console):
    """A console that, when its output is not a terminal (a pipe, a file), lays lines out
    unwrapped: ``scalegate policy list | grep ...`` sees whole names, not ones cut at 80
    columns. ``COLUMNS`` still sets a width where given."""

    @property
    def size(self) -> ConsoleDimensions:
        if self.is_terminal or self._width is not None or "COLUMNS" in self._environ:
            return super().size
        return ConsoleDimensions(_UNWRAPPED, super().size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


_UNWRAPPED = 1_000  # wide enough for any line a listing prints, small enough for rich's layout

console = _PlainWhenPiped()
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
