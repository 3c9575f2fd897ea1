"""The auditor's memory: checkpoints it accepted before, per log origin (a JSON state file).

Each later audit checks that the log's tree still has, at each remembered size, the
remembered root: a log that rewrote or dropped history since, or that shows this
auditor a different tree than before, is caught even if it re-signed everything.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from scalegate.audit._state_file import locked_state, read_json, write_json
from scalegate.errors import VerificationError

_VERSION = 1
_MAX_PER_LOG = 10_000


class SeenCheckpoint(BaseModel):
    """A checkpoint an audit accepted: size, root (base64), the note, and when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int
    root_hash: str
    note: str
    seen_at: str

    @property
    def root(self) -> bytes:
        """The root hash bytes."""
        return base64.b64decode(self.root_hash)


def default_state_path() -> Path:
    """``$XDG_STATE_HOME/scalegate/auditor.json`` (default ``~/.local/state/...``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "scalegate" / "auditor.json"


def _fail(message: str) -> VerificationError:
    return VerificationError(
        f"auditor state: {message}.",
        hint="Fix or move the file (it records the checkpoints this auditor saw), or pass "
        "--state FILE.",
    )


def _logs(path: Path) -> dict[str, list[SeenCheckpoint]]:
    data = read_json(path, _fail)
    if data is None:
        return {}
    if data.get("version") != _VERSION or not isinstance(data.get("logs"), dict):
        raise _fail(f"{path} is not an auditor state file (version {_VERSION})")
    try:
        return {origin: [SeenCheckpoint.model_validate(c) for c in rec["checkpoints"]]
                for origin, rec in data["logs"].items()}
    except (ValidationError, KeyError, TypeError) as exc:
        raise _fail(f"{path} is damaged ({str(exc)[:200]})") from None


def load_seen(path: Path, origin: str) -> list[SeenCheckpoint]:
    """The checkpoints accepted before for ``origin``, by size (none when no state file)."""
    return sorted(_logs(path).get(origin, []), key=lambda c: c.size)


def record_seen(path: Path, origin: str, size: int, root: bytes, note: str) -> bool:
    """Remember an accepted checkpoint; return whether it was new."""
    with locked_state(path, _fail):
        logs = _logs(path)
        seen = logs.setdefault(origin, [])
        if any(c.size == size and c.root == root for c in seen):
            return False
        seen.append(SeenCheckpoint(
            size=size, root_hash=base64.b64encode(root).decode("ascii"), note=note,
            seen_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        ))
        seen.sort(key=lambda c: c.size)
        if len(seen) > _MAX_PER_LOG:  # keep the first and the latest ones
            del seen[1 : len(seen) - _MAX_PER_LOG + 1]
        write_json(path, {"version": _VERSION, "logs": {
            o: {"checkpoints": [c.model_dump() for c in cs]} for o, cs in logs.items()
        }}, _fail)
    return True
