"""The log as static files: the checkpoint, every tile and entry bundle, the verifier key
and the organisation roots.

Full tiles never change once written; only ``checkpoint`` and the right-edge partial
tiles do, so re-publishing into the same directory writes only what is new. The
checkpoint is written last (after every tile it needs), atomically, so a reader of the
directory never sees a checkpoint whose tiles are missing.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scalegate.errors import LedgerError
from scalegate.ledger import Ledger, open_checkpoint, tiles_of
from scalegate.server._pages import index_page, org_roots_text, vkey_text

__all__ = ["Published", "publish_tiles"]


@dataclass(frozen=True)
class Published:
    """What :func:`publish_tiles` wrote: the checkpoint's size, tiles written and kept."""

    size: int
    written: int
    kept: int


def publish_tiles(ledger: Ledger, directory: str | os.PathLike[str]) -> Published:
    """Write the log's latest checkpoint and the tiles it needs under ``directory``.

    The checkpoint is the latest the log issued (with the cosignatures it gathered);
    raises :class:`LedgerError` when it has issued none or the directory cannot be
    written. Partial tiles whose full tile now exists are removed (the spec allows it).
    """
    note = ledger.latest_checkpoint()
    if note is None:
        raise LedgerError(
            f"ledger {ledger.path} has issued no checkpoint to publish.",
            hint="Sign one with `scalegate ledger checkpoint` (witnesses then cosign it).")
    cp, _ = open_checkpoint(note, ledger.log_vkey, origin=ledger.origin)
    root = Path(directory)
    try:
        return _publish(ledger, root, note, cp.size)
    except OSError as exc:
        raise LedgerError(f"cannot write the tiles to {root}: {exc.strerror or exc}.",
                          hint="Name a directory you can write to.") from None


def _publish(ledger: Ledger, root: Path, note: str, size: int) -> Published:
    root.mkdir(parents=True, exist_ok=True)
    written = kept = 0
    for tile in tiles_of(size):
        target = root / tile.path()
        if tile.full and target.is_file():
            kept += 1  # a full tile never changes
            continue
        _write(target, ledger.tile(tile))
        written += 1
        if tile.full:
            _drop_partials(target)
    _write(root / "log.vkey", vkey_text(ledger).encode())
    _write(root / "org-roots", org_roots_text(ledger).encode())
    _write(root / "index.html", index_page(ledger, size).encode())
    _write(root / "checkpoint", note.encode())  # last: every tile it needs is in place
    return Published(size, written, kept)


def _drop_partials(full: Path) -> None:
    """Remove the partial versions of a tile that is now full (``<N>.p/<W>``)."""
    partials = full.with_name(full.name + ".p")
    if partials.is_dir():
        for p in partials.iterdir():
            p.unlink(missing_ok=True)
        partials.rmdir()


def _write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` durably and atomically (a temporary file, fsynced,
    renamed over it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
