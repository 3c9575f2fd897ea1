"""`scalegate ledger ...`: create a ledger, admit keys, append, checkpoint, time-stamp, show,
prove, verify.

The ledger path is ``--ledger PATH``, else ``$SCALEGATE_LEDGER``, else ``./scalegate.db``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from scalegate.cli._arguments import key_text
from scalegate.cli._console import console, err_console
from scalegate.errors import LedgerError, ScalegateError
from scalegate.units import counted

if TYPE_CHECKING:
    from scalegate.ledger import IntegrityReport, Ledger, VerifierKey

app = typer.Typer(
    help="The signed transparency ledger: keys, entries, checkpoints, proofs, verification.",
    no_args_is_help=True,
)

_LEDGER_HELP = ("Ledger file or database URL, or a log served over HTTP (https://...) "
                "(default: $SCALEGATE_LEDGER, else ./scalegate.db).")
LedgerOpt = typer.Option(None, "--ledger", "-l", help=_LEDGER_HELP, show_default=False)
LogKeyOpt = typer.Option(
    None, "--log-key", help="The log's private key file (default: the one recorded at init)."
)


def _path(ledger: str | None) -> str:
    """The ledger's location: a file, or a database URL (kept as typed: a URL is no path)."""
    from scalegate.ledger import default_ledger_path

    return ledger if ledger is not None else default_ledger_path()


def _open(ledger: str | None, log_key: Path | None = None) -> Ledger:
    """The ledger; a log served over HTTP through its synced mirror (``log_key`` is then
    not used: the log signs its own checkpoints)."""
    from scalegate.cli._remote import is_url, open_location
    from scalegate.ledger import Ledger

    target = _path(ledger)
    if is_url(target):
        return open_location(target)
    return Ledger.open(target, log_key=log_key)


def _vkey(text: str, what: str) -> VerifierKey:
    """A verifier key given as its text, or as a file whose last line is one."""
    from scalegate.ledger import VerifierKey

    try:
        return VerifierKey.parse(key_text(text))
    except ScalegateError as exc:
        raise type(exc)(f"{what}: {exc.message}", hint=exc.hint) from None


def _when(text: str | None, what: str, *, base: datetime) -> datetime | None:
    """An RFC 3339 time, or a duration after ``base`` (``365d``, ``6mo``)."""
    from scalegate.units import parse_duration

    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if t.tzinfo is None:
            raise LedgerError(
                f"{what} {text!r} has no UTC offset; write e.g. 2027-01-01T00:00:00Z."
            )
        return t.astimezone(UTC)
    except ValueError:
        pass
    except OverflowError:  # e.g. 9999-12-31T23:59:59-10:00: past the last date, in UTC
        raise LedgerError(f"{what} {text!r} lies past the year 9999 (UTC).") from None
    try:
        return base + parse_duration(text)
    except ValueError:
        raise LedgerError(
            f"{what} {text!r} is neither an RFC 3339 time (2027-01-01T00:00:00Z) nor a "
            "duration (365d, 6mo, 1y)."
        ) from None


@app.command("init")
def init(
    path: str | None = typer.Argument(None, help=_LEDGER_HELP, show_default=False),
    origin: str = typer.Option(..., "--origin", help="Checkpoint origin, e.g. example.org/log."),
    log_key: Path = typer.Option(..., "--log-key", help="The log's private key file."),
    org_root: list[str] = typer.Option(
        ..., "--org-root", help="An organisation root verifier key (text or file); repeatable."
    ),
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every", min=1, help="Also sign a checkpoint every N entries "
        "appended by a process holding the log key (default: only when it closes)."),
    checkpoint_interval: str | None = typer.Option(
        None, "--checkpoint-interval", help="Also sign one when the latest is this old at an "
        "append (e.g. 10min, 1h)."),
) -> None:
    """Create an empty ledger that admits keys registered by the given organisation roots.

    Every process that appends with the log key at hand (this key file, recorded here)
    signs a checkpoint when it is done, so the log is ready for witnesses and auditors.
    """
    from scalegate.ledger import Ledger
    from scalegate.units import parse_duration

    roots = [_vkey(r, "--org-root") for r in org_root]
    target = _path(path)
    interval = None
    if checkpoint_interval is not None:
        try:
            interval = parse_duration(checkpoint_interval)
        except ValueError:
            raise LedgerError(f"--checkpoint-interval {checkpoint_interval!r} is not a duration "
                              "(e.g. 30s, 10min, 1h).") from None
    with Ledger.create(target, origin, log_key, roots, checkpoint_every=checkpoint_every,
                       checkpoint_interval=interval) as led:
        console.print(f"created ledger {target} (origin {led.origin!r}, log key "
                      f"{led.log_vkey.keyid}, {len(roots)} organisation root(s)).",
                      highlight=False, soft_wrap=True)
        print(led.log_vkey.text(), flush=True)


def _append_statement(ledger: str | None, predicate: Any, root_key: Path) -> None:
    from scalegate.ledger import SigningKey, sign_statement

    key = SigningKey.load(root_key)
    with _open(ledger) as led:
        index, leaf = led.append(sign_statement(predicate, key))
    console.print(f"appended {predicate.KIND} statement as entry {index} (leaf {leaf.hex()}).",
                  highlight=False, soft_wrap=True)


@app.command("register-key")
def register_key(
    root_key: Path = typer.Option(..., "--root-key", help="The organisation root's key file."),
    vkey: str = typer.Option(..., "--vkey", help="Verifier key to register (text or file)."),
    roles: str = typer.Option("", "--roles", help="Comma-separated roles, e.g. trainer,ciso "
                              "(at least one: what the key may sign as)."),
    org: str | None = typer.Option(None, "--org", help="Organisation (default: from key name)."),
    valid_from: str | None = typer.Option(None, "--valid-from", help="RFC 3339 (default: now)."),
    valid_until: str | None = typer.Option(
        None, "--valid-until", help="RFC 3339 time or a duration from valid-from (365d, 1y)."
    ),
    ledger: str | None = LedgerOpt,
) -> None:
    """Have an organisation root register a key (a signed "key" statement)."""
    from scalegate.ledger import KeyPredicate

    key = _vkey(vkey, "--vkey")
    held = [r.strip() for r in roles.split(",") if r.strip()]
    if not held:
        raise LedgerError("--roles is missing or empty: a key is registered with the roles it "
                          "signs as (the trust file and the policies name them).",
                          hint="Pass e.g. --roles trainer, or --roles rso,board.")
    now = datetime.now(UTC)
    start = _when(valid_from, "--valid-from", base=now) or now
    pred = KeyPredicate(
        vkey=key.text(),
        org=org or key.name.split("/", 1)[0],
        roles=held,
        valid_from=start,
        valid_until=_when(valid_until, "--valid-until", base=start),
    )
    _append_statement(ledger, pred, root_key)


@app.command("revoke-key")
def revoke_key(
    root_key: Path = typer.Option(..., "--root-key", help="The organisation root's key file."),
    vkey: str = typer.Option(..., "--vkey", help="Verifier key to revoke (text or file)."),
    reason: str = typer.Option(..., "--reason", help="Why (e.g. 'laptop lost')."),
    revoked_at: str | None = typer.Option(None, "--at", help="RFC 3339 (default: now)."),
    ledger: str | None = LedgerOpt,
) -> None:
    """Have an organisation root revoke a key (a signed "key-revocation" statement)."""
    from scalegate.ledger import KeyRevocationPredicate

    key = _vkey(vkey, "--vkey")
    now = datetime.now(UTC)
    at = _when(revoked_at, "--at", base=now) or now
    _append_statement(ledger, KeyRevocationPredicate(vkey=key.text(), reason=reason,
                                                     revoked_at=at), root_key)


@app.command("append")
def append(
    envelopes: list[Path] = typer.Argument(..., help="DSSE envelope JSON files ('-': stdin)."),
    ledger: str | None = LedgerOpt,
) -> None:
    """Append signed envelopes as one all-or-nothing batch; print each index and leaf hash.

    To a log served over HTTP (``--ledger https://...``) each is submitted on its own, in
    order, stopping at the first refusal.
    """
    batch = []
    for f in envelopes:
        try:
            batch.append(sys.stdin.buffer.read() if str(f) == "-" else f.read_bytes())
        except OSError as exc:
            raise LedgerError(f"cannot read envelope file {f}: {exc.strerror or exc}.") from exc
    target = _path(ledger)
    if target.startswith(("http://", "https://")):
        from scalegate.ledger import submit_envelope

        for f, data in zip(envelopes, batch, strict=True):
            index, leaf, _ = submit_envelope(target, data)
            console.print(f"{f}: entry {index} leaf {leaf.hex()}", highlight=False,
                          soft_wrap=True)
        return
    with _open(ledger) as led:
        results = led.append_many(batch)
    for f, (index, leaf) in zip(envelopes, results, strict=True):
        console.print(f"{f}: entry {index} leaf {leaf.hex()}", highlight=False, soft_wrap=True)


@app.command("checkpoint")
def checkpoint(ledger: str | None = LedgerOpt, log_key: Path | None = LogKeyOpt) -> None:
    """Print the log-signed checkpoint (C2SP signed note) for the current size."""
    with _open(ledger, log_key) as led:
        sys.stdout.write(led.checkpoint())


@app.command("timestamp")
def timestamp(
    tsa: str = typer.Option(..., "--tsa", help="The time-stamping authority's RFC 3161 URL."),
    ca_cert: Path | None = typer.Option(
        None, "--ca-cert", help="The authority's root CA certificate (PEM; intermediates may "
        "follow): the token is verified before it is stored."),
    ledger: str | None = LedgerOpt,
) -> None:
    """Have an RFC 3161 time-stamping authority stamp the latest checkpoint; store the token
    in the ledger (outside evidence that the entries below it existed by the token's time;
    auditors who trust the authority count it, see `scalegate verify --help`)."""
    from scalegate.ledger import request_timestamp

    certs = _pem_certificates(ca_cert) if ca_cert is not None else []
    with _open(ledger) as led:
        row, info, new = request_timestamp(led, tsa, ca_certs=certs)
        behind = led.size - row.size
    said = "stored" if new else "already held (kept)"
    console.print(f"time-stamp {said}: checkpoint of size {row.size} existed by "
                  f"{info.existed_by.isoformat().replace('+00:00', 'Z')} per {info.signer} "
                  f"(token serial {info.serial}"
                  + (", verified against --ca-cert)." if certs and new else ")."),
                  highlight=False, soft_wrap=True)
    if behind:
        err_console.print(f"note: {counted(behind, 'later entries')} are not covered; sign a "
                          "new checkpoint first (`scalegate ledger checkpoint`) to stamp them.",
                          highlight=False, soft_wrap=True)


def _pem_certificates(path: Path) -> list[Any]:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise LedgerError(f"cannot read --ca-cert {path}: {exc.strerror or exc}.") from None
    except ValueError:
        raise LedgerError(f"--ca-cert {path} holds no PEM certificate.",
                          hint="Give the authority's root CA certificate as a PEM file.") from None


@app.command("prove")
def prove(
    index: int = typer.Argument(..., help="Entry index."),
    ledger: str | None = LedgerOpt,
    log_key: Path | None = LogKeyOpt,
) -> None:
    """Print an offline inclusion receipt (C2SP tlog-proof) for entry INDEX, against the
    latest checkpoint (a new one is signed if none covers the entry yet)."""
    with _open(ledger, log_key) as led:
        latest = led.checkpoints()[-1:]
        sys.stdout.write(led.receipt(index))
        size = led.size
    if not latest or latest[0][0] <= index:  # receipt() signed one of the log's size
        err_console.print(f"note: no checkpoint covered entry {index}; signed one of size "
                          f"{size}. Auditors need it cosigned by witnesses (`scalegate "
                          "witness cosign`) before the receipt verifies.", highlight=False,
                          soft_wrap=True)


@app.command("show")
def show(
    kind: str | None = typer.Option(None, "--kind", "-k", help="Only this statement kind."),
    run: str | None = typer.Option(None, "--run", "-r", help="Only this run id."),
    start: int = typer.Option(0, "--start", help="First index."),
    limit: int | None = typer.Option(None, "--limit", "-n", help="At most this many entries."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines with the full statement."),
    ledger: str | None = LedgerOpt,
    log_key: str | None = typer.Option(None, "--log-key", help="For a log served over HTTP: "
                                       "its verifier key (text or file), which its checkpoint "
                                       "must verify under (default: the key it serves, "
                                       "trusted on first use and pinned in its mirror)."),
) -> None:
    """List entries (index, kind, run, signer, time, leaf hash) or, with --json, everything.

    ``--ledger https://...`` reads a served log through its mirror, synced first and
    checked against the signed checkpoint (tiles carry no entry times: shown as -).
    """
    from scalegate.ledger import PREDICATES

    if kind is not None and kind not in PREDICATES:
        raise LedgerError(f"--kind {kind!r} is no statement kind (kinds: "
                          f"{', '.join(PREDICATES)}).", hint="Pass one of them.")
    with _open_shown(ledger, log_key) as led:
        entries = led.entries(start, kind=kind, run_id=run, limit=limit)
        size, where = led.size, led.path  # a URL's password is masked in led.path
        if run is not None and not entries and not led.entries(run_id=run, limit=1):
            from scalegate.runs import list_runs

            raise LedgerError(f"no entry in {led.path} concerns run {run!r} (runs: "
                              f"{', '.join(list_runs(led)) or 'none yet'}).",
                              hint="Check the run id (`scalegate runs`).")
    if as_json:
        from scalegate.documents import load_json

        for e in entries:
            try:
                st, envelope = e.statement, load_json(e.data)
            except (ScalegateError, ValueError) as exc:
                raise LedgerError(f"entry {e.index} of {where} does not read back: {exc}",
                                  hint="The file was altered; run `scalegate ledger verify` "
                                  "and restore the ledger from a backup or mirror.") from None
            print(json.dumps({
                "index": e.index, "leaf_hash": e.leaf_hash.hex(), "kind": e.kind,
                "run_id": e.run_id, "signer": e.signer,
                "appended_at": e.appended_at and e.appended_at.isoformat().replace("+00:00",
                                                                                   "Z"),
                "statement": st.model_dump(mode="json", by_alias=True),
                "envelope": envelope,
            }, sort_keys=True), flush=False)
        sys.stdout.flush()
        return
    from rich.table import Table

    table = Table(title=f"{where}: {len(entries)} of {size} entries", title_justify="left")
    for col in ("index", "kind", "run", "signer", "appended (UTC)", "leaf hash"):
        table.add_column(col, no_wrap=col != "signer",
                         justify="right" if col == "index" else "left")
    for e in entries:
        table.add_row(str(e.index), e.kind, e.run_id or "", e.signer,
                      e.appended_at.strftime("%Y-%m-%d %H:%M:%S") if e.appended_at else "-",
                      e.leaf_hash.hex()[:16])
    console.print(table)


#: ``ledger verify`` found nothing wrong but cannot vouch for the log: no signed checkpoint
#: covers its entries, checkpoints went missing (or, with ``--strict``, an unverified tail).
EXIT_UNVERIFIED = 5


@app.command("verify")
def verify(
    workers: int | None = typer.Option(None, "--workers", help="Signature-checking processes."),
    full: bool = typer.Option(
        False, "--full", help="Also validate every predicate field (slower; append already did)."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Exit 5 also when entries after the latest checkpoint are "
        "covered by none (sign one first: `scalegate ledger checkpoint`)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ledger: str | None = LedgerOpt,
) -> None:
    """Recompute the tree, check every checkpoint and envelope. Exit 0 if all hold, 1 on a
    problem, 5 if nothing is wrong but no signed checkpoint vouches for the log."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with _open(ledger) as led:
        if as_json or not err_console.is_terminal:
            report = led.verify(workers=workers, full=full)
        else:
            with Progress(TextColumn("verifying"), BarColumn(), TextColumn("{task.completed}/"
                          "{task.total}"), TimeRemainingColumn(), console=err_console,
                          transient=True) as bar:
                task = bar.add_task("verify", total=max(led.size, 1))
                report = led.verify(workers=workers, full=full,
                                    progress=lambda done, _t: bar.update(task, completed=done))
    tail = report.unverified_tail
    unverified = report.unverified or (strict and tail is not None)
    if as_json:
        cov = report.coverage
        print(json.dumps({
            "ok": report.ok, "verified": report.ok and not unverified,
            "path": report.path, "origin": report.origin, "size": report.size,
            "root": report.root.hex(), "entries_checked": report.entries_checked,
            "signatures_checked": report.signatures_checked,
            "nodes_checked": report.nodes_checked,
            "checkpoints_checked": report.checkpoints_checked,
            "checkpoints_issued": cov.issued if cov else None,
            "latest_checkpoint": report.latest_checkpoint, "keys": report.keys,
            "unverified": report.unverified,
            "unverified_tail": None if tail is None else {
                "first": tail[0], "last": tail[1], "count": tail[1] - tail[0] + 1},
            "problems": report.problems, "problems_total": report.problems_total,
            "seconds": round(report.seconds, 3),
        }, indent=2))
    else:
        _print_report(report, unverified=bool(unverified))
    if not report.ok:
        raise typer.Exit(1)
    if unverified:
        raise typer.Exit(EXIT_UNVERIFIED)


def _print_report(report: IntegrityReport, *, unverified: bool) -> None:
    for p in report.problems:
        err_console.print(f"[red]✗[/red] {p}", highlight=False, soft_wrap=True)
    if report.problems_total > len(report.problems):
        err_console.print(f"… and {report.problems_total - len(report.problems)} more")
    for u in report.unverified:
        err_console.print(f"[yellow]unverified:[/yellow] {u}", highlight=False, soft_wrap=True)
    tail = report.coverage.tail_text() if report.coverage else None
    if tail:
        err_console.print(f"[yellow]unverified tail:[/yellow] {tail}", highlight=False,
                          soft_wrap=True)
    if not report.ok:
        mark = f"[bold red]✗ {report.problems_total} problem(s)[/bold red]"
    elif unverified:
        mark = ("[bold yellow]? ledger unverified[/bold yellow] (nothing wrong found, but no "
                "signed checkpoint vouches for all of it)")
    else:
        mark = "[green]✓ ledger verifies[/green]"
        if report.unverified_tail is not None:
            mark += f" up to size {report.latest_checkpoint}"
    cp = ("no checkpoint" if report.latest_checkpoint is None
          else f"{report.checkpoints_checked} checkpoint(s), latest at size "
          f"{report.latest_checkpoint}")
    console.print(
        f"{mark}: {report.size} entries, {report.signatures_checked} signatures, "
        f"{report.nodes_checked} tree nodes, {cp}, {counted(report.keys, 'registered keys')} "
        f"in {report.seconds:.2f} s; root {report.root.hex()}",
        highlight=False, soft_wrap=True,
    )
    if unverified and report.ok:
        err_console.print("Sign a checkpoint (`scalegate ledger checkpoint`) to vouch for the "
                          "entries as they are now, and have witnesses cosign it; if "
                          "checkpoints went missing, compare with a mirror or backup first.",
                          highlight=False, soft_wrap=True)


@app.command("publish-tiles")
def publish_tiles_cmd(
    directory: Path = typer.Argument(..., help="Where to write the static log (created)."),
    ledger: str | None = LedgerOpt,
) -> None:
    """Write the latest checkpoint and its C2SP tlog-tiles as static files (any web host).

    Full tiles never change: publishing again into the same directory writes only the
    checkpoint, the new tiles and the right-edge partial ones.
    """
    from scalegate.server import publish_tiles

    if directory.exists() and not directory.is_dir():
        raise LedgerError(f"{directory} exists and is not a directory.",
                          hint="Name a directory to write the tiles into.")
    with _open(ledger) as led:
        done = publish_tiles(led, directory)
    console.print(f"published the checkpoint of size {done.size:,} to {directory}: "
                  f"{counted(done.written, 'tiles')} written, {done.kept:,} full ones kept")


@app.command("read-tiles")
def read_tiles_cmd(
    location: str = typer.Argument(..., help="The log's URL prefix, or a directory of tiles."),
    log_key: str = typer.Option(..., "--log-key", help="The log's verifier key (text, or a file "
                                "whose last line is the key, e.g. the log's log.vkey)."),
    origin: str | None = typer.Option(None, "--origin", help="The log's origin (default: the "
                                      "key's name)."),
    as_json: bool = typer.Option(False, "--json", help="The checkpoint and entries as JSON."),
) -> None:
    """Fetch a tiled log and verify it against its key: the checkpoint's signature, every
    tile against the signed root, every entry against its leaf."""
    from scalegate.ledger import Envelope, read_tiled_log

    log = read_tiled_log(location, _vkey(log_key, "--log-key"), origin=origin)
    if as_json:
        out = {"origin": log.checkpoint.origin, "size": log.checkpoint.size,
               "root": log.checkpoint.root_hash.hex(), "checkpoint": log.note,
               "entries": [Envelope.from_bytes(e).model_dump() for e in log.entries]}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    console.print(f"verified {log.checkpoint.origin}: {log.checkpoint.size:,} entries, root "
                  f"{log.checkpoint.root_hash.hex()} ({counted(log.tiles_fetched, 'resources')} "
                  "fetched and checked)")


def _open_shown(ledger: str | None, log_key: str | None) -> Ledger:
    from scalegate.cli._remote import is_url, open_location

    target = _path(ledger)
    if is_url(target):
        return open_location(target, log_key=None if log_key is None
                             else _vkey(log_key, "--log-key"))
    if log_key is not None:
        raise LedgerError("--log-key is for a log served over HTTP (its verifier key); a "
                          "local ledger holds its own.", hint="Leave out --log-key.")
    return _open(ledger)


@app.command("sync")
def sync(
    url: str = typer.Argument(..., help="The log's address (https://..., or a directory of "
                              "tiles written by `ledger publish-tiles`)."),
    mirror: str = typer.Argument(..., help="The mirror: an SQLite file (made on first use) "
                                 "or a database URL."),
    log_key: str | None = typer.Option(None, "--log-key", help="The log's verifier key (text "
                                       "or file) to pin on first use (default: the key the "
                                       "log serves, trusted on first use)."),
    org_roots: list[str] = typer.Option([], "--org-root", help="An organisation root key to "
                                        "pin on first use (repeatable; default: the log's "
                                        "org-roots)."),
) -> None:
    """Mirror a served log incrementally, verifying it: the checkpoint under the log's key,
    the new tiles against the signed root and the tree already mirrored (a log showing
    another history is a split view: the evidence is saved), every entry against its leaf.

    Audit the mirror offline: `scalegate verify --ledger MIRROR --trust FILE`.
    """
    from scalegate.cli._remote import is_url, sync_location

    if not is_url(url) and not Path(url).is_dir():
        raise LedgerError(f"{url} is neither an http(s):// address nor a directory of tiles.",
                          hint="Give the log's address, e.g. https://log.example/.")
    result = sync_location(
        url, mirror, log_key=None if log_key is None else _vkey(log_key, "--log-key"),
        org_roots=[_vkey(r, "--org-root") for r in org_roots] or None)
    made = "made the mirror; " if result.created else ""
    console.print(f"{result.mirror}: {made}{counted(result.added, 'new entries')}, "
                  f"{result.size:,} in all, verified against {result.checkpoint.origin}'s "
                  f"checkpoint of size {result.checkpoint.size:,}", highlight=False,
                  soft_wrap=True)
