"""The log-level audit: everything about a ledger that can be checked from its entries
and a trust file, without trusting anything the ledger says about itself.

:func:`audit_log` opens the ledger read-only and, in one pass over the entries:

- verifies every stored checkpoint note against the *trusted* log key and origin, and
  anchors the audit on the largest one cosigned by the trusted witness quorum;
- recomputes every leaf hash from the entry bytes and the whole tree from them;
  compares the roots with every checkpoint and with every checkpoint this auditor
  accepted before (its state file), and every stored interior node with the
  recomputed tree (so a proof served from the store cannot lie);
- decodes every envelope and verifies every signature (in helper processes);
- re-folds the key registry from the entries using only the trusted organisation
  roots, and checks that each statement's signer was registered, valid at the entry's
  time and not revoked, holds a role the trust file allows for the kind (and the role
  an approval claims), and belongs to the organisation of the run it speaks for.
- verifies the stored RFC 3161 time-stamps against the trust file's authorities
  (:mod:`~scalegate.audit._timestamps`): each valid one an "existed by" time for the
  entries below its checkpoint.

The entry time is the ledger's ``appended_at`` (not covered by the tree), so it is
itself checked: it may not go backwards, nor lie after a witness cosigned a
checkpoint covering the entry (both beyond :data:`CLOCK_SKEW`).

It returns an :class:`~scalegate.audit.report.AuditReport`; ``on_entry`` receives
every entry in log order with its verdict, for replay to fold runs on the way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from scalegate.audit._checkpoints import StoredCheckpoint, verify_stored_checkpoints
from scalegate.audit._seen import (
    SeenCheckpoint,
    VerifiedChunks,
    default_state_path,
    load_seen,
    load_verified,
    log_id,
    record_seen,
    record_verified,
)
from scalegate.audit._times import witnessed
from scalegate.audit._timestamps import verify_stored_timestamps
from scalegate.audit.report import AuditReport, CheckpointSummary, WitnessTime
from scalegate.audit.trust import TrustFile
from scalegate.errors import ScalegateError, VerificationError
from scalegate.ledger import (
    CLOCK_SKEW,
    CheckedEntry,
    LedgerReader,
    LogSweep,
    open_checkpoint,
    shown_location,
)
from scalegate.units import counted

if TYPE_CHECKING:
    from scalegate.audit.incremental import IncrementalAudit

__all__ = ["audit_log"]

_GROUPS = {
    "tree recomputed from the entries": ("entry-missing", "leaf-hash", "tree-node"),
    "checkpoints agree with the tree": ("tree-root", "log-truncated"),
    "envelopes and signatures": ("envelope-malformed", "statement-malformed", "bad-signature"),
    "each statement logged once": ("duplicate-statement",),
    "signers registered, valid and not revoked": (
        "untrusted-root", "key-refused", "unregistered-signer", "revoked-signer",
        "signer-not-valid"),
    "roles and organisations": ("wrong-role", "wrong-org"),
    "derived columns (kind, run, signer)": ("index-mismatch",),
    "entry times": ("time-order", "time-after-witness"),
}


def audit_log(
    ledger: str | os.PathLike[str],
    trust: TrustFile,
    *,
    state_path: str | os.PathLike[str] | None = None,
    use_state: bool = True,
    workers: int | None = None,
    full: bool = False,
    on_entry: Callable[[CheckedEntry], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    report: AuditReport | None = None,
    incremental: IncrementalAudit | None = None,
) -> AuditReport:
    """Audit ``ledger`` (an SQLite file or database URL) against ``trust``; never raises on
    findings. See the module docstring for what is checked.

    ``state_path`` is the auditor's state file (default :func:`default_state_path`);
    with ``use_state=False`` no state is read or written. ``workers`` processes read and
    check the entries (default: one per core; small logs are checked in-process). They
    are forked where the platform can and open the ledger themselves: in a program whose
    other threads use SQLite meanwhile, pass ``workers=1``. (Forked from a process that has
    just freed a large heap — a previous audit's replay — they run up to ~40 % slower:
    their writes land in its scattered copy-on-write pages. ``scalegate verify`` runs in a
    fresh process.) ``full``
    validates every predicate with its model, not only what the log-level checks use.
    ``report`` is extended if given (for a caller that has its own checks).
    ``incremental`` goes on from the fold of its last audit of the same log
    (:mod:`scalegate.audit.incremental`), and keeps this one's.
    """
    start = time.perf_counter()
    rep = report or AuditReport(ledger=shown_location(os.fspath(ledger)), origin=trust.origin)
    try:
        reader = LedgerReader.open(ledger)
    except ScalegateError as exc:
        rep.check("ledger readable", False, exc.message, verifiable=False)
        return rep
    audit = _LogAudit(reader, trust, rep, workers, full, on_entry, progress)
    audit.incremental = incremental
    try:
        audit.run(Path(state_path) if state_path else default_state_path(), use_state)
    except ScalegateError as exc:
        rep.check("ledger readable", False, exc.message, verifiable=False)
    except Exception as exc:  # a tampered file must not crash the auditor: fail closed
        rep.check("audit completed", False, f"the audit stopped on unexpected data "
                  f"({type(exc).__name__}: {exc}); treat the ledger as unverified.",
                  verifiable=False)
    finally:
        if incremental is not None and not audit.finished:
            incremental.reset()  # a fold stopped half-way is no base for the next
        reader.close()
    rep.seconds = round(rep.seconds + time.perf_counter() - start, 3)
    return rep


class _LogAudit:
    def __init__(
        self,
        reader: LedgerReader,
        trust: TrustFile,
        report: AuditReport,
        workers: int | None,
        full: bool,
        on_entry: Callable[[CheckedEntry], None] | None,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.reader = reader
        self.trust = trust
        self.log = log_id(trust.origin, trust.log_verifier.text())  # in the state file
        self.report = report
        self.workers = workers
        self.full = full
        self.on_entry = on_entry
        self.progress = progress
        self.incremental: IncrementalAudit | None = None
        self.finished = False

    # --- the whole audit ---------------------------------------------------------------------

    def run(self, state_path: Path, use_state: bool) -> None:
        rep, reader, trust = self.report, self.reader, self.trust
        n = reader.size()
        rep.size = n
        differ = self._compare_meta(reader.meta())
        stored = verify_stored_checkpoints(reader.checkpoints(), trust, rep)
        if differ and not any(c.valid for c in stored):
            # Nothing ties this ledger to the trusted log: judging its entries against the
            # trust file's roots would only list every signer as unregistered.
            held = (f"none of its {counted(len(stored), 'checkpoints')} verifies" if stored
                    else "it holds no checkpoint to verify")
            rep.check("the trust file's log", False, f"this ledger says it is another log "
                      f"({differ}) and {held} under the trusted log key: it is not the log "
                      "the trust file names (or an impostor of it). Check that the trust "
                      "file is this ledger's.",
                      verifiable=False)
            return
        seen: list[SeenCheckpoint] = []
        prior: VerifiedChunks | None = None  # verdicts of this auditor's last audit
        if use_state:
            try:
                seen = load_seen(state_path, self.log, origin=trust.origin,
                                 genuine=self._signed_by_log)
                prior = load_verified(state_path, self.log)
            except VerificationError as exc:
                rep.check("auditor state", False, exc.message, verifiable=False)
                use_state = False
        sizes = {c.size for c in stored if c.valid} | {c.size for c in seen} | {n}
        time_sizes = {c.size for c in stored if c.valid and c.cosigned_at}
        inc = self.incremental
        resume = inc.resume(reader, trust, n, sizes, time_sizes, rep) \
            if inc is not None else None
        sweep = LogSweep(
            reader, trust.roots, rep, allowed_roles=trust.allowed_roles, sizes=sizes,
            time_sizes=time_sizes, workers=self.workers, full=self.full,
            on_entry=self.on_entry, progress=self.progress,
            prior=prior.as_prior() if prior else None, resume=resume,
            streamed=(lambda: inc.streamed(rep)) if inc is not None else None).run()
        self.run_orgs = sweep.run_orgs
        roots = {s: sweep.root(s) for s in sizes if s <= n}
        rep.root_hash = roots[n].hex() if sweep.tree.complete else None
        anchor = self._compare_checkpoints(stored, roots, n)
        consistent = self._compare_seen(seen, roots, n, use_state, anchor)
        self._witness_times(stored, sweep.time_at)
        self._witnessed(stored)
        verify_stored_timestamps(reader.timestamps(), {
            c.size: c.note for c in stored if c.valid and roots.get(c.size) == c.root},
            trust, rep)
        self._summarise(n)
        if inc is not None:
            inc.folded(sweep.state())
        self.finished = True
        if use_state and sweep.tops:
            record_verified(state_path, self.log, VerifiedChunks.make(
                sweep.chunk, sweep.candidates, sweep.tops,
                sweep.clean[: len(sweep.tops) * sweep.chunk // 8]))
        if use_state and anchor is not None and consistent and sweep.tree.complete \
                and roots.get(anchor.size) == anchor.root:
            new = record_seen(state_path, self.log, anchor.size, anchor.root, anchor.note)
            rep.check("auditor state", True, f"{'recorded' if new else 'already had'} the "
                      f"checkpoint of size {anchor.size} in {state_path}")

    def _signed_by_log(self, note: str) -> bool:
        try:
            open_checkpoint(note, self.trust.log_verifier, origin=self.trust.origin)
        except ScalegateError:
            return False
        return True

    def _compare_meta(self, meta: dict[str, str]) -> str:
        """Compare the ledger's own idea of its origin and key with the trust file's; the
        differences (empty when none)."""
        differ = []
        if meta.get("origin") != self.trust.origin:
            differ.append(f"origin {meta.get('origin')!r}")
        if meta.get("log_vkey") != self.trust.log_verifier.text():
            differ.append("log key " + str(meta.get("log_vkey", "?")).rsplit("+", 1)[0])
        detail = ("agrees with the trust file" if not differ else
                  "differs from the trust file (" + ", ".join(differ) + "); the trust file "
                  "is what counts")
        self.report.check("ledger's own configuration", True, detail)
        return ", ".join(differ)

    # --- after the pass ------------------------------------------------------------------------

    def _compare_checkpoints(
        self, stored: list[StoredCheckpoint], roots: dict[int, bytes], n: int
    ) -> StoredCheckpoint | None:
        rep = self.report
        for c in stored:
            if not c.valid:
                continue
            if c.size > n:
                rep.violation("log-truncated", f"the log signed a checkpoint of size {c.size} "
                              f"but holds {n} entries: entries were removed.",
                              checkpoint_size=c.size)
            elif roots[c.size] != c.root:
                rep.violation("tree-root", f"the signed checkpoint of size {c.size} has root "
                              f"{c.root.hex()[:16]}…, the entries give {roots[c.size].hex()[:16]}…:"
                              " the log was altered after it was signed.", checkpoint_size=c.size)
        anchor = max((c for c in stored if c.valid and c.quorum), key=lambda c: c.size,
                     default=None)
        k, total = self.trust.quorum, len(self.trust.witnesses)
        if anchor is None:
            why = ("the log has issued no checkpoint (its operator issues one with "
                   "`scalegate ledger checkpoint`, and witnesses cosign it)" if not stored else
                   "no stored checkpoint verifies under the trusted log key" if
                   not any(c.valid for c in stored) else
                   f"no checkpoint carries {k} of {total} trusted witness cosignatures")
            rep.check("witnessed checkpoint", False, why + "; nothing anchors the log.",
                      verifiable=False)
            return None
        rep.checkpoint = CheckpointSummary(
            size=anchor.size, root_hash=anchor.root.hex(), cosigned_by=anchor.cosigners,
            cosigned_at=anchor.cosigned_at, note=anchor.note)
        rep.check("witnessed checkpoint", True, f"size {anchor.size}, cosigned by "
                  f"{len(anchor.cosigners)} of {counted(total, 'trusted witnesses')} "
                  f"({k} required)"
                  + (f"; {n - anchor.size} later entries are not yet covered"
                     if n > anchor.size else ""))
        return anchor

    def _compare_seen(self, seen: list[SeenCheckpoint], roots: dict[int, bytes], n: int,
                      use_state: bool, anchor: StoredCheckpoint | None) -> bool:
        rep = self.report
        ok = True
        for c in seen:
            if c.size > n:
                ok = False
                rep.violation("log-rollback", f"this auditor accepted a checkpoint of size "
                              f"{c.size} on {c.seen_at}; the log now holds {n} entries.",
                              checkpoint_size=c.size)
            elif roots[c.size] != c.root:
                ok = False
                rep.violation("split-view", f"the log's tree at size {c.size} is not the one "
                              f"this auditor accepted on {c.seen_at}: history was rewritten or "
                              "this auditor is shown a different log.", checkpoint_size=c.size)
        if anchor is not None and seen and seen[-1].size > anchor.size:
            ok = False
            rep.violation("stale-checkpoint", f"the log's latest witnessed checkpoint has size "
                          f"{anchor.size}, but this auditor accepted one of size {seen[-1].size} "
                          f"on {seen[-1].seen_at}: the log serves a stale or rolled-back view.",
                          checkpoint_size=anchor.size)
        if use_state:
            rep.check("consistent with checkpoints seen before", ok,
                      f"{counted(len(seen), 'checkpoints')} remembered" + (
                          f", up to size {seen[-1].size}" if seen else ""))
        return ok

    def _witnessed(self, stored: list[StoredCheckpoint]) -> None:
        """The times the trusted witnesses vouch for, for replay to judge entries by."""
        for c in stored:
            w = witnessed(c.size, c.cosigned_at, self.trust.quorum) if c.valid else None
            if w is not None:
                self.report.witnessed_times.append(
                    WitnessTime(size=w.size, existed_by=w.existed_by, not_before=w.not_before))

    def _witness_times(self, stored: list[StoredCheckpoint],
                       time_at: dict[int, datetime]) -> None:
        for c in stored:
            latest = time_at.get(c.size)
            if not c.valid or not c.cosigned_at or latest is None:
                continue
            cosigned = datetime.fromtimestamp(min(c.cosigned_at), tz=latest.tzinfo)
            if latest > cosigned + CLOCK_SKEW:
                self.report.violation(
                    "time-after-witness", f"entries up to size {c.size} claim times up to "
                    f"{_iso(latest)}, after a witness cosigned that checkpoint at "
                    f"{_iso(cosigned)}: the log's times are wrong.", checkpoint_size=c.size)

    def _summarise(self, n: int) -> None:
        rep, c = self.report, self.report.counts
        c["runs"] = len(self.run_orgs)
        holds = {
            "tree recomputed from the entries": f"{n} leaves and {c.get('nodes', 0)} stored "
            f"nodes agree; root {rep.root_hash or '?'}",
            "checkpoints agree with the tree": "every signed checkpoint's root is the "
            "recomputed root at its size",
            "envelopes and signatures": f"{counted(c.get('entries', 0), 'envelopes')}, "
            f"{counted(c.get('signatures', 0), 'valid signatures')}",
            "each statement logged once": "no entry repeats another's signed statement",
            "signers registered, valid and not revoked":
            f"{counted(c.get('keys registered', 0), 'keys')} registered by trusted roots, "
            f"{c.get('keys revoked', 0)} revoked",
            "roles and organisations": f"{counted(len(self.trust.roles), 'role rules')}, "
            f"{counted(c['runs'], 'runs')}",
            "derived columns (kind, run, signer)": "agree with the entries",
            "entry times": "never go back, never after a witness cosigned them",
        }
        for name, kinds in _GROUPS.items():
            bad = sum(rep.violation_counts.get(k, 0) for k in kinds)
            rep.check(name, bad == 0, holds[name] if not bad else counted(bad, "violations"))


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
