"""A log served over HTTP where a command takes a ledger: its verified local mirror.

Every command's ``--ledger`` accepts ``https://log.example/`` (or
``http://127.0.0.1:PORT/``): reading commands read the log's mirror, synced first and
verified against the log's signed checkpoint; writing commands submit to the log. What
the sync did is said on stderr, and split-view evidence is saved to a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from scalegate.cli._console import err_console
from scalegate.units import counted

if TYPE_CHECKING:
    from scalegate.audit import TrustFile
    from scalegate.ledger import Ledger, SyncResult, VerifierKey


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` names a log served over HTTP (not a file or database)."""
    return isinstance(location, str) and location.startswith(("http://", "https://"))


def open_location(location: str, *, log_key: VerifierKey | None = None) -> Ledger:
    """Open a ledger file or database URL; a served log through its synced mirror."""
    from scalegate.ledger import Ledger, RemoteLedger, SplitView

    if not is_url(location):
        return Ledger.open(location)
    with _progress("syncing the mirror") as update:
        try:
            led = RemoteLedger.connect(location, log_key=log_key, progress=update)
        except SplitView as exc:
            raise _with_evidence(exc) from None
    say_sync(led.last_sync, location)
    return led


def sync_location(url: str, mirror: str | os.PathLike[str], *,
                  log_key: VerifierKey | None = None,
                  org_roots: list[VerifierKey] | None = None) -> SyncResult:
    """Sync ``mirror`` with the log at ``url``, showing progress and saying what it did."""
    from scalegate.ledger import SplitView, sync_mirror

    with _progress("syncing") as update:
        try:
            result = sync_mirror(url, mirror, log_key=log_key, org_roots=org_roots,
                                 progress=update)
        except SplitView as exc:
            raise _with_evidence(exc) from None
    say_sync(result, url)
    return result


def audited_location(location: str, trust: TrustFile) -> str:
    """What an audit reads for ``location``: the location itself, or for a served log its
    mirror, synced first under the trust file's log key (and its roots, on first use)."""
    if not is_url(location):
        return location
    from scalegate.ledger import default_mirror_path

    mirror = default_mirror_path(location)
    mirror.parent.mkdir(parents=True, exist_ok=True)
    return sync_location(location, mirror, log_key=trust.log_verifier,
                         org_roots=trust.roots or None).mirror


def say_sync(result: SyncResult, url: str) -> None:
    """Say on stderr what a sync did that a reader should know."""
    cp = result.checkpoint
    if result.key_from_log:
        err_console.print(
            f"[yellow]note: trusting the key {url} serves ({cp.origin}) on first use; it is "
            f"pinned in {result.mirror} from now on. Pass --log-key to check it against "
            "one you hold.[/yellow]", highlight=False, soft_wrap=True)
    if result.stale:
        err_console.print(
            f"[yellow]note: {url} serves a checkpoint of size {cp.size:,}, older than the "
            f"{result.size:,} entries the mirror verified before (consistent with them); "
            "reading the mirror.[/yellow]", highlight=False, soft_wrap=True)
    elif result.added:
        err_console.print(f"mirrored {counted(result.added, 'new entries')} of {url} "
                          f"(verified against its checkpoint of size {cp.size:,})",
                          highlight=False, soft_wrap=True)


def _with_evidence(exc: Exception) -> Exception:
    """Save a split view's evidence to a file the message names."""
    from scalegate.ledger import SplitView

    assert isinstance(exc, SplitView)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = Path(f"split-view-{stamp}.txt").resolve()
    try:
        target.write_text(exc.evidence, encoding="utf-8")
        saved = f"Both signed checkpoints are saved in {target}."
    except OSError as err:
        saved = f"(The evidence could not be saved to {target}: {err.strerror or err}.)"
    return SplitView(f"{exc.message} {saved}", ours=exc.ours, theirs=exc.theirs,
                     index=exc.index)


@contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar for a sync (on a terminal only); yields the callback it reports to."""
    if not err_console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(what), BarColumn(), TextColumn("{task.completed:,}/"
                  "{task.total:,}"), TimeRemainingColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
