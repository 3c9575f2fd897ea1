"""A log served over HTTP, used as a :class:`~scalegate.ledger.Ledger`.

``Ledger.open("https://log.example/")`` returns a :class:`RemoteLedger`: it reads from a
verified local mirror of the log (:mod:`~scalegate.ledger.mirror`, kept in
:func:`~scalegate.ledger.mirror.default_mirror_path` unless another is named), synced
when it is opened and after each append; it appends by submitting each envelope to the
log's ``POST /add``. So every reader (``runs``, ``run status``, ``verify``, the
supervisor) sees only what the log published and what was verified against its signed
checkpoints, and every writer goes through the log's own admission.

Reads show the log as of the last sync: :meth:`RemoteLedger.refresh` syncs again. Over
HTTP a batch is not one transaction: its entries are submitted one by one, in order,
and a refusal stops the batch there (:attr:`AppendRefused.position` says where; the
entries before it stay logged). The last one waits for a published checkpoint, so the
mirror holds the whole batch when :meth:`RemoteLedger.append_many` returns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence

from scalegate.errors import AppendConflict, AppendRefused, LedgerError
from scalegate.ledger.envelope import Envelope
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.log import AppendResult, Clock, Ledger
from scalegate.ledger.mirror import (
    Progress,
    SyncResult,
    default_mirror_path,
    log_address,
    sync_into,
    sync_mirror,
)
from scalegate.ledger.submission import submit_envelope
from scalegate.ledger.tiled_log import tile_fetcher

__all__ = ["RemoteLedger"]

_PUBLISH_WAIT_S = 30.0  # how long an append waits to see its entries published


class RemoteLedger(Ledger):
    """A served log: reads from a verified mirror, appends by submission (see the module
    docstring). Use :meth:`connect` (or ``Ledger.open(url)``)."""

    url: str
    last_sync: SyncResult

    @classmethod
    def connect(
        cls, url: str, *, mirror: str | os.PathLike[str] | None = None,
        log_key: VerifierKey | None = None, org_roots: Sequence[VerifierKey] | None = None,
        now: Clock | None = None, progress: Progress | None = None,
    ) -> RemoteLedger:
        """Sync the mirror of the log at ``url`` (making it on first use) and open it.

        ``log_key`` pins the log's key on first use (default: the key the log serves);
        a mirror made before must have pinned that key.
        """
        address = log_address(url)
        target = os.fspath(mirror) if mirror is not None else str(default_mirror_path(address))
        if mirror is None:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        result = sync_mirror(address, target, log_key=log_key, org_roots=org_roots,
                             progress=progress)
        led = super().open(target, now=now, checkpoint_on_close=False)  # the mirror, as cls
        assert isinstance(led, RemoteLedger)
        led.url, led.last_sync = address, result
        return led

    @property
    def path(self) -> str:
        """The log's address."""
        return self.url

    @property
    def mirror_path(self) -> str:
        """Where the mirror lives."""
        return self._store.where

    def checkpoint(self) -> str:
        """The latest checkpoint the log published (with its cosignatures): only the log
        signs its checkpoints."""
        note = self.latest_checkpoint()
        if note is None:  # a mirror stores the checkpoint of every sync
            raise LedgerError(f"{self.url} has published no checkpoint yet.")
        return note

    def refresh(self) -> SyncResult:
        """Sync the mirror with what the log has published now."""
        self.last_sync = sync_into(self, tile_fetcher(self.url))
        return self.last_sync

    def append_many(
        self, envelopes: Iterable[Envelope | bytes], *, at_index: int | None = None
    ) -> list[AppendResult]:
        """Submit each envelope in order; ``(index, leaf_hash)`` per entry, once all are
        published and mirrored. With ``at_index`` the batch must start at that index: the
        mirror is synced first and :class:`AppendConflict` raised if the log is elsewhere
        (or if another writer's entry took the index meanwhile)."""
        items = [e.to_bytes() if isinstance(e, Envelope) else bytes(e) for e in envelopes]
        if not items:
            return []
        if at_index is not None:
            self.refresh()
            if self.size != at_index:
                raise AppendConflict(
                    f"the batch was built for index {at_index}, but {self.url} holds "
                    f"{self.size} entries. Nothing was submitted.", size=self.size,
                    hint="Rebuild the batch for the new size and retry.")
        results: list[AppendResult] = []
        for pos, data in enumerate(items):
            try:
                got = submit_envelope(self.url, data, wait_proof=pos == len(items) - 1)
            except AppendRefused as exc:
                exc.position = pos
                if results:  # what was logged before it is read back like any append
                    self._await(results[-1].index + 1)
                raise
            results.append(AppendResult(got.index, got.leaf_hash))
            if at_index is not None and pos == 0 and got.index != at_index:
                self._await(got.index + 1)
                raise AppendConflict(
                    f"another writer's entry took index {at_index}; the batch's first entry "
                    f"went to {got.index} and the rest was not submitted.", size=self.size,
                    hint="Rebuild the batch for the new size and retry.")
        self._await(results[-1].index + 1)
        return results

    def _await(self, size: int) -> None:
        """Sync until the mirror holds ``size`` entries (the log publishes them shortly)."""
        deadline = time.monotonic() + _PUBLISH_WAIT_S
        pause = 0.02
        while self.refresh().size < size:
            if time.monotonic() > deadline:
                raise LedgerError(
                    f"{self.url} logged entry {size - 1} but has not published a checkpoint "
                    f"covering it within {_PUBLISH_WAIT_S:.0f} s.",
                    hint="The log may be waiting for its witnesses; check its /checkpoint.")
            time.sleep(pause)
            pause = min(1.0, pause * 2)
