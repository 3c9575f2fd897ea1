"""Submissions over HTTP, sequenced in batches (group commit).

Each ``POST /add`` hands its envelope to the :class:`Sequencer` and waits. One writer
takes everything that has queued up while the previous batch was being written and
appends it as one batch (one transaction, one fsync), so the more clients submit at
once, the larger the batches and the higher the throughput. A batch is admitted as a
whole when it can be; when one of its envelopes is refused, the refused one is taken out
and the rest appended again, so that only it fails. An answer is sent only after its
entry is durable.

The writer runs in a process of its own (:class:`WriterProcess`) with its own
connection to the ledger: admission (decoding, signature checks, the write) then uses a
second core instead of contending with the HTTP event loop for one interpreter lock.
Refusals cross back as plain data and are raised again here as the errors they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from scalegate.errors import AppendRefused, DuplicateStatement, KeyNotAuthorized, ScalegateError
from scalegate.ledger import AppendResult, Ledger

__all__ = ["RateLimited", "Sequencer", "WriterProcess", "append_batch"]

_MAX_BATCH = 1024


class RateLimited(ScalegateError):
    """A signer submitted faster than the log's limit allows."""


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimit:
    """A token bucket per signer: ``per_second`` sustained, bursts of ``burst``."""

    per_second: float
    burst: float
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def allows(self, signer: str) -> bool:
        """Whether ``signer`` may submit now (a signer with no admitted submission yet may)."""
        b = self.buckets.get(signer)
        if b is None:
            return True
        self._refill(b)
        return b.tokens >= 1

    def charge(self, signer: str) -> None:
        """Count an admitted submission by ``signer`` (only admitted ones are counted, so a
        forged envelope naming someone else's key cannot use up their allowance, and only
        registered keys ever get a bucket)."""
        b = self.buckets.setdefault(signer, _Bucket(self.burst, time.monotonic()))
        self._refill(b)
        b.tokens -= 1

    def _refill(self, b: _Bucket) -> None:
        now = time.monotonic()
        b.tokens = min(self.burst, b.tokens + (now - b.at) * self.per_second)
        b.at = now


class Sequencer:
    """Appends submitted envelopes to the ledger in batches; see the module docstring.
    ``append`` appends one batch (:func:`append_batch` on an open ledger, or a
    :class:`WriterProcess`)."""

    def __init__(self, append: Callable[[list[bytes]], Awaitable[list[Outcome]]]) -> None:
        self._append = append
        self._queue: deque[tuple[bytes, asyncio.Future[AppendResult]]] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    def start(self) -> None:
        """Start the writer on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        while self._queue and self._task is not None and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, data: bytes) -> AppendResult:
        """Append one envelope; its ``(index, leaf_hash)`` once durable, or the refusal."""
        assert self._wake is not None, "Sequencer.start() first"
        done: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.append((data, done))
        self._wake.set()
        return await done

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft()
                         for _ in range(min(_MAX_BATCH, len(self._queue)))]
                try:
                    outcomes = await self._append([d for d, _ in batch])
                except Exception as exc:  # the writer itself failed: every submission hears it
                    outcomes = [_failure(exc)] * len(batch)
                self.batches += 1
                for (_, done), got in zip(batch, outcomes, strict=True):
                    if done.done():  # the client went away
                        continue
                    if isinstance(got, AppendResult):
                        done.set_result(got)
                    else:
                        done.set_exception(raised(got))


# --- appending a batch, and what crosses between processes ------------------------------------

#: Why an envelope was not appended, as plain data: ``(kind, message, hint, index)`` with
#: kind ``duplicate`` (``index``: where it is logged), ``forbidden`` (a signer the log does
#: not admit), ``refused`` or ``unavailable`` (the store failed).
Failure = tuple[str, str, str | None, int]
Outcome = AppendResult | Failure


def append_batch(ledger: Ledger, items: list[bytes]) -> list[Outcome]:
    """Append ``items`` as one batch; a refused envelope is taken out (its refusal is its
    outcome) and the rest appended again as one batch."""
    out: list[Outcome | None] = [None] * len(items)
    todo = list(range(len(items)))
    while todo:
        try:
            done = ledger.append_many([items[i] for i in todo])
        except AppendRefused as exc:
            if exc.position is None or not 0 <= exc.position < len(todo):
                for i in todo:  # no position to take out: each on its own
                    out[i] = _one(ledger, items[i])
                break
            out[todo.pop(exc.position)] = _failure(exc)
            continue
        except Exception as exc:  # the store failed (or a bug): every submission hears it
            for i in todo:
                out[i] = _failure(exc)
            break
        for i, result in zip(todo, done, strict=True):
            out[i] = AppendResult(*result)
        break
    return [o if o is not None else ("unavailable", "not appended", None, -1) for o in out]


def _one(ledger: Ledger, item: bytes) -> Outcome:
    try:
        return AppendResult(*ledger.append(item))
    except Exception as exc:
        return _failure(exc)


def _failure(exc: BaseException) -> Failure:
    if isinstance(exc, DuplicateStatement):
        return ("duplicate", exc.message, exc.hint, exc.index)
    if isinstance(exc, AppendRefused):
        kind = "forbidden" if isinstance(exc.__cause__, KeyNotAuthorized) else "refused"
        return (kind, exc.message, exc.hint, -1)
    if isinstance(exc, ScalegateError):
        return ("unavailable", exc.message, exc.hint, -1)
    return ("unavailable", f"the log could not append it: {exc}", None, -1)


def raised(f: Failure) -> ScalegateError:
    """The error a :data:`Failure` stands for."""
    kind, message, hint, index = f
    if kind == "duplicate":
        return DuplicateStatement(message, index=index, hint=hint)
    if kind in ("forbidden", "refused"):
        exc = AppendRefused(message, hint=hint)
        if kind == "forbidden":
            exc.__cause__ = KeyNotAuthorized(message)
        return exc
    return ScalegateError(message, hint=hint)


_LEDGER: Ledger | None = None  # the writer process's own


def _open_writer(location: str) -> None:
    global _LEDGER
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    _LEDGER = Ledger.open(location, checkpoint_on_close=False)
    # Checkpoints are the publisher's (in the serving process), never the writer's.
    _LEDGER.checkpoint_every = _LEDGER.checkpoint_interval = None


def _exit_with_parent() -> None:
    """End this process when the server's ends, even by SIGKILL (no orphan keeps the
    ledger open; a batch not yet committed was never acknowledged)."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)


def _append_there(items: list[bytes]) -> list[Outcome]:
    assert _LEDGER is not None, "the writer process opens the ledger first"
    return append_batch(_LEDGER, items)


class WriterProcess:
    """A process that appends batches to the ledger at ``location`` (see the module
    docstring); call it with a batch, :meth:`close` when done."""

    def __init__(self, location: str) -> None:
        ctx = multiprocessing.get_context("spawn")  # the server has threads: never fork it
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx,
                                         initializer=_open_writer, initargs=(location,))
        self._pool.submit(int).result()  # started, and the ledger opened, before serving

    async def __call__(self, items: list[bytes]) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _append_there, items)

    def close(self) -> None:
        """Stop the process (what it was appending is finished first)."""
        self._pool.shutdown(wait=True)
