"""`scalegate demo`: train a tiny model under the demo policy, pause, approve, resume, verify."""

from __future__ import annotations

from pathlib import Path

import typer

from scalegate.cli._console import console
from scalegate.errors import ScalegateError


def demo(
    dir: Path = typer.Option(Path("demo-workspace"), "--dir", help="Workspace to create "
                             "(keys, ledger, checkpoints); an earlier demo's is replaced."),
    steps: int | None = typer.Option(None, "--steps", min=10, help="Training budget in "
                                     "optimizer steps (default: the calibrated demo budget)."),
    seed: int | None = typer.Option(None, "--seed", help="Training seed (default: the "
                                    "calibrated demo seed, for which the run pauses)."),
    until_pause: bool = typer.Option(False, "--until-pause", help="Stop once the run has "
                                     "paused itself, to continue by hand with the CLI."),
    live: bool = typer.Option(True, "--live/--no-live", help="Live display (off: plain log)."),
) -> None:
    """Train a small transformer on the CPU under the bundled `demo` policy.

    It is evaluated at the policy's compute milestones (through Inspect AI), pauses itself
    when the stand-in dangerous capability reaches its trigger without the required
    safeguard, and resumes from the paused checkpoint only after the CISO attests and the
    RSO and a board member approve. Ends by verifying the ledger and replaying decisions.
    """
    try:
        from scalegate.demo.run import DemoOptions, run_demo
    except ImportError as exc:
        raise ScalegateError(
            f"the demo needs the torch and inspect extras ({exc.name} is missing).",
            hint="Install with `pip install 'scalegate[torch,inspect]'` or run `make demo`.",
        ) from None
    ok = run_demo(DemoOptions(dir=dir, steps=steps, seed=seed, until_pause=until_pause,
                              live=live), console)
    raise typer.Exit(0 if ok else 1)
