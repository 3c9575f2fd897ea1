"""Check a whole ledger from its raw rows: tree, checkpoints, envelopes and who signed them.

:func:`verify_ledger` trusts nothing the database derived. It runs SQLite's structural
check of the file (``PRAGMA quick_check``), recomputes every leaf
hash from the stored entry bytes and every stored interior node from the level below
(level by level, so each stored hash is compared once), checks each issued checkpoint's
log signature, origin and root, verifies every envelope's signature and re-folds the
key registry in log order (a signer must have been registered before the entry and be
valid at the entry's ``appended_at``), and compares the folded registry with the
``keys`` cache. It also says what no check can reach (:attr:`IntegrityReport.unverified`,
:mod:`~scalegate.ledger.coverage`): entries no signed checkpoint covers, checkpoints gone
missing. The log is taken in aligned chunks, each read, hashed and checked by
one of ``workers`` helper processes with its own read connection
(:mod:`~scalegate.ledger.chunk_check`); this process folds their verdicts in log order.

Trust roots are the ones recorded in the ledger (log verifier key, organisation roots);
an outside auditor pins its own instead (``scalegate verify``).
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scalegate.errors import (
    EnvelopeError,
    KeyMaterialError,
    KeyNotAuthorized,
    NoteError,
    SignatureError,
    StatementError,
    StoreError,
)
from scalegate.ledger import merkle
from scalegate.ledger.chunk_check import (
    CHUNK_LEVEL,
    ChunkVerdict,
    check_chunk,
    check_level,
    init_helper,
)
from scalegate.ledger.coverage import ISSUED_KEY, Coverage, issued_count
from scalegate.ledger.entry_check import init_keys
from scalegate.ledger.envelope import Envelope
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.registry import KEY_KINDS, KeyRegistry, RegisteredKey
from scalegate.ledger.schema import EntryRow, parse_time
from scalegate.ledger.statements import parse_statement
from scalegate.units import counted

if TYPE_CHECKING:
    from scalegate.ledger.log import Ledger

__all__ = ["IntegrityReport", "verify_ledger"]

_CHUNK = 1 << CHUNK_LEVEL
_MAX_PROBLEMS = 200


@dataclass
class IntegrityReport:
    """What :func:`verify_ledger` checked and every problem it found (``ok`` when none)."""

    path: str
    origin: str
    size: int
    root: bytes = merkle.EMPTY_ROOT
    entries_checked: int = 0
    signatures_checked: int = 0
    nodes_checked: int = 0
    checkpoints_checked: int = 0
    latest_checkpoint: int | None = None
    keys: int = 0
    problems: list[str] = field(default_factory=list)
    problems_total: int = 0
    tree_ok: bool = True
    seconds: float = 0.0
    coverage: Coverage | None = None
    #: statement identity -> the first entry holding it (a second one is a replay)
    statements: dict[int, int] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """True when every check held (see :attr:`unverified` for what no check could
        reach)."""
        return self.problems_total == 0

    @property
    def unverified(self) -> list[str]:
        """Why no signed checkpoint vouches for the log (empty when checkpoints cover it,
        up to its tail): no checkpoint over its entries, or checkpoints gone missing."""
        return self.coverage.unverified() if self.coverage is not None else []

    @property
    def unverified_tail(self) -> tuple[int, int] | None:
        """First and last index of the entries after the latest checkpoint that held."""
        return self.coverage.tail if self.coverage is not None else None

    def add(self, problem: str, *, tree: bool = False) -> None:
        """Record a problem (the first 200 are kept verbatim, the rest counted)."""
        self.problems_total += 1
        self.tree_ok = self.tree_ok and not tree
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(problem)


# --- the whole check --------------------------------------------------------------------------


def verify_ledger(
    ledger: Ledger,
    *,
    workers: int | None = None,
    full: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> IntegrityReport:
    """Check everything in ``ledger`` (see the module docstring); never raises on findings.

    ``workers`` processes read and check the chunks (default: one per core, none for
    small logs); they are forked where the platform can and open the ledger themselves,
    so in a program whose other threads use SQLite meanwhile, pass ``workers=1``.
    ``full=False`` validates only the envelope, kind and run of non-key statements
    instead of every predicate field. ``progress(done, total)`` is called after each
    chunk.
    """
    start = time.perf_counter()
    store = ledger.store
    with store.reader() as conn:
        n = store.size_in(conn)
        counts = store.node_counts(conn)
        key_rows = store.entries_by_index(conn, store.key_statement_indices(conn))
        damaged_cache = ""
        try:
            cached_keys: list[RegisteredKey] | None = store.load_keys(conn)
        except StoreError as exc:
            cached_keys, damaged_cache = None, exc.message
        checkpoints = store.checkpoints(conn)
        meta = store.meta_in(conn)
    report = IntegrityReport(ledger.path, ledger.origin, n)
    registry = KeyRegistry(ledger.org_roots)
    if workers is None:  # helper processes pay off from a few chunks on
        workers = (os.cpu_count() or 1) if n >= 4 * _CHUNK else 1
    tops = _check_chunks(ledger, n, _candidate_keys(key_rows), max(1, workers), full,
                         registry, report, progress)
    with store.reader() as conn:
        _check_upper_levels(store, conn, tops, n, report)
        for level, count in sorted(counts.items()):
            if level < 1:  # level 0 lives in entries; -1: a level that is no number
                report.add(f"the nodes table holds {counted(count, 'rows')} outside the tree's "
                           "levels (a level that is not a number of 1 or more).", tree=True)
                continue
            want = n >> level if level < 64 else 0
            if count != want:
                report.add(f"tree level {level} holds {counted(count, 'nodes')}; a tree of "
                           f"{counted(n, 'entries')} has {want}.", tree=True)
        if report.tree_ok:
            report.root = ledger._root_in(conn, n)
    _check_checkpoints(ledger, checkpoints, n, report)
    report.coverage = Coverage(n, report.latest_checkpoint or 0, issued_count(meta),
                               len(checkpoints), meta.get(ISSUED_KEY))
    if report.coverage.issued is not None and report.coverage.issued < len(checkpoints):
        report.add(f"the checkpoints table holds {len(checkpoints)} checkpoints but the log "
                   f"meta records {report.coverage.issued} issued: one of them was altered.")
    if cached_keys is None:
        report.add(damaged_cache)
    elif registry != KeyRegistry(ledger.org_roots, cached_keys):
        report.add("the keys table (registry cache) differs from the key statements in the log.")
    report.keys = len(registry)
    report.seconds = time.perf_counter() - start
    return report


def _candidate_keys(key_rows: list[EntryRow]) -> list[str]:
    """Every public key any key statement names: signatures are checked against these,
    standing is decided by the ordered fold."""
    candidates: dict[str, str] = {}
    for r in key_rows:
        try:
            st = parse_statement(Envelope.from_bytes(r.data).payload_bytes())
            if st.kind not in KEY_KINDS:  # a kind column that lies: reported with the entry
                continue
            vk = VerifierKey.parse(st.predicate.vkey)  # type: ignore[attr-defined]
            candidates.setdefault(vk.keyid, vk.text())
        except (EnvelopeError, StatementError, KeyMaterialError):
            continue  # reported when the entry itself is checked
    return list(candidates.values())


def _check_chunks(
    ledger: Ledger, n: int, candidates: list[str], workers: int, full: bool,
    registry: KeyRegistry, report: IntegrityReport,
    progress: Callable[[int, int], None] | None,
) -> list[bytes]:
    """Check every chunk of entries (in ``workers`` processes) and the database file's
    structure; fold the verdicts in index order; return the chunks' subtree hashes."""
    store = ledger.store
    roots = [r.text() for r in ledger.org_roots]
    pool = None
    if workers > 1:
        import multiprocessing

        from scalegate.ledger.signature_pool import _START

        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(_START),
            initializer=init_helper,
            initargs=(store.location, roots, candidates),
        )
        pool.submit(os.getpid)  # starts (forks) the helpers now, before the thread below
    else:
        init_keys(roots, candidates)
    # SQLite's page-level check reads the whole file in C without the GIL: overlap it. Its
    # thread starts after the helpers are forked: a fork while it holds one of SQLite's
    # mutexes would leave a helper's own SQLite deadlocked.
    damage_check = ThreadPoolExecutor(max_workers=1)
    damage_future = damage_check.submit(store.structure_problems)
    pending: collections.deque[Future[ChunkVerdict]] = collections.deque()
    tops: list[bytes] = []  # recomputed level-CHUNK_LEVEL hashes, chunk by chunk

    def take(verdict: Future[ChunkVerdict] | ChunkVerdict) -> None:
        _fold(verdict, tops, registry, report)
        if progress:
            progress(min(report.entries_checked, n), n)

    try:
        for a in range(0, n, _CHUNK):
            b = min(a + _CHUNK, n)
            if pool is None:
                take(check_chunk(a, b, full, store))
                continue
            pending.append(pool.submit(check_chunk, a, b, full))
            while len(pending) > 2 * workers:
                take(pending.popleft())
        while pending:
            take(pending.popleft())
        if progress:
            progress(n, n)  # also when entries were missing
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        damage_check.shutdown(wait=True)
    for d in damage_future.result():
        report.add(f"database file: {d}", tree=True)
    return tops


def _fold(
    verdict: Future[ChunkVerdict] | ChunkVerdict,
    tops: list[bytes],
    registry: KeyRegistry,
    report: IntegrityReport,
) -> None:
    """Apply one chunk's results to the report and the registry, in index order."""
    got = verdict.result() if isinstance(verdict, Future) else verdict
    for problem in got.problems:
        report.add(problem, tree=True)
    report.nodes_checked += got.nodes_checked
    if got.top is not None:
        tops.append(got.top)
    verifiers = registry.verifiers()
    # Entries of one batch share their signers and append time: the last standing verdict
    # (same signer ids, same appended_at, registry unchanged) is reused as is.
    last: tuple[list[str], str, VerifierKey] | None = None
    for (appended_at, signer_col), (idx, problem, kind, signer_ids, predicate, sid) in zip(
            got.columns, got.entries, strict=True):
        report.entries_checked += 1
        if problem is not None:
            report.add(problem)
            continue
        first = report.statements.setdefault(sid, idx)
        if first != idx:
            report.add(f"entry {idx} repeats the statement of entry {first} (the same signed "
                       "payload): a replay the log should have refused.")
        report.signatures_checked += len(signer_ids)
        try:
            if kind in KEY_KINDS:
                signers = [registry.roots[k] for k in signer_ids]
                org = getattr(predicate, "org", None)
                if org is None:  # a revocation: the registered key's org decides
                    reg = registry.get(VerifierKey.parse(predicate.vkey).keyid)
                    org = reg.org if reg else None
                signer = next((s for s in signers if s.name.split("/", 1)[0] == org), signers[0])
                registry.apply(idx, predicate, signer)
                verifiers, last = registry.verifiers(), None
            elif last is not None and last[1] == appended_at and last[0] == signer_ids:
                signer = last[2]
            else:
                try:
                    when = parse_time(appended_at)
                except ValueError as exc:
                    raise ValueError(f"its appended_at {exc}") from None
                signer = _standing_signer(signer_ids, verifiers, registry, when)
                last = (signer_ids, appended_at, signer)
            if signer.keyid != signer_col:
                report.add(f"entry {idx}: recorded signer {signer_col} is not the key that "
                           f"signed it ({signer.keyid}).")
        except (KeyNotAuthorized, SignatureError, KeyMaterialError, ValueError) as exc:
            report.add(f"entry {idx} ({kind}): {exc}")


def _standing_signer(
    signer_ids: list[str], verifiers: dict[str, VerifierKey], registry: KeyRegistry, when: Any
) -> VerifierKey:
    problem: Exception | None = None
    for kid in signer_ids:
        vk = verifiers.get(kid)
        if vk is None:
            problem = problem or KeyNotAuthorized(f"signer {kid} was not registered before it.")
            continue
        try:
            registry.check_signer(vk, when)
            return vk
        except KeyNotAuthorized as exc:
            problem = problem or exc
    raise problem or KeyNotAuthorized("no signer")


def _check_upper_levels(
    store: Any, conn: Any, tops: list[bytes], n: int, report: IntegrityReport
) -> None:
    cur, level = tops, CHUNK_LEVEL
    problems: list[str] = []
    while len(cur) > 1:
        level += 1
        cur = check_level(store, conn, level, 0, cur, problems)
        report.nodes_checked += len(cur)
    for problem in problems:
        report.add(problem, tree=True)


def _check_checkpoints(
    ledger: Ledger, checkpoints: list[tuple[int, bytes, str, str]], n: int, report: IntegrityReport
) -> None:
    from scalegate.ledger.checkpoint import open_checkpoint

    for size, root, note, _ in checkpoints:
        report.checkpoints_checked += 1
        try:
            cp, _ = open_checkpoint(note, ledger.log_vkey, origin=ledger.origin)
        except NoteError as exc:
            report.add(f"checkpoint for size {size}: {exc}")
            continue
        if cp.size != size or cp.root_hash != root:
            report.add(f"checkpoint for size {size}: the signed note says size {cp.size}; the "
                       "checkpoints table was altered.")
            continue
        if size > n:
            report.add(f"checkpoint for size {size} covers entries the log no longer has ({n}).")
            continue
        if report.tree_ok and ledger.root(size) != cp.root_hash:
            report.add(f"checkpoint for size {size}: its signed root differs from the tree's; "
                       "the log was rewritten after the checkpoint was issued.")
        report.latest_checkpoint = size
