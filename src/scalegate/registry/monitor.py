"""Following logs the way Certificate Transparency monitors do.

Each round, for every followed log: sync its verified mirror (the new checkpoint under
the trusted log key, the new tiles against it and against everything verified before;
:mod:`scalegate.ledger.mirror`), then audit the mirror against the log's trust file
(:class:`scalegate.audit.IncrementalAudit`: only the entries the last audit did not
read; each run replayed, the checkpoints, witnesses and deadlines judged afresh), and
record what was found in one transaction.

The audit's fold is kept in ``WORKDIR/NAME.fold``, authenticated with a key from the
registry's database, whenever the log has grown by a quarter since it was last kept
(so keeping it costs a constant per entry) and when the monitor stops: a monitor
restarted, or killed, goes on from there. Every ``reread_after`` a log's mirror is read
and audited whole again (the fold trusts what it read before; this checks that too).

A log's status says what can be concluded, and silence is never compliance:

- ``verified``: audited with no violation, its latest checkpoint witnessed within
  ``stale_after``;
- ``violations``: the audit found some (the feed lists them);
- ``unverifiable``: the audit could not conclude (e.g. no witnessed checkpoint);
- ``stale``: verified, but no witness has cosigned a checkpoint within ``stale_after``
  (or its trust file names no witnesses: ``unwitnessed``);
- ``unreachable``: the log did not answer (what was verified before is kept);
- ``invalid``: it answered with what does not verify (a bad signature, wrong tiles);
- ``split-view``: it showed a history other than the one verified before; the evidence
  (both signed checkpoints) is kept.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scalegate.audit import IncrementalAudit, LedgerAudit, run_figures
from scalegate.errors import LedgerError, ProofError, ScalegateError
from scalegate.ledger import Ledger, PolicyPredicate, RunPredicate, SplitView, sync_mirror
from scalegate.policy import Policy, load_policy
from scalegate.registry.commitments import judge_commitments
from scalegate.registry.config import FollowedLog, RegistryConfig
from scalegate.registry.store import Event, RegistryStore

__all__ = ["Monitor"]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Monitor:
    """Follows the logs of ``config``, recording into ``store``; mirrors and audit state
    live in ``workdir``."""

    def __init__(self, config: RegistryConfig, store: RegistryStore, workdir: Path,
                 *, now: Callable[[], datetime] | None = None) -> None:
        self.config, self.store, self.workdir = config, store, workdir
        self._now = now or (lambda: datetime.now(UTC))
        self._held: list[Policy] | None = None
        self._folds: dict[str, _Fold] = {}
        self._secret: bytes | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def check_all(self) -> dict[str, str]:
        """One round over every log; each log's status. Then every commitment proposed in
        them is judged (:mod:`scalegate.registry.commitments`)."""
        got = {g.name: self.check(g) for g in self.config.logs}
        # A mirror that cannot be read now keeps the last judgement (its log's status says why).
        with contextlib.suppress(ScalegateError):
            judge_commitments(self.config, self.store, self.workdir,
                              lambda name: f.audit if (f := self._folds.get(name)) else None,
                              self._now())
        return got

    def run(self, stop: threading.Event) -> None:
        """Rounds every ``config.interval`` until ``stop`` is set; then keeps every
        log's audit fold."""
        try:
            while not stop.is_set():
                self.check_all()
                stop.wait(self.config.interval.total_seconds())
        finally:
            self.keep_folds()

    def keep_folds(self) -> None:
        """Write every log's audit fold that changed since it was last kept."""
        for name, fold in self._folds.items():
            fold.keep(self.workdir / f"{name}.fold", self._key(), force=True)

    def _fold(self, name: str, now: datetime) -> IncrementalAudit:
        """The log's audit fold (read back from its file after a restart), emptied when
        it is time to read the log whole again."""
        fold = self._folds.get(name)
        if fold is None:
            audit = IncrementalAudit.load(self.workdir / f"{name}.fold", self._key())
            fold = self._folds[name] = _Fold(audit, audit.size, now)
        if now - fold.whole_at > self.config.reread_after:
            fold.audit.reset()
            fold.whole_at = now
        return fold.audit

    def _key(self) -> bytes:
        if self._secret is None:
            self._secret = self.store.secret("audit-fold-key")
        return self._secret

    def check(self, log: FollowedLog) -> str:
        """Sync, audit and record one log; its status."""
        trust = log.trusted
        assert trust is not None, "load the configuration with load_config"
        now = self._now()
        base = {"name": log.name, "url": log.url, "checked_at": _iso(now)}
        previous = self.store.log(log.name)
        mirror = self.workdir / f"{log.name}.db"
        try:
            synced = sync_mirror(log.url, mirror, log_key=trust.log_verifier,
                                 org_roots=trust.roots or None)
        except SplitView as exc:
            self._keep(previous, base, "split-view", exc.message, split=(exc.index, exc.evidence))
            return "split-view"
        except ProofError as exc:
            self._keep(previous, base, "invalid", exc.message)
            return "invalid"
        except LedgerError as exc:
            status = "invalid" if "signature" in exc.message or "origin" in exc.message \
                else "unreachable"
            self._keep(previous, base, status, exc.message)
            return status
        if self._unchanged(previous, synced.checkpoint.size, mirror, now):
            assert previous is not None
            status = self._age(log, previous.status, previous.witnessed_at, now)
            self.store.update(log.name, checked_at=base["checked_at"], status=status)
            return status
        fold = self._fold(log.name, now)
        try:
            audit = fold.audit(mirror, trust, now=now, held_to=self._laws(),
                               state_path=self.workdir / f"{log.name}.state.json")
        except ScalegateError as exc:
            self._keep(previous, base, "unverifiable", exc.message)
            return "unverifiable"
        self._folds[log.name].keep(self.workdir / f"{log.name}.fold", self._key())
        status, witnessed = self._status(log, audit, now)
        rep = audit.report
        cp = rep.checkpoint
        self.store.record({
            **base, "origin": rep.origin, "size": rep.size, "root_hash": rep.root_hash or "",
            "checkpoint": cp.note if cp else "", "status": status,
            "problem": _problem(audit), "verified_at": _iso(now),
            "witnessed_at": _iso(witnessed) if witnessed else None,
            "audit": _with_keys(_summary(audit), mirror, log)}, _events(log.name, audit))
        return status

    def _unchanged(self, previous: Any, size: int, mirror: Path, now: datetime) -> bool:
        """Whether the last audit still stands: the log has not grown, its checkpoint
        gained no cosignature, and the audit is younger than ``reaudit_after`` (findings
        that depend on the time, a deadline passing, need a new one)."""
        if previous is None or previous.verified_at is None or previous.size != size:
            return False
        if now - _parse(previous.verified_at) > self.config.reaudit_after:
            return False
        with Ledger.open(mirror, checkpoint_on_close=False) as led:
            return led.latest_checkpoint() == previous.audit.get("mirror_checkpoint")

    def _age(self, log: FollowedLog, status: str, witnessed_at: str | None,
             now: datetime) -> str:
        """A verified log turns stale when its witnessed checkpoint grows old."""
        if status == "verified" and log.trusted is not None and log.trusted.witnesses and (
                witnessed_at is None or now - _parse(witnessed_at) > self.config.stale_after):
            return "stale"
        return status

    def _laws(self) -> list[Policy]:
        """The policies every run is held to (``hold_to``), loaded once."""
        if self._held is None:
            self._held = [load_policy(n) for n in self.config.hold_to]
        return self._held

    def _status(self, log: FollowedLog, audit: LedgerAudit, now: datetime
                ) -> tuple[str, datetime | None]:
        rep = audit.report
        witnessed = max((w.existed_by for w in rep.witnessed_times), default=None)
        if rep.violations_total:
            return "violations", witnessed
        if rep.could_not_verify:
            return "unverifiable", witnessed
        assert log.trusted is not None
        if not log.trusted.witnesses:
            return "unwitnessed", witnessed
        if witnessed is None or now - witnessed > self.config.stale_after:
            return "stale", witnessed
        return "verified", witnessed

    def _keep(self, previous: Any, base: dict[str, Any], status: str, problem: str,
              split: tuple[int | None, str] | None = None) -> None:
        """Record a failed check, keeping what was verified before."""
        kept: dict[str, Any] = {"origin": "", "size": 0, "root_hash": "", "checkpoint": "",
                                "verified_at": None, "witnessed_at": None, "audit": {}}
        if previous is not None:
            kept = {k: getattr(previous, k) for k in kept}
        self.store.record({**base, **kept, "status": status, "problem": problem},
                          split=split)


class _Fold:
    """A log's audit fold, with the size it was last kept at and when it last read the
    log whole."""

    def __init__(self, audit: IncrementalAudit, kept: int, whole_at: datetime) -> None:
        self.audit, self.kept, self.whole_at = audit, kept, whole_at

    def keep(self, path: Path, key: bytes, *, force: bool = False) -> None:
        """Write the fold if the log grew by a quarter since it was last written (or at
        all, with ``force``)."""
        size = self.audit.size
        if size != self.kept and (force or size >= self.kept * 1.25 or size < self.kept):
            self.audit.save(path, key)
            self.kept = size


def _problem(audit: LedgerAudit) -> str:
    rep = audit.report
    if rep.violations_total:
        kinds = ", ".join(f"{k} ({n})" for k, n in sorted(rep.violation_counts.items()))
        return f"{rep.violations_total} violation(s): {kinds}"
    failed = rep.failed_checks()
    return "; ".join(f"{c.name}: {c.detail}" for c in failed)


def _summary(audit: LedgerAudit) -> dict[str, Any]:
    """What the pages and the API show of an audit: the report and each run's summary."""
    runs = []
    for r in audit.runs:
        data = r.to_json_data()
        state = r.replay.state if r.replay is not None else None
        if r.policy is not None and r.replay is not None and state is not None:
            data["figures"] = [(name, chart.svg())
                               for name, chart in run_figures(r.policy, r.replay)]
            data["pauses"] = [_pause(state, p) for p in state.pauses]
        runs.append(data)
    reached: dict[str, list[str]] = {}
    for h in audit.held_to:
        for f in h.findings:
            if f.kind == "threshold" and f.status == "reached":
                reached.setdefault(f.run_id, []).append(f"{h.label}: {f.subject}")
    for data in runs:
        data["thresholds_reached"] = reached.get(data["run_id"], [])
    return {"report": audit.report.to_json_data(), "runs": runs,
            "held_to": [h.model_dump(mode="json") for h in audit.held_to]}


def _with_keys(summary: dict[str, Any], mirror: Path, log: FollowedLog) -> dict[str, Any]:
    """Add what a reader's browser needs to verify a statement itself: the trusted keys
    (log, witnesses, quorum) and, per pause, the key that signed it."""
    trust = log.trusted
    assert trust is not None
    summary["trust"] = {"log_key": trust.log_verifier.text(), "origin": trust.origin,
                        "witnesses": [w.text() for w in trust.witness_verifiers],
                        "quorum": trust.quorum}
    with Ledger.open(mirror, checkpoint_on_close=False) as led:
        registry = led.registry()
        summary["orgs"] = _orgs(led, registry)
        summary["mirror_checkpoint"] = led.latest_checkpoint()  # what this audit saw
        for run in summary["runs"]:
            if run.get("run"):
                reg = registry.get(led.entry(run["run"]["index"]).signer)
                run["run"]["signer_key"] = reg.vkey.text() if reg is not None else None
            for p in run.get("pauses", []):
                for shown in (p, *p["approvals"], p["resumed"]):
                    if shown is not None:
                        reg = registry.get(led.entry(shown["index"]).signer)
                        shown["signer_key"] = reg.vkey.text() if reg is not None else None
    return summary


def _orgs(led: Ledger, registry: Any) -> dict[str, dict[str, Any]]:
    """Per organisation: its keys and roles as its root registered them, its policies in
    the order they were published, and its runs."""
    orgs: dict[str, dict[str, Any]] = {}

    def org(name: str) -> dict[str, Any]:
        return orgs.setdefault(name, {"keys": [], "policies": [], "runs": []})

    roots = registry.roots
    for k in sorted(registry.keys.values(), key=lambda k: k.registered_index):
        root = roots.get(k.registered_by)
        org(k.org)["keys"].append({
            "key": k.vkey.text(), "keyid": k.keyid, "roles": list(k.roles),
            "valid_from": _iso(k.valid_from),
            "valid_until": _iso(k.valid_until) if k.valid_until else None,
            "registered": k.registered_index, "registered_by": k.registered_by,
            "revoked": k.revoked_index, "revocation_reason": k.revocation_reason,
            # what a reader's browser checks the key statement with: the entry and its root
            "index": k.registered_index,
            "leaf_hash": led.entry(k.registered_index).leaf_hash.hex(),
            "signer_key": root.text() if root is not None else None})
    for kind in ("policy", "run"):
        for e in led.entries(kind=kind):
            reg = registry.get(e.signer)
            try:
                pred = e.statement.predicate
            except ScalegateError:
                continue  # the audit reports what does not read
            owner = getattr(pred, "org", None) or (reg.org if reg is not None else "?")
            shown = {"index": e.index, "leaf_hash": e.leaf_hash.hex(),
                     "signer_key": reg.vkey.text() if reg is not None else None}
            if isinstance(pred, PolicyPredicate):
                org(owner)["policies"].append({
                    **shown, "id": pred.policy_id, "version": pred.version,
                    "digest": pred.digest, "signer": e.signer,
                    "roles": list(reg.roles) if reg is not None else [],
                    "published_at": _iso(pred.published_at) if pred.published_at else None})
            elif isinstance(pred, RunPredicate):
                org(owner)["runs"].append({**shown, "run_id": pred.run_id,
                                           "model": pred.model, "policy": pred.policy.id})
    return orgs


def _pause(state: Any, p: Any) -> dict[str, Any]:
    """A pause as its page shows it: what paused, why, and what lifted it (if anything)."""
    decision = state.find(p.predicate.decision)
    resume = next((r for r in state.resumes if r.predicate.pause == p.ref), None)
    approvals = [a for a in state.approvals if a.predicate.pause == p.ref]
    return {
        "index": p.index, "leaf_hash": p.ref.leaf_hash, "at": _iso(p.predicate.at),
        "step": p.predicate.step, "effective_flop": p.predicate.effective_flop,
        "signer": p.signer, "statement": p.predicate.public_statement,
        "reasons": [{"rule": x.rule, "message": x.message}
                    for x in (decision.predicate.reasons if decision is not None else [])],
        "decision": p.predicate.decision.index, "checkpoint": p.predicate.checkpoint.index,
        "approvals": [{"index": a.index, "leaf_hash": a.ref.leaf_hash, "signer": a.signer,
                       "roles": list(a.roles), "at": _iso(a.predicate.at)} for a in approvals],
        "resumed": None if resume is None else {
            "index": resume.index, "leaf_hash": resume.ref.leaf_hash, "signer": resume.signer,
            "at": _iso(resume.predicate.at), "ceiling_flop": resume.predicate.ceiling_flop},
    }


def _events(name: str, audit: LedgerAudit) -> list[Event]:
    """Pauses and resumptions of every run, and the violations found."""
    out: list[Event] = []
    for run in audit.runs:
        state = run.replay.state if run.replay is not None else None
        if state is None:
            continue
        for p in state.pauses:
            out.append(Event(name, p.index, "pause", run.run_id, _iso(p.predicate.at),
                             f"run {run.run_id} paused at step {p.predicate.step} "
                             f"({p.predicate.effective_flop:.3g} FLOP)"))
        for r in state.resumes:
            out.append(Event(name, r.index, "resume", run.run_id, _iso(r.predicate.at),
                             f"run {run.run_id} resumed with {len(r.predicate.approvals)} "
                             "approval(s)"))
    for i, v in enumerate(audit.report.violations):
        entry = v.refs[0].index if v.refs else -1 - i
        out.append(Event(name, entry, f"violation:{v.kind}"[:32], v.run_id,
                         _iso(datetime.now(UTC)), v.message[:2000]))
    return out
