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
from scalegate.ledger._tree_check import CHUNK_LEVEL, TreeCheck, TreeState
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
class SweepState:
    """What a sweep folded over entries ``[0, size)``: enough for a later sweep of the
    same, longer log to go on from ``size`` without reading them again (picklable).

    A sweep resumed from it takes ownership: the state is folded on in place."""

    size: int
    signers: SignerCheck
    tree: TreeState
    roots: dict[int, bytes]  # the recomputed roots at the sizes asked so far
    time_at: dict[int, datetime]
    statement_at: dict[int, int]
    latest_time: datetime | None
    latest_claimed: datetime | None
    tops: list[bytes]  # the verified whole chunks' tops (for an auditor's state file)
    clean: bytes
    node_findings: set[str]  # stored-node problems reported (re-read chunks repeat them)

    @property
    def start(self) -> int:
        """The first entry a sweep going on from here reads: its chunk's first."""
        return self.size - self.size % CHUNK

    def covers(self, size: int, sizes: Collection[int], time_sizes: Collection[int]) -> bool:
        """Whether a sweep of a log of ``size`` entries wanting ``sizes`` and
        ``time_sizes`` can go on from here: the log has not shrunk, and what it wants
        below the chunk a resumed sweep starts at was kept."""
        start = self.start
        return self.size <= size and all(s >= start or s in self.roots for s in sizes) and all(
            s >= start or s in self.time_at or s == self.size for s in time_sizes)


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
    resume: SweepState | None = None
    streamed: Callable[[], None] | None = None

    chunk: ClassVar[int] = CHUNK  # entries per chunk (aligned, from index 0)

    def __post_init__(self) -> None:
        self.size = self.reader.size()
        self.time_sizes = set(self.time_sizes)
        r = self.resume
        assert r is None or r.covers(self.size, self.sizes, self.time_sizes), \
            "resume only a sweep that covers this one (SweepState.covers)"
        self._from = r.size if r is not None else 0  # entries before it were folded before
        start = r.start if r is not None else 0  # the chunk the sweep reads from
        self.latest_time: datetime | None = None
        self.time_at: dict[int, datetime] = {}  # size -> latest entry time before it
        self._known_roots: dict[int, bytes] = {}
        self._statement_at: dict[int, int] = {}  # statement identity -> first entry holding it
        self._latest_claimed: datetime | None = None
        self.tops: list[bytes] = []  # the chunks' recomputed tops, while chunks are whole
        self._node_findings: set[str] = set()
        if r is None:
            self.signers = SignerCheck(self.roots, self.allowed_roles, self._v, self.findings)
        else:
            self.signers = r.signers.rebind(self.allowed_roles, self._v, self.findings)
            self.latest_time, self._latest_claimed = r.latest_time, r.latest_claimed
            self.time_at, self._known_roots = dict(r.time_at), dict(r.roots)
            if r.latest_time is not None:
                self.time_at.setdefault(r.size, r.latest_time)
            self._statement_at, self.tops = r.statement_at, list(r.tops)
            self._node_findings = r.node_findings
        self.tree = TreeCheck(self.reader, self.size, {s for s in self.sizes if start <= s
                                                       <= self.size} | {self.size},
                              self.findings, r.tree if r is not None else None)
        self.candidates = ""  # digest of the candidate keys the signatures were checked with
        self.clean = bytearray()  # bit i: entry i's signatures all verified
        self._last_text, self._last_time = "", datetime.min  # the last appended_at parsed
        self._signatures = 0
        self.mirror = "mirror_of" in self.reader.meta()  # entries without appended_at

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
        known = self._known_roots.get(size)
        return known if known is not None else self.tree.root(size)

    def run(self) -> LogSweep:
        """Check every entry (from where ``resume`` stopped) and the tree; returns ``self``.
        ``streamed`` is called after the entries, before the levels above the chunks."""
        candidates = candidate_keys(self.roots, self.reader.key_entries())
        self.candidates = candidates_digest(candidates)
        self._stream(candidates)
        if self.streamed:
            self.streamed()
        self.tree.finish()
        return self

    def state(self) -> SweepState:
        """What this sweep folded, for a later one to go on from (it owns the state)."""
        roots = dict(self._known_roots)
        for size in {s for s in self.sizes if s <= self.size} | {self.size}:
            roots[size] = self.root(size)
        return SweepState(
            self.size, self.signers, self.tree.state(), roots, dict(self.time_at),
            self._statement_at, self.latest_time, self._latest_claimed, list(self.tops),
            bytes(self.clean), self._node_findings)

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
        if self.resume is not None:
            known = self.resume.clean[: (self._from + 7) >> 3]  # none set from _from on
            self.clean[: len(known)] = known
        pending: collections.deque[tuple[int, Future[ChunkVerdict]]] = collections.deque()
        payloads = self.on_entry is not None  # a consumer reads statements: decode them once
        try:
            for a in range(self._from - self._from % CHUNK, n, CHUNK):
                b = min(a + CHUNK, n)
                args = (a, b, self.tree.wanted(a, b), self.full, payloads, _prior(prior, a, b))
                if pool is not None:
                    pending.append((a, pool.submit(check_chunk, *args, first=self._from)))
                    while len(pending) > 2 * workers:
                        self._fold(*pending.popleft())
                else:
                    self._fold(a, check_chunk(*args, reader=self.reader, first=self._from))
            while pending:
                self._fold(*pending.popleft())
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    # --- the in-order fold ---------------------------------------------------------------------

    def _fold(self, a: int, got: Future[ChunkVerdict] | ChunkVerdict) -> None:
        result = got.result() if isinstance(got, Future) else got
        columns, chunk_tree, checked = result.columns, result.tree, result.checked
        if a < self._from:  # partly folded before: take only what is new
            chunk_tree, columns = self._after(a, chunk_tree, columns)
        for f in chunk_tree.findings:
            if f.kind == "tree-node":
                self._node_findings.add(f.message)
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
            if cols is not None and cols[0] >= self._from:
                row, verdict = _new(Columns, cols), as_verdict(next(it))
                self._entry(row, leaf, verdict, undecoded)
                if verdict.clean and 0 <= row.index < 8 * len(clean):
                    clean[row.index >> 3] |= 1 << (row.index & 7)
        self.findings.count("entries", len(checked))
        self.findings.count("signatures", self._signatures)
        self._signatures = 0
        if self.progress:
            self.progress(a + len(columns), self.size)

    def _after(self, a: int, tree: Any, columns: list[Any]) -> tuple[Any, list[Any]]:
        """A re-read chunk's results without what an earlier sweep folded and reported
        (its entries before ``_from`` were only hashed into the tree again)."""
        kept = [f for f in tree.findings if f.index >= self._from or (
            f.index < 0 and f.message not in self._node_findings)]
        counted = sum((self._from - a) >> level for level in range(1, CHUNK_LEVEL + 1))
        return tree._replace(findings=kept, nodes=max(0, tree.nodes - counted)), [
            c if c is None or c[0] >= self._from else (c[0],) for c in columns]

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


__all__ = ["CHUNK", "CLOCK_SKEW", "CheckedEntry", "LogSweep", "PriorCheck", "SweepState"]
