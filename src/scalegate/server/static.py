"""The log as static files: the checkpoint, every tile and entry bundle, the verifier key.

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
from scalegate.server._pages import index_page, vkey_text

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
    raises :class:`LedgerError` when it has issued none.
    """
    note = ledger.latest_checkpoint()
    if note is None:
        raise LedgerError(
            f"ledger {ledger.path} has issued no checkpoint to publish.",
            hint="Sign one with `scalegate ledger checkpoint` (witnesses then cosign it).")
    cp, _ = open_checkpoint(note, ledger.log_vkey, origin=ledger.origin)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    written = kept = 0
    for tile in tiles_of(cp.size):
        target = root / tile.path()
        if tile.full and target.is_file():
            kept += 1  # a full tile never changes
            continue
        _write(target, ledger.tile(tile))
        written += 1
    _write(root / "log.vkey", vkey_text(ledger).encode())
    _write(root / "index.html", index_page(ledger, cp.size).encode())
    _write(root / "checkpoint", note.encode())
    return Published(cp.size, written, kept)


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


