"""The auditor's memory, per log (a JSON state file): checkpoints it accepted before, and
which entries' signatures it has already verified. A log is its origin *and* its key
(:func:`log_id`): two logs that share an origin (every demo workspace does) are not
taken for one log showing two histories.

Each later audit checks that the log's tree still has, at each remembered size, the
remembered root: a log that rewrote or dropped history since, or that shows this
auditor a different tree than before, is caught even if it re-signed everything.

Signature checks are the audit's main cost, so an audit also remembers, per aligned
chunk of entries, the chunk's subtree hash recomputed from the entry bytes and which
entries in it had every signature verify (:class:`VerifiedChunks`). A later audit
skips the Ed25519 checks of those entries only when the chunk's recomputed hash is
the same (so the bytes are the ones verified) and the candidate keys are the same
(so the verdicts would be); everything else is checked again, and the registry fold,
roles and replay always run in full.
"""

from __future__ import annotations

import base64
import os
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from scalegate.audit._state_file import locked_state, read_json, write_json
from scalegate.errors import VerificationError
from scalegate.ledger import PriorCheck

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


class VerifiedChunks(BaseModel):
    """Signature verdicts an audit established, for reuse by the next audit of the log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk: int  # entries per chunk (aligned, from index 0)
    candidates: str  # digest of the candidate keys the verdicts were reached with
    tops: list[str]  # base64 subtree hash of each chunk, recomputed from the entry bytes
    clean: str  # base64 of zlib of a bitmap: entry i had every signature verify

    def clean_bits(self) -> bytes:
        """The bitmap (bit ``i % 8`` of byte ``i // 8`` is entry ``i``)."""
        return zlib.decompress(base64.b64decode(self.clean))

    def as_prior(self) -> PriorCheck:
        """The record in the form the whole-log check reuses."""
        return PriorCheck(self.chunk, self.candidates,
                          [base64.b64decode(t) for t in self.tops], self.clean_bits())

    @staticmethod
    def make(chunk: int, candidates: str, tops: list[bytes], clean: bytearray
             ) -> VerifiedChunks:
        """Build the record from raw hashes and a bitmap."""
        return VerifiedChunks(
            chunk=chunk, candidates=candidates,
            tops=[base64.b64encode(t).decode("ascii") for t in tops],
            clean=base64.b64encode(zlib.compress(bytes(clean), 6)).decode("ascii"))


def log_id(origin: str, log_vkey: str) -> str:
    """The state file's name for a log: its origin and its verifier key."""
    return f"{origin} {log_vkey}"


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


def _read(path: Path) -> dict[str, dict[str, Any]]:
    data = read_json(path, _fail)
    if data is None:
        return {}
    if data.get("version") != _VERSION or not isinstance(data.get("logs"), dict) or not all(
            isinstance(r, dict) for r in data["logs"].values()):
        raise _fail(f"{path} is not an auditor state file (version {_VERSION})")
    return data["logs"]


def _logs(path: Path) -> dict[str, list[SeenCheckpoint]]:
    try:
        return {log: [SeenCheckpoint.model_validate(c) for c in rec["checkpoints"]]
                for log, rec in _read(path).items()}
    except (ValidationError, KeyError, TypeError) as exc:
        raise _fail(f"{path} is damaged ({str(exc)[:200]})") from None


def load_seen(path: Path, log: str, *, origin: str | None = None,
              genuine: Callable[[str], bool] | None = None) -> list[SeenCheckpoint]:
    """The checkpoints accepted before for ``log`` (:func:`log_id`), by size (none when no
    state file). State files of earlier versions named a log by its ``origin`` alone: when
    ``log`` has no record, the origin's checkpoints whose notes are ``genuine`` (signed by
    this log's key) are taken instead, so an upgrade forgets nothing it saw."""
    logs = _logs(path)
    seen = logs.get(log)
    if seen is None and origin is not None:
        seen = [c for c in logs.get(origin, []) if genuine is None or genuine(c.note)]
    return sorted(seen or [], key=lambda c: c.size)


def load_verified(path: Path, log: str) -> VerifiedChunks | None:
    """The signature verdicts recorded for ``log`` (``None`` when there are none)."""
    rec = _read(path).get(log, {}).get("verified")
    if rec is None:
        return None
    try:
        out = VerifiedChunks.model_validate(rec)
        out.clean_bits()
    except (ValidationError, ValueError, zlib.error) as exc:
        raise _fail(f"{path} is damaged ({str(exc)[:200]})") from None
    return out


def record_seen(path: Path, log: str, size: int, root: bytes, note: str) -> bool:
    """Remember an accepted checkpoint; return whether it was new."""
    with locked_state(path, _fail):
        logs = _read(path)
        seen = load_seen(path, log)
        if any(c.size == size and c.root == root for c in seen):
            return False
        seen.append(SeenCheckpoint(
            size=size, root_hash=base64.b64encode(root).decode("ascii"), note=note,
            seen_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        ))
        seen.sort(key=lambda c: c.size)
        if len(seen) > _MAX_PER_LOG:  # keep the first and the latest ones
            del seen[1 : len(seen) - _MAX_PER_LOG + 1]
        logs.setdefault(log, {})["checkpoints"] = [c.model_dump() for c in seen]
        _write(path, logs)
    return True


def record_verified(path: Path, log: str, verified: VerifiedChunks) -> None:
    """Remember the signature verdicts of an audit (replacing the previous ones)."""
    with locked_state(path, _fail):
        logs = _read(path)
        rec = logs.setdefault(log, {})
        rec.setdefault("checkpoints", [])
        rec["verified"] = verified.model_dump()
        _write(path, logs)


def _write(path: Path, logs: dict[str, dict[str, Any]]) -> None:
    write_json(path, {"version": _VERSION, "logs": logs}, _fail)
