"""The ledger's own verdict on itself: the whole-log check under the roots it records.

:func:`verify_ledger` trusts nothing the database derived. It runs the whole-log check
(:class:`~scalegate.ledger._verify.LogSweep`: every leaf hash recomputed from the entry
bytes and every stored node held against the level below, every envelope and signature,
the key registry re-folded in log order from the organisation roots the ledger records,
the indexed columns and times held against the entries) alongside SQLite's structural
check of the file (``PRAGMA quick_check``); then checks each issued checkpoint's log
signature, origin and root against the recomputed tree, and compares the folded
registry with the ``keys`` cache. It also says what no check can reach
(:attr:`IntegrityReport.unverified`, :mod:`~scalegate.ledger._coverage`): entries no
signed checkpoint covers, checkpoints gone missing.

Its trust roots are the ones recorded in the ledger (log verifier key, organisation
roots); an outside auditor pins its own instead (``scalegate verify``), through the
same check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scalegate.errors import NoteError, StoreError
from scalegate.ledger import merkle
from scalegate.ledger._coverage import ISSUED_KEY, Coverage, issued_count
from scalegate.ledger._reader import LedgerReader
from scalegate.ledger._verify import LogSweep
from scalegate.ledger.registry import KeyRegistry, RegisteredKey
from scalegate.ledger.statements import Ref

if TYPE_CHECKING:
    from scalegate.ledger.log import Ledger

__all__ = ["IntegrityReport", "verify_ledger"]

_MAX_PROBLEMS = 200
#: Findings about the stored tree (the root is then not the entries' own).
_TREE_KINDS = frozenset({"entry-missing", "leaf-hash", "tree-node"})
_COUNTERS = {"entries": "entries_checked", "signatures": "signatures_checked",
             "nodes": "nodes_checked"}


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

    def violation(self, kind: str, message: str, refs: list[Ref] | None = None, *,
                  run_id: str | None = None, checkpoint_size: int | None = None) -> None:
        """A finding of the whole-log check, recorded as a problem."""
        self.add(message, tree=kind in _TREE_KINDS)

    def count(self, name: str, n: int = 1) -> None:
        """A count of the whole-log check (entries, signatures, nodes checked)."""
        attr = _COUNTERS.get(name)
        if attr is not None:
            setattr(self, attr, getattr(self, attr) + n)


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
    ``full=False`` validates only the fields the whole-log checks read instead of every
    predicate field. ``progress(done, total)`` is called after each chunk.
    """
    start = time.perf_counter()
    store = ledger.store
    report = IntegrityReport(ledger.path, ledger.origin, 0)
    # SQLite's page-level check reads the whole file in C without the GIL: it runs beside
    # the sweep, in a thread started once the sweep's helper processes are forked.
    damage_check = ThreadPoolExecutor(max_workers=1)
    damage: list[Future[list[str]]] = []
    try:
        with LedgerReader.open(store.location) as reader:
            checkpoints = reader.checkpoints()
            meta = reader.meta()
            sweep = LogSweep(
                reader, ledger.org_roots, report, sizes={c[0] for c in checkpoints},
                workers=workers, full=full, progress=progress,
                started=lambda: damage.append(damage_check.submit(store.structure_problems)))
            report.size = sweep.size
            sweep.run()
            if progress:
                progress(sweep.size, sweep.size)  # also when entries were missing
    finally:
        damage_check.shutdown(wait=True)
    for d in damage[0].result() if damage else []:
        report.add(f"database file: {d}", tree=True)
    n = report.size
    if report.tree_ok:
        report.root = sweep.root(n)
    _check_checkpoints(ledger, checkpoints, sweep, report)
    report.coverage = Coverage(n, report.latest_checkpoint or 0, issued_count(meta),
                               len(checkpoints), meta.get(ISSUED_KEY))
    if report.coverage.issued is not None and report.coverage.issued < len(checkpoints):
        report.add(f"the checkpoints table holds {len(checkpoints)} checkpoints but the log "
                   f"meta records {report.coverage.issued} issued: one of them was altered.")
    _check_key_cache(ledger, sweep.registry, report)
    report.keys = len(sweep.registry)
    report.seconds = time.perf_counter() - start
    return report


def _check_key_cache(ledger: Ledger, registry: KeyRegistry, report: IntegrityReport) -> None:
    store = ledger.store
    try:
        with store.reader() as conn:
            cached: list[RegisteredKey] = store.load_keys(conn)
    except StoreError as exc:
        report.add(exc.message)
        return
    if registry != KeyRegistry(ledger.org_roots, cached):
        report.add("the keys table (registry cache) differs from the key statements in the log.")


def _check_checkpoints(
    ledger: Ledger, checkpoints: list[tuple[int, bytes, str, str]], sweep: LogSweep,
    report: IntegrityReport,
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
        if size > report.size:
            report.add(f"checkpoint for size {size} covers entries the log no longer has "
                       f"({report.size}).")
            continue
        if report.tree_ok and sweep.root(size) != cp.root_hash:
            report.add(f"checkpoint for size {size}: its signed root differs from the tree's; "
                       "the log was rewritten after the checkpoint was issued.")
        report.latest_checkpoint = size
