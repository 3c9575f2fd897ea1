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

The entry time is the ledger's ``appended_at`` (not covered by the tree), so it is
itself checked: it may not go backwards, nor lie after a witness cosigned a
checkpoint covering the entry (both beyond :data:`CLOCK_SKEW`).

It returns an :class:`~scalegate.audit.report.AuditReport`; ``on_entry`` receives
every entry in log order with its verdict, for replay to fold runs on the way.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from scalegate.audit import _envelopes
from scalegate.audit._checkpoints import StoredCheckpoint, verify_stored_checkpoints
from scalegate.audit._reader import LedgerReader, Row
from scalegate.audit._seen import SeenCheckpoint, default_state_path, load_seen, record_seen
from scalegate.audit._tree import TreeAudit
from scalegate.audit.report import AuditReport
from scalegate.audit.trust import TrustFile
from scalegate.errors import KeyNotAuthorized, ScalegateError, VerificationError
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.registry import KEY_KINDS, KeyRegistry, RegisteredKey, org_of
from scalegate.ledger.statements import Ref, Statement, parse_statement

__all__ = ["CLOCK_SKEW", "AuditedEntry", "audit_log", "default_state_path"]

#: How far the log's clock may disagree with itself and with witnesses.
CLOCK_SKEW = timedelta(minutes=5)
_CHUNK = 1 << TreeAudit.CHUNK_LEVEL
_MIN_PARALLEL = 2 * _CHUNK  # below this, helper processes cost more than they save

_GROUPS = {
    "tree recomputed from the entries": ("entry-missing", "leaf-hash", "tree-node"),
    "checkpoints agree with the tree": ("tree-root", "log-truncated"),
    "envelopes and signatures": ("envelope-malformed", "statement-malformed", "bad-signature"),
    "signers registered, valid and not revoked": (
        "untrusted-root", "key-refused", "unregistered-signer", "revoked-signer",
        "signer-not-valid"),
    "roles and organisations": ("wrong-role", "wrong-org"),
    "derived columns (kind, run, signer)": ("index-mismatch",),
    "entry times": ("time-order", "time-after-witness"),
}


@dataclass(frozen=True, slots=True)
class AuditedEntry:
    """One entry as the audit saw it, handed to ``on_entry`` in log order.

    ``authentic`` is true when the envelope is well formed and validly signed by a key
    in standing (a trusted root for key statements, else a registered key valid at
    ``appended_at``); ``signer`` is that registered key (``None`` for key statements
    and unauthentic entries). ``leaf_hash`` is recomputed from ``data``.
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

    @property
    def ref(self) -> Ref:
        """``{index, leaf_hash}`` as statements reference entries."""
        return Ref(index=self.index, leaf_hash=self.leaf_hash.hex())

    def statement(self) -> Statement:
        """The parsed, fully validated statement (raises ``StatementError`` if malformed)."""
        return parse_statement(_envelopes.decode_envelope(self.data)[1])


def audit_log(
    ledger: str | os.PathLike[str],
    trust: TrustFile,
    *,
    state_path: str | os.PathLike[str] | None = None,
    use_state: bool = True,
    workers: int | None = None,
    full: bool = False,
    on_entry: Callable[[AuditedEntry], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    report: AuditReport | None = None,
) -> AuditReport:
    """Audit ``ledger`` (an SQLite file or database URL) against ``trust``; never raises on
    findings. See the module docstring for what is checked.

    ``state_path`` is the auditor's state file (default :func:`default_state_path`);
    with ``use_state=False`` no state is read or written. ``workers`` processes check
    signatures (default: one per core; small logs are checked in-process). ``full``
    validates every predicate with its model, not only what the log-level checks use.
    ``report`` is extended if given (for a caller that has its own checks).
    """
    start = time.perf_counter()
    rep = report or AuditReport(ledger=os.fspath(ledger), origin=trust.origin)
    try:
        reader = LedgerReader.open(ledger)
    except ScalegateError as exc:
        rep.check("ledger readable", False, exc.message, verifiable=False)
        return rep
    try:
        _LogAudit(reader, trust, rep, workers, full, on_entry, progress).run(
            Path(state_path) if state_path else default_state_path(), use_state)
    except ScalegateError as exc:
        rep.check("ledger readable", False, exc.message, verifiable=False)
    finally:
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
        on_entry: Callable[[AuditedEntry], None] | None,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.reader = reader
        self.trust = trust
        self.report = report
        self.workers = (os.cpu_count() or 1) if workers is None else max(1, workers)
        self.full = full
        self.on_entry = on_entry
        self.progress = progress
        self.roots: dict[str, VerifierKey] = {r.keyid: r for r in trust.roots}
        self.registry = KeyRegistry(trust.roots)
        self.run_orgs: dict[str, str] = {}
        self.latest_time: datetime | None = None
        self.time_at: dict[int, datetime] = {}  # size -> latest entry time before it

    # --- the whole audit ---------------------------------------------------------------------

    def run(self, state_path: Path, use_state: bool) -> None:
        rep, reader, trust = self.report, self.reader, self.trust
        n = reader.size()
        rep.size = n
        self._compare_meta(reader.meta())
        stored = verify_stored_checkpoints(reader.checkpoints(), trust, rep)
        seen: list[SeenCheckpoint] = []
        if use_state:
            try:
                seen = load_seen(state_path, trust.origin)
            except VerificationError as exc:
                rep.check("auditor state", False, exc.message, verifiable=False)
                use_state = False
        sizes = {c.size for c in stored if c.valid} | {c.size for c in seen} | {n}
        self.time_sizes = {c.size for c in stored if c.valid and c.cosigned_at}
        tree = TreeAudit(reader, n, {s for s in sizes if s <= n}, rep)
        self._stream(n, tree)
        tree.finish()
        roots = {s: tree.root(s) for s in sizes if s <= n}
        rep.root_hash = roots[n].hex() if tree.complete else None
        anchor = self._compare_checkpoints(stored, roots, n)
        consistent = self._compare_seen(seen, roots, n, use_state, anchor)
        self._witness_times(stored)
        self._summarise(n, anchor)
        if use_state and anchor is not None and consistent and tree.complete \
                and roots.get(anchor.size) == anchor.root:
            new = record_seen(state_path, trust.origin, anchor.size, anchor.root, anchor.note)
            rep.check("auditor state", True, f"{'recorded' if new else 'already had'} the "
                      f"checkpoint of size {anchor.size} in {state_path}")

    def _compare_meta(self, meta: dict[str, str]) -> None:
        differ = []
        if meta.get("origin") != self.trust.origin:
            differ.append(f"origin {meta.get('origin')!r}")
        if meta.get("log_vkey") != self.trust.log_verifier.text():
            differ.append("log key " + str(meta.get("log_vkey", "?")).rsplit("+", 1)[0])
        detail = ("agrees with the trust file" if not differ else
                  "differs from the trust file (" + ", ".join(differ) + "); the trust file "
                  "is what counts")
        self.report.check("ledger's own configuration", True, detail)

    # --- streaming the entries -----------------------------------------------------------------

    def _stream(self, n: int, tree: TreeAudit) -> None:
        key_rows = self.reader.key_entries()
        candidates = _envelopes.candidate_keys(self.trust.roots, key_rows)
        pool = None
        if self.workers > 1 and n >= _MIN_PARALLEL:
            pool = ProcessPoolExecutor(
                max_workers=self.workers, initializer=_envelopes.set_candidates,
                initargs=(candidates,), mp_context=multiprocessing.get_context(
                    "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"))
        else:
            _envelopes.set_candidates(candidates)
        pending: collections.deque[tuple[list[Row | None], list[bytes], Any]] = collections.deque()
        try:
            for a in range(0, n, _CHUNK):
                b = min(a + _CHUNK, n)
                rows = self._rows(a, b)
                leaves = tree.chunk(a, rows)
                present = [(r[0], r[2]) for r in rows if r is not None]
                if pool is not None:
                    pending.append((rows, leaves, pool.submit(
                        _envelopes.check_entries, present, self.full)))
                    while len(pending) > 2 * self.workers:
                        self._fold(*pending.popleft())
                else:
                    self._fold(rows, leaves, _envelopes.check_entries(present, self.full))
                if self.progress:
                    self.progress(b, n)
            while pending:
                self._fold(*pending.popleft())
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _rows(self, a: int, b: int) -> list[Row | None]:
        out: list[Row | None] = [None] * (b - a)
        for r in self.reader.entries(a, b):
            out[r[0] - a] = r
        gone = [a + i for i, r in enumerate(out) if r is None]
        if gone:
            self.report.violation(
                "entry-missing", f"entries {_span(gone)} are missing from the log; the tree "
                "cannot be recomputed.")
        return out

    # --- the in-order fold ---------------------------------------------------------------------

    def _fold(self, rows: list[Row | None], leaves: list[bytes], checked: Any) -> None:
        results = checked.result() if isinstance(checked, Future) else checked
        it = iter(results)
        for row, leaf in zip(rows, leaves, strict=True):
            if row is not None:
                self._entry(row, leaf, next(it))

    def _entry(self, row: Row, leaf: bytes, res: _envelopes.Checked) -> None:
        rep = self.report
        idx, _, data, kind_col, run_col, signer_col, at_col = row
        _, bad_kind, bad_msg, kind, run_id, facts, verified, failed = res
        rep.count("entries")
        refs = [Ref(index=idx, leaf_hash=leaf.hex())]
        when = self._time(idx, at_col, refs)
        if bad_kind is not None:
            rep.violation(bad_kind, f"entry {idx}: {bad_msg}.", refs)
            self._emit(idx, leaf, data, None, None, when, None, None, False)
            return
        if kind_col != kind or run_col != run_id:
            rep.violation("index-mismatch", f"entry {idx}: its kind/run columns ({kind_col}, "
                          f"{run_col}) differ from the statement's ({kind}, {run_id}).", refs,
                          run_id=run_id)
        rep.count("signatures", len(verified))
        if kind in KEY_KINDS:
            keyid, reg, ok = self._key_statement(idx, facts, verified, failed, refs), None, True
            ok = keyid is not None
        else:
            reg = self._signer(idx, kind or "", run_id, facts, when, verified, failed, refs)
            keyid, ok = (reg.keyid if reg else None), reg is not None
        if ok and keyid != signer_col:
            rep.violation("index-mismatch", f"entry {idx}: the signer column says {signer_col}, "
                          f"but it was signed by {keyid}.", refs, run_id=run_id)
        self._emit(idx, leaf, data, kind, run_id, when, keyid, reg, ok)

    def _emit(self, idx: int, leaf: bytes, data: bytes, kind: str | None, run_id: str | None,
              when: datetime | None, keyid: str | None, reg: RegisteredKey | None,
              ok: bool) -> None:
        if self.on_entry is not None:
            self.on_entry(AuditedEntry(idx, leaf, data, kind, run_id, when, keyid, reg, ok))

    def _time(self, idx: int, text: str, refs: list[Ref]) -> datetime | None:
        try:
            # The ledger's RFC 3339 form (schema.format_time); no SQLAlchemy import for it.
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if when.utcoffset() is None:
                raise ValueError("no UTC offset")
        except ValueError:
            self.report.violation("index-mismatch", f"entry {idx}: appended_at {text[:40]!r} is "
                                  "not an RFC 3339 time.", refs)
            return None
        latest = self.latest_time
        if latest is not None and when < latest - CLOCK_SKEW:
            self.report.violation("time-order", f"entry {idx} was appended at {_iso(when)}, "
                                  f"before an earlier entry's {_iso(latest)}.", refs)
        if latest is None or when > latest:
            self.latest_time = latest = when
        if idx + 1 in self.time_sizes:
            self.time_at[idx + 1] = latest
        return when

    def _key_statement(
        self, idx: int, facts: dict[str, Any], verified: list[tuple[str, bytes]],
        failed: list[tuple[str, bytes]], refs: list[Ref],
    ) -> str | None:
        roots = self.roots
        bad = [k for k, pub in failed if k in roots and roots[k].public == pub]
        good = [roots[k] for k, pub in verified if k in roots and roots[k].public == pub]
        if bad:
            self.report.violation("bad-signature", f"entry {idx}: the signature by root {bad[0]} "
                                  "does not verify.", refs)
            return None
        if not good:
            who = ", ".join(sorted({k for k, _ in verified + failed})) or "no known key"
            self.report.violation("untrusted-root", f"entry {idx}: a key statement signed by "
                                  f"{who}, which is not a trusted organisation root.", refs)
            return None
        pred = facts["predicate"]
        org = getattr(pred, "org", None)
        if org is None:  # a revocation: the org of the key it revokes
            try:
                reg = self.registry.get(VerifierKey.parse(pred.vkey).keyid)
            except ScalegateError:
                reg = None
            org = reg.org if reg else None
        signer = next((s for s in good if org_of(s) == org), good[0])
        try:
            self.registry.apply(idx, pred, signer)
        except KeyNotAuthorized as exc:
            self.report.violation("key-refused", f"entry {idx}: {exc.message}", refs)
            return None
        self.report.count("keys registered" if pred.KIND == "key" else "keys revoked")
        return signer.keyid

    def _signer(
        self, idx: int, kind: str, run_id: str | None, facts: dict[str, Any],
        when: datetime | None, verified: list[tuple[str, bytes]],
        failed: list[tuple[str, bytes]], refs: list[Ref],
    ) -> RegisteredKey | None:
        rep, registry = self.report, self.registry
        regs = [r for k, pub in verified if (r := registry.get(k)) and r.vkey.public == pub]
        bad = [k for k, pub in failed if (r := registry.get(k)) and r.vkey.public == pub]
        where = f"entry {idx} ({kind})"
        if bad:
            rep.violation("bad-signature", f"{where}: the signature by {bad[0]} does not "
                          "verify.", refs, run_id=run_id)
            return None
        if not regs:
            who = ", ".join(sorted({k for k, _ in verified + failed})) or "no known key"
            rooted = " (an organisation root signs only key statements)" if any(
                k in self.roots for k, _ in verified) else ""
            rep.violation("unregistered-signer", f"{where}: signed by {who}, which no trusted "
                          f"root had registered before it{rooted}.", refs, run_id=run_id)
            return None
        if when is None:
            rep.violation("signer-not-valid", f"{where}: the entry has no readable time, so "
                          "its signer's validity cannot be checked.", refs, run_id=run_id)
            return None
        signer = next((r for r in regs if r.valid_at(when)), None)
        if signer is None:
            first = regs[0]
            revoked = first.revoked_at is not None and when >= first.revoked_at
            rep.violation("revoked-signer" if revoked else "signer-not-valid",
                          f"{where} at {_iso(when)}: signer {first.problem_at(when)}.", refs,
                          run_id=run_id)
            return None
        self._roles_and_orgs(where, kind, run_id, facts, signer, refs)
        return signer

    def _roles_and_orgs(self, where: str, kind: str, run_id: str | None, facts: dict[str, Any],
                        signer: RegisteredKey, refs: list[Ref]) -> None:
        rep = self.report
        allowed = self.trust.allowed_roles(kind)
        if allowed is not None and not allowed.intersection(signer.roles):
            rep.violation("wrong-role", f"{where}: signer {signer.keyid} holds roles "
                          f"{list(signer.roles)}; the trust file allows {sorted(allowed)} for "
                          f"{kind} statements.", refs, run_id=run_id)
        claimed = facts.get("role")
        if kind == "approval" and claimed is not None and claimed not in signer.roles:
            rep.violation("wrong-role", f"{where}: the approval claims role {claimed!r}, but "
                          f"signer {signer.keyid} holds {list(signer.roles)}.", refs,
                          run_id=run_id)
        org = facts.get("org")
        if kind == "run" and run_id is not None:
            self.run_orgs.setdefault(run_id, org or signer.org)
        if org is not None and kind in ("run", "attestation", "endorsement") \
                and org != signer.org:
            rep.violation("wrong-org", f"{where}: speaks for organisation {org!r} but is signed "
                          f"by {signer.keyid} of {signer.org!r}.", refs, run_id=run_id)
        elif run_id is not None and run_id in self.run_orgs \
                and self.run_orgs[run_id] != signer.org:
            rep.violation("wrong-org", f"{where}: run {run_id} belongs to "
                          f"{self.run_orgs[run_id]!r} but this is signed by {signer.keyid} of "
                          f"{signer.org!r}.", refs, run_id=run_id)

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
            why = ("the log has issued no checkpoint" if not stored else
                   "no stored checkpoint verifies under the trusted log key" if
                   not any(c.valid for c in stored) else
                   f"no checkpoint carries {k} of {total} trusted witness cosignatures")
            rep.check("witnessed checkpoint", False, why + "; nothing anchors the log.",
                      verifiable=False)
            return None
        from scalegate.audit.report import CheckpointSummary

        rep.checkpoint = CheckpointSummary(
            size=anchor.size, root_hash=anchor.root.hex(), cosigned_by=anchor.cosigners,
            cosigned_at=anchor.cosigned_at, note=anchor.note)
        rep.check("witnessed checkpoint", True, f"size {anchor.size}, cosigned by "
                  f"{len(anchor.cosigners)} of {total} trusted witness(es) ({k} required)"
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
                      f"{len(seen)} checkpoint(s) remembered" + (
                          f", up to size {seen[-1].size}" if seen else ""))
        return ok

    def _witness_times(self, stored: list[StoredCheckpoint]) -> None:
        for c in stored:
            latest = self.time_at.get(c.size)
            if not c.valid or not c.cosigned_at or latest is None:
                continue
            cosigned = datetime.fromtimestamp(min(c.cosigned_at), tz=latest.tzinfo)
            if latest > cosigned + CLOCK_SKEW:
                self.report.violation(
                    "time-after-witness", f"entries up to size {c.size} claim times up to "
                    f"{_iso(latest)}, after a witness cosigned that checkpoint at "
                    f"{_iso(cosigned)}: the log's times are wrong.", checkpoint_size=c.size)

    def _summarise(self, n: int, anchor: StoredCheckpoint | None) -> None:
        rep, c = self.report, self.report.counts
        c["runs"] = len(self.run_orgs)
        holds = {
            "tree recomputed from the entries": f"{n} leaves and {c.get('nodes', 0)} stored "
            f"nodes agree; root {rep.root_hash or '?'}",
            "checkpoints agree with the tree": "every signed checkpoint's root is the "
            "recomputed root at its size",
            "envelopes and signatures": f"{c.get('entries', 0)} envelopes, "
            f"{c.get('signatures', 0)} valid signatures",
            "signers registered, valid and not revoked": f"{c.get('keys registered', 0)} "
            f"key(s) registered by trusted roots, {c.get('keys revoked', 0)} revoked",
            "roles and organisations": f"{len(self.trust.roles)} role rule(s), "
            f"{c['runs']} run(s)",
            "derived columns (kind, run, signer)": "agree with the entries",
            "entry times": "never go back, never after a witness cosigned them",
        }
        for name, kinds in _GROUPS.items():
            bad = sum(rep.violation_counts.get(k, 0) for k in kinds)
            rep.check(name, bad == 0, holds[name] if not bad else f"{bad} violation(s)")


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _span(indices: list[int]) -> str:
    shown = ", ".join(map(str, indices[:5]))
    return shown + (f" … ({len(indices)} in all)" if len(indices) > 5 else "")

