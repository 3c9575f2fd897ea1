"""`scalegate registry check | serve`: follow labs' public logs, audit them as they grow,
and publish what was found."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from scalegate.cli._console import console

if TYPE_CHECKING:
    from scalegate.registry import Monitor, RegistryStore

app = typer.Typer(help="The public registry: follow labs' logs, audit them, publish the "
                  "findings (a configuration names each log and its trust file).",
                  no_args_is_help=True)

ConfigOpt = typer.Option(..., "--config", "-c", help="The registry configuration (YAML): "
                         "logs: [{name, url, trust}], interval, stale_after.")
DbOpt = typer.Option(None, "--db", help="The registry's database: a file or a database URL "
                     "(default: registry.db beside the configuration).")
WorkOpt = typer.Option(None, "--workdir", help="Where the mirrors and audit state live "
                       "(default: registry-mirrors/ beside the configuration).")


def _open(config: Path, db: str | None, workdir: Path | None) -> tuple[Monitor, RegistryStore]:
    from scalegate.registry import Monitor, RegistryStore, load_config

    cfg = load_config(config)
    store = RegistryStore(db or config.parent / "registry.db")
    return Monitor(cfg, store, workdir or config.parent / "registry-mirrors"), store


@app.command("check")
def check(config: Path = ConfigOpt, db: str | None = DbOpt,
          workdir: Path | None = WorkOpt) -> None:
    """Check every followed log once (sync, verify, audit) and print each one's status.

    Exits 3 when any log shows violations or a split view, else 4 when any could not be
    verified (unreachable, stale, unwitnessed, invalid, unverifiable), else 0."""
    from rich.table import Table

    monitor, store = _open(config, db, workdir)
    try:
        monitor.check_all()
        monitor.keep_folds()  # the next check goes on from this one's audit
        table = Table(title="followed logs", title_justify="left")
        for col in ("log", "status", "size", "verified", "witnessed", "problem"):
            table.add_column(col, overflow="fold")
        codes = set()
        for g in store.logs():
            table.add_row(g.name, g.status, f"{g.size:,}", g.verified_at or "-",
                          g.witnessed_at or "-", g.problem[:200])
            codes.add(_exit_code(g.status))
    finally:
        store.close()
    console.print(table)
    raise typer.Exit(3 if 3 in codes else max(codes, default=0))  # violations first


def _exit_code(status: str) -> int:
    if status == "verified":
        return 0
    return 3 if status in ("violations", "split-view") else 4


@app.command("serve")
def serve(config: Path = ConfigOpt, db: str | None = DbOpt, workdir: Path | None = WorkOpt,
          listen: str = typer.Option("127.0.0.1:8000", "--listen", help="HOST:PORT to serve "
                                     "the pages and the API on.")) -> None:
    """Follow the logs (every `interval`, in the background) and serve what was found: the
    pages (/, /logs/NAME, runs, pauses), the JSON API (/api/...) and an Atom feed."""
    import threading

    from scalegate.cli._serve import listen_address, server_extra

    server_extra()
    import uvicorn

    from scalegate.registry.web import create_registry_app

    host, port = listen_address(listen)
    monitor, store = _open(config, db, workdir)
    stop = threading.Event()
    follower = threading.Thread(target=monitor.run, args=(stop,), daemon=True)
    follower.start()
    console.print(f"registry: following {len(monitor.config.logs)} log(s); pages at "
                  f"http://{host}:{port}/", highlight=False)
    try:
        app = create_registry_app(store, monitor.workdir)
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                      access_log=False)).run()
    finally:
        stop.set()
        follower.join(timeout=30)
        store.close()
