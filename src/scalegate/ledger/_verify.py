"""The one whole-log check: every entry, the tree, every signature and who may sign, in
one pass over the raw rows, trusting only the roots it is given.

Both verdicts on a whole log run it: the ledger's own (:func:`~scalegate.ledger._integrity.
verify_ledger`, trusting the organisation roots the ledger records) and the auditor's
(:func:`scalegate.audit.audit_log`, trusting a trust file's roots and roles). Each
adds what only it knows (the ledger: its registry cache and its own checkpoints; the
auditor: witnesses, its state, time-stamps).

The log is read in aligned chunks (:mod:`~scalegate.ledger._chunks`), each read, hashed
and checked by one of ``workers`` helper processes with its own read connection. This
process folds their verdicts in log order: the tree above the chunks
(:mod:`~scalegate.ledger._tree_check`), the columns the ledger indexed (kind, run,
signer, time) against the entries, each statement logged once, and the key registry
re-folded from the trusted roots (:mod:`~scalegate.ledger._signers`).

An entry's time is the ledger's ``appended_at`` (not covered by the tree), so it is
itself checked: it may not go backwards beyond :data:`CLOCK_SKEW`. A mirror
(:mod:`~scalegate.ledger.mirror`) has no entry times, since tiles carry none: there each
signer is judged at the time its statement claims, and entry times are left to the
witnesses' cosignatures.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, NamedTuple

from scalegate.ledger._chunks import ChunkVerdict, Columns, Prior, check_chunk, init_helper
from scalegate.ledger._entry_check import (
    EntryVerdict,
    as_verdict,
    candidate_keys,
    candidates_digest,
    decode_envelope,
    set_candidates,
)
from scalegate.ledger._findings import Findings
from scalegate.ledger._reader import LedgerReader
from scalegate.ledger._signers import AllowedRoles, SignerCheck
from scalegate.ledger._tables import parse_time
from scalegate.ledger._tree_check import CHUNK_LEVEL, TreeCheck
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.registry import KEY_KINDS, KeyRegistry, RegisteredKey
from scalegate.ledger.statements import Ref, Statement, parse_statement

#: How far apart two honest clocks (the lab's, a witness's) may be.
CLOCK_SKEW = timedelta(minutes=5)
CHUNK = 1 << CHUNK_LEVEL  # entries per chunk
_new = tuple.__new__  # a named view of a plain tuple (helpers send plain ones: faster)
_MIN_PARALLEL = 2 * CHUNK  # below this, helper processes cost more than they save


@dataclass(frozen=True, slots=True)
class CheckedEntry:
    """One entry as the whole-log check saw it, handed to ``on_entry`` in log order.

    ``authentic`` is true when the envelope is well formed and validly signed by a key
    in standing (a trusted root for key statements, else a registered key valid at
    ``appended_at``); ``signer`` is that registered key (``None`` for key statements
    and unauthentic entries). ``leaf_hash`` is recomputed from the entry bytes.
    ``payload`` is the decoded statement when the envelope decoded; ``data`` holds the
    entry bytes only when it did not (the check does not copy what it already decoded).
    """

    index: int
    leaf_hash: bytes
    data: bytes
    kind: str | None
    run_id: str | None
    appended_at: datetime | None
    signer_keyid: str | None
    signer: RegisteredKey | None
    authentic: bool
    payload: bytes | None = None

    @property
    def ref(self) -> Ref:
        """``{index, leaf_hash}`` as statements reference entries."""
        return Ref(index=self.index, leaf_hash=self.leaf_hash.hex())

    def statement(self) -> Statement:
        """The parsed, fully validated statement (raises ``StatementError`` if malformed)."""
        payload = self.payload
        if payload is None:
            payload = decode_envelope(self.data)[1]
        return parse_statement(payload)


class PriorCheck(NamedTuple):
    """What an earlier check of the same log established, to be reused where the bytes
    are unchanged: per whole chunk (of ``chunk`` entries, from index 0) its recomputed
    top hash, and a bitmap of the entries whose signatures all verified, under the
    candidate keys whose digest is ``candidates``."""

    chunk: int
    candidates: str
    tops: list[bytes]
    bits: bytes  # bit ``i % 8`` of byte ``i // 8``: entry i


@dataclass
class LogSweep:
    """One pass over a log of ``size`` entries (see the module docstring).

    ``sizes`` are the tree sizes whose roots are wanted (:meth:`root`); ``time_sizes``
    those at which the latest entry time is kept (:attr:`time_at`). ``full`` validates
    every predicate with its model. ``on_entry`` receives every entry in log order
    (its statement bytes decoded once when it is given). ``started`` is called once the
    helper processes exist (work that starts threads belongs after it: a fork while
    another thread holds one of SQLite's mutexes would deadlock a helper).
    """

    reader: LedgerReader
    roots: Sequence[VerifierKey]
    findings: Findings
    allowed_roles: AllowedRoles | None = None
    sizes: Collection[int] = ()
    time_sizes: Collection[int] = ()
    workers: int | None = None
    full: bool = False
    on_entry: Callable[[CheckedEntry], None] | None = None
    progress: Callable[[int, int], None] | None = None
    prior: PriorCheck | None = None
    started: Callable[[], None] | None = None

    chunk: ClassVar[int] = CHUNK  # entries per chunk (aligned, from index 0)

    def __post_init__(self) -> None:
        self.size = self.reader.size()
        self.time_sizes = set(self.time_sizes)
        self.signers = SignerCheck(self.roots, self.allowed_roles, self._v, self.findings)
        self.tree = TreeCheck(self.reader, self.size, {s for s in self.sizes if s <= self.size}
                              | {self.size}, self.findings)
        self.latest_time: datetime | None = None
        self.time_at: dict[int, datetime] = {}  # size -> latest entry time before it
        self.candidates = ""  # digest of the candidate keys the signatures were checked with
        self.tops: list[bytes] = []  # the chunks' recomputed tops, while chunks are whole
        self.clean = bytearray()  # bit i: entry i's signatures all verified
        self._statement_at: dict[int, int] = {}  # statement identity -> first entry holding it
        self._last_text, self._last_time = "", datetime.min  # the last appended_at parsed
        self._signatures = 0
        self.mirror = "mirror_of" in self.reader.meta()  # entries without appended_at
        self._latest_claimed: datetime | None = None

    @property
    def registry(self) -> KeyRegistry:
        """The key registry folded from the trusted roots and the log's key statements."""
        return self.signers.registry

    @property
    def run_orgs(self) -> dict[str, str]:
        """Each run's organisation, as its ``run`` statement (or signer) set it."""
        return self.signers.run_orgs

    def root(self, size: int) -> bytes:
        """The recomputed root at ``size`` (the log's size or one of ``sizes``)."""
        return self.tree.root(size)

    def run(self) -> LogSweep:
        """Check every entry and the tree; returns ``self``."""
        candidates = candidate_keys(self.roots, self.reader.key_entries())
        self.candidates = candidates_digest(candidates)
        self._stream(candidates)
        self.tree.finish()
        return self

    # --- streaming the chunks ------------------------------------------------------------------

    def _stream(self, candidates: dict[str, tuple[bytes, ...]]) -> None:
        n = self.size
        prior = self.prior if self.prior and self.prior.candidates == self.candidates \
            and self.prior.chunk == CHUNK else None
        workers = (os.cpu_count() or 1) if self.workers is None else max(1, self.workers)
        pool = None
        if workers > 1 and n >= _MIN_PARALLEL:
            pool = ProcessPoolExecutor(
                max_workers=workers, initializer=init_helper,
                initargs=(self.reader.location, candidates),
                mp_context=multiprocessing.get_context(
                    "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"))
            pool.submit(os.getpid).result()  # the helpers exist (forked) from here on
        else:
            set_candidates(candidates)
        if self.started:
            self.started()
        self.clean = bytearray(-(-n // 8))
        pending: collections.deque[tuple[int, Future[ChunkVerdict]]] = collections.deque()
        payloads = self.on_entry is not None  # a consumer reads statements: decode them once
        try:
            for a in range(0, n, CHUNK):
                b = min(a + CHUNK, n)
                args = (a, b, self.tree.wanted(a, b), self.full, payloads, _prior(prior, a, b))
                if pool is not None:
                    pending.append((a, pool.submit(check_chunk, *args)))
                    while len(pending) > 2 * workers:
                        self._fold(*pending.popleft())
                else:
                    self._fold(a, check_chunk(*args, reader=self.reader))
            while pending:
                self._fold(*pending.popleft())
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    # --- the in-order fold ---------------------------------------------------------------------

    def _fold(self, a: int, got: Future[ChunkVerdict] | ChunkVerdict) -> None:
        result = got.result() if isinstance(got, Future) else got
        columns, chunk_tree, checked = result.columns, result.tree, result.checked
        gone = [a + i for i, c in enumerate(columns) if c is None]
        if gone:
            self.findings.violation(
                "entry-missing", f"entries {_span(gone)} are missing from the log; the tree "
                "cannot be recomputed.")
        self.tree.add(chunk_tree)
        if chunk_tree.whole and chunk_tree.top is not None and len(self.tops) == a // CHUNK:
            self.tops.append(chunk_tree.top)
        if result.reused:
            self.findings.count("signatures verified by an earlier audit (same bytes, same "
                                "keys)", result.reused)
        it = iter(checked)
        undecoded, clean = result.undecoded, self.clean
        for cols, leaf in zip(columns, chunk_tree.leaves, strict=True):
            if cols is not None:
                row, verdict = _new(Columns, cols), as_verdict(next(it))
                self._entry(row, leaf, verdict, undecoded)
                if verdict.clean and 0 <= row.index < 8 * len(clean):
                    clean[row.index >> 3] |= 1 << (row.index & 7)
        self.findings.count("entries", len(checked))
        self.findings.count("signatures", self._signatures)
        self._signatures = 0
        if self.progress:
            self.progress(a + len(columns), self.size)

    def _v(self, kind: str, message: str, at: tuple[int, bytes], *,
           run_id: str | None = None) -> None:
        self.findings.violation(kind, message, [Ref(index=at[0], leaf_hash=at[1].hex())],
                                run_id=run_id)

    def _entry(self, row: Columns, leaf: bytes, res: EntryVerdict,
               undecoded: dict[int, bytes]) -> None:
        idx = row.index
        at = (idx, leaf)  # made into a Ref only if a violation needs one
        if row.appended_at is None:
            when, judged_at = None, self._untimed(idx, res.facts, at)
        else:
            when = judged_at = self._time(idx, row.appended_at, at)
        if res.problem is not None:
            self._v(res.problem_kind or "envelope-malformed", f"entry {idx}: {res.problem}.", at)
            self._emit(idx, leaf, undecoded.get(idx, b""), None, None, when, None, None, False)
            return
        kind, run_id, facts = res.kind, res.run_id, res.facts
        if row.kind != kind or row.run_id != run_id:
            self._v("index-mismatch", f"entry {idx}: its indexed kind/run ({row.kind}, "
                    f"{row.run_id}) differ from the statement's ({kind}, {run_id}).", at,
                    run_id=run_id)
        self._signatures += len(res.verified)
        first = self._statement_at.setdefault(facts["sd"], idx)
        if first != idx:
            self._v("duplicate-statement", f"entry {idx} repeats the statement of entry "
                    f"{first} (the same signed payload): a replay the log should have "
                    "refused.", at, run_id=run_id)
        if kind in KEY_KINDS:
            keyid, reg = self.signers.key_statement(idx, facts, res.verified, res.failed,
                                                    at), None
            ok = keyid is not None
        else:
            reg = self.signers.signer(idx, kind or "", run_id, facts, judged_at, res.verified,
                                      res.failed, at)
            keyid, ok = (reg.keyid if reg else None), reg is not None
        if ok and keyid != row.signer:
            self._v("index-mismatch", f"entry {idx}: recorded signer {row.signer} is not the "
                    f"key that signed it ({keyid}).", at, run_id=run_id)
        self._emit(idx, leaf, b"", kind, run_id, when, keyid, reg, ok, facts.get("payload"))

    def _emit(self, idx: int, leaf: bytes, data: bytes, kind: str | None, run_id: str | None,
              when: datetime | None, keyid: str | None, reg: RegisteredKey | None,
              ok: bool, payload: bytes | None = None) -> None:
        if self.on_entry is not None:
            self.on_entry(CheckedEntry(idx, leaf, data, kind, run_id, when, keyid, reg, ok,
                                       payload))

    def _untimed(self, idx: int, facts: dict[str, Any], at: tuple[int, bytes]
                 ) -> datetime | None:
        """The time to judge an entry without ``appended_at`` by: in a mirror, the time its
        statement claims (one that claims none: the latest an earlier entry claimed);
        elsewhere none (a ledger writes a time with every entry)."""
        if not self.mirror:
            self._v("index-mismatch", f"entry {idx} has no appended_at (only a mirror's "
                    "entries lack one).", at)
            return None
        try:
            when = parse_time(facts["claimed"])
        except (KeyError, ValueError):
            return self._latest_claimed
        if self._latest_claimed is None or when > self._latest_claimed:
            self._latest_claimed = when
        return when

    def _time(self, idx: int, text: str, at: tuple[int, bytes]) -> datetime | None:
        if text == self._last_text:  # entries of one batch share their time
            when = self._last_time
        else:
            try:
                when = parse_time(text)
            except ValueError as exc:
                self._v("index-mismatch", f"entry {idx}: its appended_at {exc}.", at)
                return None
            self._last_text, self._last_time = text, when
        latest = self.latest_time
        if when == latest and idx + 1 not in self.time_sizes:
            return when
        if latest is not None and when < latest - CLOCK_SKEW:
            self._v("time-order", f"entry {idx} was appended at {_iso(when)}, before an "
                    f"earlier entry's {_iso(latest)}.", at)
        if latest is None or when > latest:
            self.latest_time = latest = when
        if idx + 1 in self.time_sizes:
            self.time_at[idx + 1] = latest
        return when


def _prior(prior: PriorCheck | None, a: int, b: int) -> Prior | None:
    """The earlier check's record of the whole chunk ``[a, b)``, if it has one."""
    c = a // CHUNK
    if prior is None or b - a != CHUNK or c >= len(prior.tops) or len(prior.bits) < b >> 3:
        return None
    return Prior(prior.tops[c], prior.bits[a >> 3 : b >> 3])


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _span(indices: list[int]) -> str:
    shown = ", ".join(map(str, indices[:5]))
    return shown + (f" … ({len(indices)} in all)" if len(indices) > 5 else "")


__all__ = ["CHUNK", "CLOCK_SKEW", "CheckedEntry", "LogSweep", "PriorCheck"]
