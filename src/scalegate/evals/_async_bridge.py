"""Run an evaluation coroutine to completion from synchronous code.

Training loops are usually synchronous, but an evaluation may be started from code
that already runs an event loop (a notebook, an async trainer). ``asyncio.run`` cannot
nest, so in that case the coroutine runs on a fresh loop in a worker thread and the
caller blocks until it is done. Async callers should rather ``await`` the ``run_async``
methods directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_blocking(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``factory()`` makes, whether or not an event loop is running here."""
    try:
        asyncio.get_running_loop()
        running = True
    except RuntimeError:
        running = False
    if not running:
        # Not inside the except block: every exception raised during the evaluation
        # would carry "no running event loop" as its __context__, and Inspect reports
        # the innermost exception of a chain as a sample's error.
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scalegate-eval") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
