"""Small JSON state files (witness and auditor state): locked, read-modify-write, atomic.

A state update must be atomic with the checks that led to it (c2sp.org/tlog-witness:
checking the old size and persisting the new checkpoint happen under one lock), so
:func:`locked_state` holds an exclusive lock on ``PATH.lock`` (``filelock``: the same on
every platform, threads of one process included) for the whole read-check-write, and
:func:`write_json` replaces the file by ``rename`` after an ``fsync``: a crash leaves the
old state or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from scalegate.documents import load_json


@contextlib.contextmanager
def locked_state(path: Path, fail: Callable[[str], Exception]) -> Iterator[None]:
    """Hold the exclusive lock of state file ``path`` (creating its directory if needed)."""
    from filelock import FileLock

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot create the directory of {path}: {exc.strerror or exc}") from exc
    # Not re-entrant, and one lock object per use: two threads of a server exclude each
    # other exactly as two processes do.
    lock = FileLock(f"{path}.lock", is_singleton=False, thread_local=False)
    try:
        lock.acquire()
    except OSError as exc:
        raise fail(f"cannot lock {path}: {exc.strerror or exc}") from exc
    try:
        yield
    finally:
        lock.release()


def read_json(path: Path, fail: Callable[[str], Exception]) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read state file {path}: {exc}") from exc
    try:
        data = load_json(text)
    except json.JSONDecodeError as exc:
        raise fail(f"state file {path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise fail(f"state file {path} does not hold a JSON object")
    return data


def write_json(path: Path, data: dict[str, Any], fail: Callable[[str], Exception]) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync directory)."""
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise fail(f"cannot write state file {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise fail(f"cannot write state file {path}: {exc.strerror or exc}") from exc
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
