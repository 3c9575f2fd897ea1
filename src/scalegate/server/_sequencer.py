"""Submissions over HTTP, sequenced in batches (group commit).

Each ``POST /add`` hands its envelope to the :class:`Sequencer` and waits. One writer
takes everything that has queued up while the previous batch was being written and
appends it as one batch (one transaction, one fsync), so the more clients submit at
once, the larger the batches and the higher the throughput. A batch is admitted as a
whole when it can be; when one of its envelopes is refused, each is appended on its own
so that only the refused one fails. An answer is sent only after its entry is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field

from scalegate.errors import AppendRefused, ScalegateError
from scalegate.ledger import AppendResult, Ledger

__all__ = ["RateLimited", "Sequencer"]

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
    """Appends submitted envelopes to ``ledger`` in batches; see the module docstring."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
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
                outcomes = await asyncio.to_thread(self._append, [d for d, _ in batch])
                self.batches += 1
                for (_, done), got in zip(batch, outcomes, strict=True):
                    if done.done():  # the client went away
                        continue
                    if isinstance(got, BaseException):
                        done.set_exception(got)
                    else:
                        done.set_result(got)

    def _append(self, items: list[bytes]) -> list[AppendResult | BaseException]:
        """Append ``items`` as one batch; a refused envelope is taken out (its refusal is its
        answer) and the rest appended again as one batch."""
        out: list[AppendResult | BaseException | None] = [None] * len(items)
        todo = list(range(len(items)))
        while todo:
            try:
                done = self.ledger.append_many([items[i] for i in todo])
            except AppendRefused as exc:
                if exc.position is None or not 0 <= exc.position < len(todo):
                    for i in todo:  # no position to take out: each on its own
                        out[i] = self._one(items[i])
                    break
                out[todo.pop(exc.position)] = exc
                continue
            except Exception as exc:  # the store failed (or a bug): every submission hears it
                for i in todo:
                    out[i] = exc
                break
            for i, result in zip(todo, done, strict=True):
                out[i] = result
            break
        return [o if o is not None else RuntimeError("not appended") for o in out]

    def _one(self, item: bytes) -> AppendResult | BaseException:
        try:
            return self.ledger.append(item)
        except Exception as exc:
            return exc
