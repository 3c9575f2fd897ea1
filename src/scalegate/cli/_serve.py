"""`scalegate serve`: the ledger as a public C2SP tlog-tiles log over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from scalegate.cli._arguments import key_text
from scalegate.cli._console import err_console
from scalegate.errors import ScalegateError

if TYPE_CHECKING:
    from scalegate.server import HttpWitness, WitnessPolicy

_LISTEN_HELP = "Address to listen on, HOST:PORT (default 127.0.0.1:8080; 0.0.0.0 for all)."


def listen_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) -> ``(host, port)``; a clear error otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ScalegateError(f"--listen {text!r} is not HOST:PORT.",
                             hint="For example --listen 127.0.0.1:8080.")
    return host, int(port)


def serve(
    ledger: str = typer.Option(None, "--ledger", "-l", show_default=False,
                               help="Ledger file or database URL (default: $SCALEGATE_LEDGER, "
                               "else ./scalegate.db)."),
    listen: str = typer.Option("127.0.0.1:8080", "--listen", help=_LISTEN_HELP),
    log_key: Path | None = typer.Option(None, "--log-key", help="The log's private key file, "
                                        "to sign checkpoints (default: the one recorded at "
                                        "init)."),
    checkpoint_interval: str = typer.Option("1s", "--checkpoint-interval", help="Sign a "
                                            "checkpoint at most this often while entries "
                                            "arrive (e.g. 1s, 10s, 1min)."),
    rate_limit: str | None = typer.Option(None, "--rate-limit", help="Submissions per second "
                                          "per signer, with bursts of twice that (e.g. 100)."),
    witness: list[str] = typer.Option([], "--witness", help="A witness that cosigns before a "
                                      "checkpoint is published: URL=KEY (KEY: its cosignature "
                                      "key, or a file whose last line is it); repeatable."),
    witness_quorum: int | None = typer.Option(None, "--witness-quorum", min=1, help="How many "
                                              "of the witnesses must cosign (default: all)."),
    witness_timeout: str = typer.Option("10s", "--witness-timeout", help="How long to wait "
                                        "for the witnesses each round; short of the quorum, "
                                        "the previous checkpoint stays published."),
) -> None:
    """Serve the ledger as a public log: C2SP tlog-tiles for reading (/checkpoint,
    /tile/...), POST /add for signed statements, /log.vkey and an index page."""
    create_app = server_extra().create_app
    from scalegate.cli._remote import is_url
    from scalegate.ledger import default_ledger_path
    from scalegate.units import parse_duration

    if ledger is not None and is_url(ledger):
        raise ScalegateError(f"--ledger {ledger} is a log served already; `serve` serves a "
                             "ledger file or database the log key signs for.",
                             hint="To keep a copy of a served log: `scalegate ledger sync URL "
                             "mirror.db`; to republish it as files: `scalegate ledger "
                             "publish-tiles DIR --ledger URL`.")
    host, port = listen_address(listen)
    try:
        interval = parse_duration(checkpoint_interval)
    except ValueError as exc:
        raise ScalegateError(f"--checkpoint-interval {checkpoint_interval!r}: {exc}",
                             hint="For example --checkpoint-interval 1s.") from None
    limit = None
    if rate_limit is not None:
        try:
            per_second = float(rate_limit)
            if not 0 < per_second < float("inf"):
                raise ValueError
        except ValueError:
            raise ScalegateError(f"--rate-limit {rate_limit!r} is not a positive number of "
                                 "submissions per second.", hint="For example --rate-limit "
                                 "100.") from None
        limit = (per_second, max(1.0, 2 * per_second))
    policy = _witness_policy(witness, witness_quorum, witness_timeout)
    app = create_app(ledger if ledger is not None else default_ledger_path(), log_key=log_key,
                     checkpoint_interval=interval, rate_limit=limit, witnesses=policy)
    err_console.print(f"serving {app.state.ledger.origin} ({app.state.ledger.size:,} entries) "
                      f"at http://{host}:{port}/")
    run_server(app, host, port)


def server_extra() -> Any:
    """``scalegate.server``, or a clear message when the server extra is not installed."""
    try:
        import uvicorn  # noqa: F401  (what the commands run the app with)

        import scalegate.server
    except ImportError as exc:
        raise ScalegateError(
            f"serving needs the server extra ({exc.name} is missing).",
            hint="Install with `pip install 'scalegate[server]'`.") from None
    return scalegate.server


def run_server(app: Any, host: str, port: int) -> None:
    """Run an ASGI app with uvicorn until interrupted; a clear error if it cannot listen."""
    import uvicorn

    # A slow or stuck client cannot keep the server from stopping, nor take every slot.
    config = uvicorn.Config(app, host=host, port=port, log_level="critical", access_log=False,
                            timeout_graceful_shutdown=5, limit_concurrency=2048,
                            proxy_headers=False)  # it answers clients directly
    server = uvicorn.Server(config)
    try:
        server.run()
    except OSError as exc:
        raise ScalegateError(f"cannot listen on {host}:{port}: {exc.strerror or exc}.",
                             hint="Pick another --listen address or port.") from None
    except SystemExit:  # uvicorn exits when it cannot start (it has logged why)
        if server.started:
            raise
    if not server.started:
        raise ScalegateError(f"cannot listen on {host}:{port} (in use, or not this "
                             "machine's address).", hint="Pick another --listen port.")


def _witness_policy(specs: list[str], quorum: int | None, timeout: str
                    ) -> WitnessPolicy | None:
    """The ``--witness URL=KEY`` options as a witness policy (``None`` without witnesses)."""
    from scalegate.ledger import CosignatureVerifier
    from scalegate.server import HttpWitness, WitnessPolicy
    from scalegate.units import parse_duration

    if not specs:
        if quorum is not None:
            raise ScalegateError("--witness-quorum without --witness.",
                                 hint="Name the witnesses: --witness URL=KEY.")
        return None
    witnesses: list[HttpWitness] = []
    for spec in specs:
        url, sep, key = spec.partition("=")
        if not sep or not url.startswith(("http://", "https://")) or not key:
            raise ScalegateError(f"--witness {spec[:80]!r} is not URL=KEY.", hint="For example "
                                 "--witness http://127.0.0.1:9001/=w1.pub.")
        try:
            verifier = CosignatureVerifier.parse(key_text(key))
        except ScalegateError as exc:
            raise ScalegateError(f"--witness {spec[:80]!r}: {exc.message}", hint="Give the key "
                                 "`scalegate witness init` printed (or its file).") from None
        if any(w.verifier.keyid == verifier.keyid or w.url.rstrip("/") == url.rstrip("/")
               for w in witnesses):
            raise ScalegateError(f"--witness {spec[:80]!r} names a witness (URL or key) "
                                 "already named: each counts once towards the quorum.")
        witnesses.append(HttpWitness(url, verifier))
    if quorum is not None and quorum > len(witnesses):
        raise ScalegateError(f"--witness-quorum {quorum} is more than the "
                             f"{len(witnesses)} witnesses named.")
    try:
        seconds = parse_duration(timeout).total_seconds()
    except ValueError as exc:
        raise ScalegateError(f"--witness-timeout {timeout!r}: {exc}") from None
    for w in witnesses:
        w.timeout_s = seconds
    return WitnessPolicy(witnesses, quorum or len(witnesses), timeout_s=seconds)
