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
    serve: bool = typer.Option(False, "--serve", help="Then serve the demo's log and a "
                               "registry following it, and print the pause page's address "
                               "(until Ctrl-C)."),
    listen: str = typer.Option("127.0.0.1:8000", "--listen", help="With --serve: the "
                               "registry's HOST:PORT (the log is served on the next port)."),
    joint: bool = typer.Option(False, "--joint", help="Instead: three labs and a joint "
                               "commitment (in joint-demo/ unless --dir is given): they join, "
                               "one trains past it, one signs as another's CEO, one leaves, "
                               "one goes unwitnessed."),
) -> None:
    """Train a small transformer on the CPU under the bundled `demo` policy.

    It is evaluated at the policy's compute milestones (through Inspect AI), pauses itself
    when the stand-in dangerous capability reaches its trigger without the required
    safeguard, and resumes from the paused checkpoint only after the CISO attests and the
    RSO and a board member approve. Ends by verifying the ledger and replaying decisions.
    """
    if joint:
        _joint(Path("joint-demo") if dir == Path("demo-workspace") else dir)
        return
    try:
        from scalegate.demo.run import DemoOptions, run_demo
    except ImportError as exc:
        raise ScalegateError(
            f"the demo needs the torch and inspect extras ({exc.name} is missing).",
            hint="Install with `pip install 'scalegate[torch,inspect]'` or run `make demo`.",
        ) from None
    ok = run_demo(DemoOptions(dir=dir, steps=steps, seed=seed, until_pause=until_pause,
                              live=live), console)
    if ok and serve:
        _serve_demo(dir, listen)
    raise typer.Exit(0 if ok else 1)


def _joint(root: Path) -> None:
    """The three-lab story (:mod:`scalegate.commitments.scenario`), step by step."""
    from rich.rule import Rule

    from scalegate.cli._commitment import _show

    try:
        from scalegate.commitments.scenario import run_joint_demo
    except ImportError as exc:
        raise ScalegateError(f"the joint demo needs the torch extra ({exc.name} is missing).",
                             hint="Run `make demo` first, or `pip install 'scalegate[torch]'`."
                             ) from None

    def say(what: str, status: object) -> None:
        console.print(Rule(what, style="dim"))
        _show(status)  # type: ignore[arg-type]

    run_joint_demo(root, say)
    console.print(f"the three ledgers and trust files are in {root}/; see for yourself: "
                  f"scalegate commitment status three-labs-pause "
                  + " ".join(f"--ledger {root}/{o}/ledger.db --trust {root}/{o}/trust.yaml"
                             for o in ("lab-a", "lab-b", "lab-c")), highlight=False)


def _serve_demo(workspace: Path, listen: str) -> None:
    """Serve the demo's log (the next port) and a registry following it (``listen``)."""
    import subprocess
    import sys
    import time
    import urllib.request

    from scalegate.cli._serve import listen_address

    host, port = listen_address(listen)
    log_url = f"http://{host}:{port + 1}/"
    exe = str(Path(sys.executable).with_name("scalegate"))
    log = subprocess.Popen([exe, "serve", "--ledger", str(workspace / "ledger.db"),
                            "--listen", f"{host}:{port + 1}"])
    try:
        deadline = time.monotonic() + 30
        while True:  # the log answers before the registry first fetches it
            try:
                urllib.request.urlopen(log_url + "checkpoint", timeout=2).read()
                break
            except OSError:
                if log.poll() is not None or time.monotonic() > deadline:
                    raise ScalegateError(f"the demo's log could not be served on "
                                         f"{host}:{port + 1}.") from None
                time.sleep(0.2)
        config = workspace / "registry.yaml"
        config.write_text(f"logs:\n  - name: demo-lab\n    url: {log_url}\n"
                          "    trust: trust.yaml\ninterval: 10s\n")
        _print_pause_page(config, host, port)
        from scalegate.cli._registry import serve as registry_serve

        registry_serve(config=config, db=None, workdir=None, listen=listen)
    finally:
        log.terminate()
        log.wait(timeout=20)


def _print_pause_page(config: Path, host: str, port: int) -> None:
    """Follow the log once, then say where its pause's page is."""
    from scalegate.registry import Monitor, RegistryStore, load_config

    store = RegistryStore(config.parent / "registry.db")
    try:
        Monitor(load_config(config), store, config.parent / "registry-mirrors").check_all()
        g = store.log("demo-lab")
        pauses = [(r["run_id"], p["index"]) for r in (g.audit.get("runs", []) if g else [])
                  for p in r.get("pauses", [])]
    finally:
        store.close()
    base = f"http://{host}:{port}"
    console.print(f"registry: {base}/" + "".join(
        f"\npause of {run}: {base}/logs/demo-lab/runs/{run}/pauses/{i}" for run, i in pauses),
        highlight=False, soft_wrap=True)
