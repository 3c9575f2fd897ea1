"""An audit that goes on where the last one stopped, for a monitor following a log.

A log only grows, so an audit of it can keep what it folded: the key registry, the
statements seen, the tops of the chunks it hashed, the entry times, what it found, and
every run's statements as replay reads them. The next audit of the same log, under the
same trust file, reads only the entries it has not folded (and the chunk it stopped
in), and costs per new entry. Everything that depends on more than the entries (the
checkpoints and their witnesses, the time-stamps, each run's replay and the policies
it is held to, deadlines at the audit time) is judged again every time, from the
folded state.

Anything that does not follow (a log that shrank, a trust file or ledger that changed,
a checkpoint size below where the fold can reach, an audit that stopped on bad data)
starts afresh: the result is always that of a whole audit of the log as it is.

:meth:`IncrementalAudit.save` keeps the fold in a file, authenticated with a key the
caller keeps elsewhere (the registry keeps it in its database), so that a monitor
restarted, or killed, goes on from its last save; a file that does not authenticate is
ignored, never loaded. The runs' statements are kept as the entries they came from (a
few bytes each): a fold read back parses them again from the ledger, once, without
checking again what it checked (signatures, signers, the tree).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import pickle
import tempfile
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from scalegate.audit.report import AuditReport, Violation
from scalegate.audit.runcheck import LedgerAudit, RunCollector, audit_ledger
from scalegate.audit.trust import TrustFile
from scalegate.ledger import CheckedEntry, LedgerReader, SweepState
from scalegate.ledger._entry_check import decode_envelope
from scalegate.ledger._tables import parse_time
from scalegate.policy import Policy

__all__ = ["IncrementalAudit"]

_MAGIC = b"scalegate incremental audit 1\n"


class IncrementalAudit:
    """The audits of one log, each going on from the last (see the module docstring)."""

    def __init__(self) -> None:
        self.identity = ""  # the ledger and trust file the fold is of
        self.sweep: SweepState | None = None
        self.collector = RunCollector()
        #: What the collector took: (index, signer keyid, kind, run id) of each entry.
        self.collected: list[tuple[int, str | None, str | None, str | None]] = []
        self._names: dict[str | None, str | None] = {}  # one object per repeated name
        self._restore = False  # read back from a file: the collector is to be rebuilt
        #: What holding the runs to other policies read of them (it grows with the runs).
        self.held_read: dict[tuple[str, str], Any] = {}
        self.time_checks: dict[str, Any] = {}  # each run's time checks (they grow with it)
        self.kept: list[Violation] = []  # what the fold found, as the report keeps them
        self.violation_counts: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self._marks: tuple[int, dict[str, int], dict[str, int]] = (0, {}, {})
        #: Where the last audit began reading the log (0: it read it whole).
        self.read_from = 0

    @property
    def ready(self) -> bool:
        """Whether :attr:`collector` holds the runs' statements (a fold read back from a
        file has them again after its next audit)."""
        return not self._restore

    @property
    def size(self) -> int:
        """How many entries the fold has taken (0 before the first audit)."""
        return self.sweep.size if self.sweep is not None else 0

    def audit(self, ledger: str | os.PathLike[str], trust: TrustFile, *,
              now: datetime | None = None, held_to: Sequence[Policy] = (),
              state_path: str | os.PathLike[str] | None = None,
              workers: int | None = None) -> LedgerAudit:
        """Audit ``ledger`` as :func:`~scalegate.audit.audit_ledger` does (every run
        replayed), reading only what the last audit did not."""
        return audit_ledger(ledger, trust, now=now, held_to=held_to, state_path=state_path,
                            workers=workers, incremental=self)

    # --- the audit's side (scalegate.audit.logcheck) -----------------------------------------

    def collect(self, e: CheckedEntry) -> None:
        """Take one entry the audit checked (its ``on_entry``)."""
        if RunCollector.wants(e):
            names = self._names
            self.collected.append((e.index, names.setdefault(e.signer_keyid, e.signer_keyid),
                                   names.setdefault(e.kind, e.kind),
                                   names.setdefault(e.run_id, e.run_id)))
            self.collector(e)

    def resume(self, reader: LedgerReader, trust: TrustFile, size: int,
               sizes: Collection[int], time_sizes: Collection[int],
               report: AuditReport) -> SweepState | None:
        """The fold to go on from for this audit, its findings put back in ``report``;
        ``None`` (and the fold emptied) when this audit must read the log whole."""
        identity = _identity(reader.location, trust)
        state = self.sweep
        if state is None or identity != self.identity or not state.covers(
                size, sizes, time_sizes) or (self._restore and not self._rebuild(reader)):
            self.reset()
            state = None
        self.identity = identity
        self.read_from = state.start if state is not None else 0
        self._marks = (len(report.violations), dict(report.violation_counts),
                       dict(report.counts))
        if state is not None:
            report.violations.extend(self.kept)
            _add(report.violation_counts, self.violation_counts)
            _add(report.counts, self.counts)
        return state

    def streamed(self, report: AuditReport) -> None:
        """Every entry is folded: keep what the fold found (not what is judged afresh)."""
        first, vc, counts = self._marks
        self.kept = list(report.violations[first:])
        self.violation_counts = _less(report.violation_counts, vc)
        self.counts = _less(report.counts, counts)

    def folded(self, state: SweepState) -> None:
        """The audit's fold, for the next one to go on from."""
        self.sweep = state

    def reset(self) -> None:
        """Forget the fold: the next audit reads the log whole."""
        self.sweep = None
        self.collector, self.collected, self._names = RunCollector(), [], {}
        self._restore, self.held_read, self.time_checks = False, {}, {}
        self.kept, self.violation_counts, self.counts = [], {}, {}

    def _rebuild(self, reader: LedgerReader) -> bool:
        """The runs' statements again, from the entries the fold took (read back from a
        file); whether every one was there."""
        assert self.sweep is not None
        registry, collector = self.sweep.signers.registry, RunCollector()
        taken = self.collected
        for a in range(0, len(taken), 4096):
            part = taken[a:a + 4096]
            rows = {r.index: r for r in reader.entries(part[0][0], part[-1][0] + 1)}
            for index, keyid, kind, run_id in part:
                row = rows.get(index)
                if row is None:
                    return False
                try:
                    payload = decode_envelope(row.data)[1]
                    when = parse_time(row.appended_at) if row.appended_at else None
                except Exception:  # the bytes changed since: read the log whole
                    return False
                collector(CheckedEntry(index, row.leaf_hash, b"", kind, run_id, when, keyid,
                                       registry.get(keyid) if keyid else None, True, payload))
        self.collector, self._restore = collector, False
        self.held_read, self.time_checks = {}, {}
        return True

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()
                if k not in ("collector", "_names", "_marks", "held_read", "time_checks")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        self.__dict__.update(state)
        self._restore = True

    # --- keeping it --------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], key: bytes) -> None:
        """Write the fold to ``path`` atomically, authenticated under ``key``."""
        body = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
        tag = hmac.new(key, _MAGIC + body, hashlib.sha256).digest()
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + tag + body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str], key: bytes) -> IncrementalAudit:
        """The fold saved in ``path`` under ``key``; an empty one when there is none, or
        it does not authenticate (then it is never unpickled)."""
        out = cls()
        try:
            data = Path(path).read_bytes()
        except OSError:
            return out
        tag, body = data[len(_MAGIC):len(_MAGIC) + 32], data[len(_MAGIC) + 32:]
        want = hmac.new(key, _MAGIC + body, hashlib.sha256).digest()
        if not data.startswith(_MAGIC) or not hmac.compare_digest(tag, want):
            return out
        try:
            got = pickle.loads(body)
        except Exception:  # a save of another version: start afresh
            return out
        return got if isinstance(got, cls) and got.sweep is not None else out


def _identity(ledger: str, trust: TrustFile) -> str:
    return hashlib.sha256(f"{ledger}\n{trust.to_yaml()}".encode()).hexdigest()


def _add(into: dict[str, int], more: dict[str, int]) -> None:
    for k, n in more.items():
        into[k] = into.get(k, 0) + n


def _less(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in now.items() if n != before.get(k, 0)}
