"""The demo's live view: compute against milestones, evaluations against alert and trigger
lines, the gate's verdict, and what has been written to the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from scalegate.units import sig2

_VERDICT_STYLE = {"continue": "green", "alert": "yellow", "evaluate": "cyan", "pause": "bold red"}


@dataclass
class EvalRow:
    """One evaluation milestone as the view shows it."""

    step: int
    flop: float
    values: dict[str, float | None]


@dataclass
class DemoView:
    """Everything the live display shows; the demo updates it as the run goes."""

    run_id: str
    policy: str
    budget: int
    alert: float
    trigger: float
    dangerous: str
    step: int = 0
    flop: float = 0.0
    next_eval: float | None = None
    ceiling: float | None = None
    verdict: str = "continue"
    reasons: list[str] = field(default_factory=list)
    entries: int = 0
    evals: list[EvalRow] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def event(self, text: str) -> None:
        self.events.append(text)

    def render(self) -> RenderableType:
        return Group(self._header(), self._evaluations(), self._gate(), self._events())

    def _header(self) -> Panel:
        bar = ProgressBar(total=self.budget, completed=self.step, width=40)
        line = Text.assemble(
            ("step ", "dim"), (f"{self.step:>5}/{self.budget}", "bold"), "  ",
        )
        compute = Text.assemble(
            ("compute ", "dim"), (f"{sig2(self.flop)} FLOP", "bold"),
            ("  next evaluation at ", "dim"),
            (sig2(self.next_eval) if self.next_eval else "—", "cyan"),
        )
        if self.ceiling:
            compute.append("  ceiling ", style="dim")
            compute.append(sig2(self.ceiling), style="magenta")
        ledger = Text.assemble(("ledger ", "dim"), (f"{self.entries} signed entries", "bold"))
        grid = Table.grid(padding=(0, 1))
        grid.add_row(line, bar)
        # Full-width lines below the bar: in the grid they would wrap at its first column.
        return Panel(Group(grid, compute, ledger), border_style="blue",
                     title=f"run [bold]{self.run_id}[/] under policy [bold]{self.policy}[/]")

    def _evaluations(self) -> Table:
        table = Table(title="evaluations at compute milestones", title_justify="left",
                      expand=False, show_edge=False)
        table.add_column("step", justify="right")
        table.add_column("FLOP", justify="right")
        table.add_column(f"{self.dangerous}  (alert {self.alert:.2f} / trigger {self.trigger:.2f})")
        table.add_column("general ability", justify="right")
        for row in self.evals[-10:]:
            value = row.values.get(self.dangerous)
            table.add_row(str(row.step), sig2(row.flop), self._bar(value),
                          _fmt(row.values.get("general-ability")))
        return table

    def _bar(self, value: float | None) -> Text:
        """A bar of the score with the alert (┆) and trigger (┃) lines drawn across it."""
        if value is None:
            return Text("failed", style="red")
        width = 30
        filled = round(value * width)
        style = "red" if value >= self.trigger else "yellow" if value >= self.alert else "green"
        marks = {
            round(self.alert * width): ("┆", "yellow"),
            round(self.trigger * width): ("┃", "red"),
        }
        text = Text()
        for i in range(width):
            if i in marks and i >= filled:
                text.append(*marks[i])
            else:
                text.append("█" if i < filled else "░", style=style if i < filled else "dim")
        text.append(f" {value:.2f}", style=style)
        return text

    def _gate(self) -> Panel:
        style = _VERDICT_STYLE.get(self.verdict, "white")
        body = Text(self.verdict.upper(), style=style)
        for r in self.reasons[:4]:
            body.append(f"\n  • {r}", style="default")
        return Panel(body, title="gate", border_style=style.split()[-1])

    def _events(self) -> Text:
        text = Text()
        for e in self.events[-6:]:
            text.append(f"• {e}\n")
        return text


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
