"""The run-level audit: every run in the log replayed under the policy the log publishes.

:func:`audit_ledger` runs the log-level audit (:func:`~scalegate.audit.audit_log`) with
a :class:`RunCollector` on its ``on_entry`` hook, so that only entries that verified
(well formed, validly signed by a key in standing) reach the runs; then
:func:`audit_runs` replays each run (:func:`~scalegate.audit.replay.replay_run`)
under the policy its ``run`` statement cites — the document a ``policy`` statement
in the log publishes, whose digest must be the one cited. Nothing the trainer says
about the policy is trusted otherwise.

>>> audit = audit_ledger("ledger.db", load_trust("trust.yaml"))
>>> audit.report.exit_code            # 0 ok, 3 violations found, 4 could not verify
>>> audit.runs[0].replay.decisions    # every recorded decision next to its replay

With ``held_to=[load_policy("eu-ai-act")]`` every run is also held to policies it did
not register under (:mod:`scalegate.audit.regulator`): ``audit.held_to`` has each one's
findings, and its violations are in the report, labelled with the policy.
"""

from __future__ import annotations

import gc
import operator
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, create_model, field_validator

from scalegate.audit._times import TimeCheck, WitnessedCheckpoint, WitnessedTimes
from scalegate.audit._transcripts import spot_checks
from scalegate.audit.logcheck import audit_log
from scalegate.audit.regulator import HELD_VIOLATION_KINDS, HeldTo, hold_runs
from scalegate.audit.replay import RUN_VIOLATION_KINDS, RunReplay, replay_run
from scalegate.audit.report import AuditReport
from scalegate.audit.trust import TrustFile
from scalegate.errors import PolicyError, StatementError
from scalegate.ledger import (
    KEY_KINDS,
    PREDICATES,
    CheckedEntry,
    Ledger,
    LogEntry,
    PolicyPredicate,
    Ref,
    RegisteredKey,
    RunPredicate,
    Statement,
)
from scalegate.policy import Policy, parse_policy
from scalegate.state import Recorded, StatementOrRecord, record_type, same_ref
from scalegate.units import counted

if TYPE_CHECKING:
    from scalegate.audit.incremental import IncrementalAudit

__all__ = ["RUN_AUDIT_KINDS", "SETUP_VIOLATION_KINDS", "LedgerAudit", "RunAudit",
           "RunCollector", "audit_ledger", "audit_runs", "hold_to", "replay_ledger"]

#: Violations about a run's set-up (before any replay), with what they mean.
SETUP_VIOLATION_KINDS: dict[str, str] = {
    "run-unregistered": "statements about a run no run statement registered",
    "policy-unpublished": "a run cites a policy no policy statement in the log publishes",
    "policy-invalid": "the published policy document does not load",
    "policy-digest-mismatch": "the published policy document does not hash to the digest "
    "cited",
    "statement-malformed": "a validly signed statement whose predicate is malformed",
    "backdated": "a statement claims a time before its entry was logged, as a trusted "
    "witness's cosignature shows (beyond the clock skew)",
    "time-order": "a statement is dated before a statement it cites (a resume before its "
    "approvals, an approval before its pause)",
}
#: Violations a verifier's spot-check of a run's training transcript reports.
TRANSCRIPT_VIOLATION_KINDS: dict[str, str] = {
    "transcript-failed": "a verifier re-executed segments of the run's training transcript "
    "and they did not lead where the transcript says (scalegate transcript verify)",
}

# The summary checks the run audit adds, and the violation kinds each one covers.
_GROUPS: dict[str, tuple[str, ...]] = {
    "runs registered under published policies": (
        "run-unregistered", "policy-unpublished", "policy-invalid", "policy-digest-mismatch"),
    "run statements well formed": ("statement-malformed", "bad-reference"),
    "run statements in the places they were signed for": ("statement-out-of-place",),
    "decisions replay to the same verdict": ("decision-mismatch",),
    "pauses declared and honoured": (
        "pause-not-declared", "training-during-pause", "ceiling-exceeded"),
    "evaluations done when due": ("evaluation-skipped",),
    "resumptions allowed, with quorum, from the paused checkpoint": (
        "resume-without-quorum", "resume-premature", "resume-wrong-checkpoint",
        "approval-wrong-pause"),
    "notifications by their deadlines": ("notification-missed",),
    "statements dated when they were logged": ("backdated", "time-order"),
    "compute never goes back": ("compute-backwards",),
    "safeguards attested by allowed roles, in date": (
        "attestation-wrong-role", "attestation-expired"),
}


@dataclass
class RunAudit:
    """One run as audited: its policy (from the log) and its replay, or why there is none."""

    run_id: str
    policy: Policy | None = None
    replay: RunReplay | None = None
    problem: str | None = None
    run_ref: Ref | None = None

    def to_json_data(self) -> dict[str, Any]:
        """A JSON-ready summary: the policy, every replayed decision, what the gate says now."""
        out: dict[str, Any] = {"run_id": self.run_id, "replayed": self.replay is not None,
                               "problem": self.problem,
                               "run": self.run_ref.model_dump() if self.run_ref else None}
        if self.policy is not None:
            out["policy"] = {"id": self.policy.id, "version": self.policy.version,
                             "digest": self.policy.digest()}
        rep = self.replay
        if rep is not None:
            state = rep.state
            out.update(
                status="paused" if state is not None and state.active_pause else "running",
                step=state.step if state is not None else None,
                effective_flop=rep.final.effective_flop if rep.final else None,
                verdict_now=rep.final.verdict if rep.final else None,
                decisions_replayed=len(rep.decisions), mismatched=len(rep.mismatches),
                gate_consultations=rep.consults, resumptions=rep.resumes,
                violations=len(rep.violations),
                decisions=[{**d.model_dump(mode="json"), "matches": d.matches}
                           for d in rep.decisions])
        return out


@dataclass
class LedgerAudit:
    """The whole audit: the report (checks, violations, exit code) and every run's replay."""

    report: AuditReport
    runs: list[RunAudit] = field(default_factory=list)
    held_to: list[HeldTo] = field(default_factory=list)

    def run(self, run_id: str) -> RunAudit | None:
        """The audit of ``run_id``, if the log has statements about it."""
        return next((r for r in self.runs if r.run_id == run_id), None)

    def to_json_data(self) -> dict[str, Any]:
        """The report as JSON-ready data (every check and violation) with ``runs`` added,
        and ``held_to``: each other policy the runs were held to, with its findings."""
        data = self.report.to_json_data()
        data["runs"] = [r.to_json_data() for r in self.runs]
        data["held_to"] = [{**h.model_dump(mode="json"), "label": h.label,
                            "summary": h.summary()} for h in self.held_to]
        return data


class RunCollector:
    """An ``on_entry`` hook keeping, from every authentic entry, what run replay needs:
    run statements by run, organisation-wide attestations, and policy documents, each as
    the record a run's state keeps (:class:`~scalegate.state.Recorded`: ref, predicate,
    signer, roles), so that folding takes them as they are."""

    def __init__(self) -> None:
        self._runs: dict[str, list[Recorded[Any]]] = {}
        self._org_attestations: list[Recorded[Any]] = []
        self._policies: list[Recorded[Any]] = []
        self._malformed: list[tuple[Ref, str, str | None]] = []
        # Entries are read a batch at a time rather than one by one between the log
        # audit's own work: the parser's code and data stay in the processor's caches
        # (a third faster, measured in the audit of 10^5 entries).
        self._pending: list[CheckedEntry] = []

    def __call__(self, e: CheckedEntry) -> None:
        if not self.wants(e):
            return
        self._pending.append(e)
        if len(self._pending) >= _BATCH:
            self._take()

    @staticmethod
    def wants(e: CheckedEntry) -> bool:
        """Whether replay reads the entry: an authentic statement of a run, a policy or an
        organisation-wide attestation (not keys, commitments, endorsements)."""
        kind = e.kind
        if not e.authentic or kind is None or kind in KEY_KINDS:
            return False
        return e.run_id is not None or kind in ("policy", "attestation")

    @property
    def runs(self) -> dict[str, list[Recorded[Any]]]:
        """Each run's statements, by run id, in log order."""
        self._take()
        return self._runs

    @property
    def org_attestations(self) -> list[Recorded[Any]]:
        """Attestations that name no run (organisation-wide), in log order."""
        self._take()
        return self._org_attestations

    @property
    def policies(self) -> list[Recorded[Any]]:
        """Every ``policy`` statement, in log order."""
        self._take()
        return self._policies

    @property
    def malformed(self) -> list[tuple[Ref, str, str | None]]:
        """Validly signed statements that do not parse: (ref, what is wrong, run id)."""
        self._take()
        return self._malformed

    def _take(self) -> None:
        pending, self._pending = self._pending, []
        runs, policies, org = self._runs, self._policies, self._org_attestations
        signers: dict[int, tuple[RegisteredKey | None, str | None, tuple[str, ...]]] = {}
        for e in pending:
            kind, run_id, key = e.kind or "", e.run_id, e.signer
            ref = {"index": e.index, "leaf_hash": e.leaf_hash.hex()}
            from_json, make = _READERS.get(kind) or _reader(kind)
            predicate = None
            if from_json is not None and e.payload is not None:
                try:  # noqa: SIM105 (hot: no context manager per entry)
                    predicate = from_json(e.payload).predicate  # as _parse reads it
                except ValidationError:
                    pass
            if predicate is None:  # parse_statement decides, with its own message
                try:
                    predicate = e.statement().predicate
                except StatementError as exc:
                    self._malformed.append((Ref.model_validate(ref), exc.message, run_id))
                    continue
                make = record_type(type(predicate)).model_validate
            signer = signers.get(id(key))
            if signer is None or signer[0] is not key:
                signer = signers[id(key)] = (key, key.vkey.name if key else None,
                                             tuple(key.roles) if key else ())
            fields = {"ref": ref, "predicate": predicate, "signer": signer[1],
                      "roles": signer[2]}
            if kind == "notification":  # judged by when the log held it (not per entry: hot)
                fields["logged_at"] = e.appended_at
            entry = make(fields)
            if kind == "policy":
                policies.append(entry)
            elif run_id is not None:
                got = runs.get(run_id)
                if got is None:
                    got = runs[run_id] = []
                got.append(entry)
            else:
                org.append(entry)


_BATCH = 1024


def _as_is(cls: type, value: Any) -> Any:
    return value


class _StrictStatement(Statement):
    """A :class:`Statement` as :func:`~scalegate.ledger.statements.parse_statement` takes
    it: ``_type`` present, and by that name only."""

    model_config = ConfigDict(populate_by_name=False)

    type_: Literal["https://in-toto.io/Statement/v1"] = Field(alias="_type")


def _kind_statement(kind: str) -> type[Statement]:
    """A :class:`Statement` of one kind: its predicate field is the kind's own model, so
    that the whole statement validates from the JSON bytes in one pass. Statement's two
    validators pick the predicate model from ``predicateType``; here the field types say
    it (a ``Literal`` type, the kind's model), so they are replaced by pass-throughs."""
    model = PREDICATES[kind]
    # A type built at run time (the kind's own predicateType), so not a static type form.
    kind_type: Any = Literal[model.predicate_type()]
    return create_model(
        f"_{model.__name__.removesuffix('Predicate')}Statement", __base__=_StrictStatement,
        __validators__={"_known_kind": field_validator("predicateType")(_as_is),
                        "_typed_predicate": field_validator("predicate")(_as_is)},
        predicateType=(kind_type, ...),
        predicate=(model, ...))


_BY_KIND: dict[str, type[Statement]] = {}
_Make = Callable[[dict[str, Any]], Recorded[Any]]
# Per kind: the validator of its statement from JSON and that of its record from a dict
# (both hot: called directly, without the model methods' argument handling).
_READERS: dict[str, tuple[Callable[[bytes], Statement] | None, _Make]] = {}


def _model(kind: str) -> type[Statement] | None:
    model = _BY_KIND.get(kind)
    if model is None and kind in PREDICATES:
        model = _BY_KIND[kind] = _kind_statement(kind)
    return model


def _parse(kind: str, e: CheckedEntry) -> Statement:
    """The entry's statement, validated by the same models as ``parse_statement`` but from
    the JSON bytes in one pass, into a :class:`Statement` of the kind's own subclass (three
    times as fast: replay parses every entry). Anything that does not validate this way
    goes through ``parse_statement``, which accepts or rejects it with its own message."""
    model = _model(kind)
    if e.payload is not None and model is not None:
        try:
            return model.model_validate_json(e.payload)
        except ValidationError:
            pass
    return e.statement()


def _reader(kind: str) -> tuple[Callable[[bytes], Statement] | None, _Make]:
    model = _model(kind)
    if model is None:  # a kind no model reads: parse_statement says what it is
        return None, Recorded.model_validate
    got = _READERS[kind] = (model.__pydantic_validator__.validate_json,
                            record_type(PREDICATES[kind]).__pydantic_validator__.validate_python)
    return got


def audit_runs(
    collected: RunCollector, report: AuditReport, *, now: datetime | None = None,
    run_ids: list[str] | None = None, time_checks: dict[str, TimeCheck] | None = None,
) -> list[RunAudit]:
    """Replay every collected run (or only ``run_ids``) and add checks and violations to
    ``report``. ``now`` is the audit time for notification deadlines (default: now).
    ``time_checks`` keeps each run's time checks between calls whose runs only grow (an
    incremental audit's)."""
    checks = time_checks if time_checks is not None else {}
    start = time.perf_counter()
    now = now or datetime.now(UTC)
    times = WitnessedTimes([*(WitnessedCheckpoint(w.size, w.existed_by, w.not_before)
                              for w in report.witnessed_times),
                            *(WitnessedCheckpoint(t.size, t.existed_by)  # existence only
                              for t in report.timestamps)])
    for ref, message, run_id in collected.malformed:
        report.violation("statement-malformed", f"entry {ref.index}: {message}", [ref],
                         run_id=run_id)
    out: list[RunAudit] = []
    reported: set[tuple[str, int]] = set()  # organisation-wide attestations: once, not per run
    decisions = mismatched = consults = 0
    for run_id, own in collected.runs.items():
        if run_ids is not None and run_id not in run_ids:
            continue
        audit = _audit_run(run_id, own, collected, report, now, times)
        out.append(audit)
        for kind, message, refs in checks.setdefault(run_id, TimeCheck()).findings(own, times):
            report.violation(kind, message, refs, run_id=run_id)
        if audit.replay is None:
            continue
        report.operator_word.extend(audit.replay.operator_word)
        for v in audit.replay.violations:
            if v.kind.startswith("attestation-"):
                key = (v.kind, v.refs[0].index)
                if key in reported:
                    continue
                reported.add(key)
            report.violation(v.kind, v.message, v.refs, run_id=run_id)
        decisions += len(audit.replay.decisions)
        mismatched += len(audit.replay.mismatches)
        consults += audit.replay.consults
    org_wide = checks.setdefault("", TimeCheck())  # no run has the empty id
    for kind, message, refs in org_wide.findings(collected.org_attestations, times):
        report.violation(kind, message, refs)
    unknown = [r for r in run_ids or [] if r not in collected.runs]
    if unknown:
        report.check("runs asked for", False, f"no statement in the log concerns run(s) "
                     f"{', '.join(map(repr, unknown))} (runs: "
                     f"{', '.join(collected.runs) or 'none'}); check the run id.",
                     verifiable=False)
    replayed = sum(1 for r in out if r.replay is not None)
    report.count("runs replayed", replayed)
    report.count("decisions replayed", decisions)
    report.count("gate consultations", consults)
    report.check("runs replayed", replayed == len(out),
                 f"{replayed} of {counted(len(out), 'runs')} replayed; "
                 f"{counted(decisions, 'recorded decisions')} replayed, {mismatched} differ; "
                 f"{counted(consults, 'further gate consultations')}; audit time {_iso(now)}")
    on_word = len(report.operator_word)
    report.check("entry times bounded by witnesses", True,
                 f"{counted(len(report.witnessed_times), 'witnessed checkpoints')} "
                 + (f"and {counted(len(report.timestamps), 'time-stamps')} "
                    if report.timestamps else "") + "bound when entries were logged; " + (
                     f"{counted(on_word, 'deadlines')} met only on the log operator's word"
                     if on_word else "no deadline rests on the log operator's word alone"))
    for name, kinds in _GROUPS.items():
        bad = sum(report.violation_counts.get(k, 0) for k in kinds)
        found = ", ".join(f"{report.violation_counts[k]} {k}" for k in kinds
                          if report.violation_counts.get(k))
        report.check(name, bad == 0,
                     f"{counted(bad, 'violations')}: {found}" if bad else "no violation")
    report.seconds = round(report.seconds + time.perf_counter() - start, 3)
    return out


def _audit_run(run_id: str, own: list[Recorded[Any]], collected: RunCollector,
               report: AuditReport, now: datetime, times: WitnessedTimes) -> RunAudit:
    run = next((e for e in own if isinstance(e.predicate, RunPredicate)), None)
    if run is None:
        first = min(own, key=lambda e: e.ref.index)
        report.violation("run-unregistered", f"entry {first.ref.index} ({first.predicate.KIND}) "
                         f"and {len(own) - 1} other(s) concern run {run_id!r}, which no run "
                         "statement registered; they cannot be replayed.", [first.ref],
                         run_id=run_id)
        return RunAudit(run_id, problem="no run statement")
    policy, problem = _policy_of(run, collected.policies, report)
    if policy is None:
        return RunAudit(run_id, problem=problem, run_ref=run.ref)
    entries = sorted(own + collected.org_attestations, key=operator.attrgetter("ref.index"))
    return RunAudit(run_id, policy, replay_run(policy, entries, run_id, now=now, times=times),
                    run_ref=run.ref)


def _policy_of(run: Recorded[Any], policies: list[Recorded[Any]], report: AuditReport
               ) -> tuple[Policy | None, str | None]:
    """The run's policy from the log, checked against the digest the run cites."""
    pred = run.predicate
    assert isinstance(pred, RunPredicate)
    cited, where = pred.policy, f"run {pred.run_id!r} (entry {run.ref.index})"

    def bad(kind: str, message: str, refs: list[Ref]) -> tuple[None, str]:
        report.violation(kind, f"{where} {message}; its decisions cannot be replayed.",
                         [run.ref, *refs], run_id=pred.run_id)
        return None, message

    found = [p for p in policies if _digest(p) == cited.digest]
    if cited.ref is not None:
        found.sort(key=lambda p: not same_ref(p.ref, cited.ref))  # type: ignore[arg-type]
    if not found:
        return bad("policy-unpublished", f"cites policy {cited.id} {cited.version} (digest "
                   f"{cited.digest[:12]}…), but no policy statement in the log publishes it",
                   [cited.ref] if cited.ref else [])
    entry = found[0]
    doc = entry.predicate
    assert isinstance(doc, PolicyPredicate)
    try:
        policy = parse_policy(doc.document, source=f"ledger entry #{entry.ref.index}")
    except PolicyError as exc:
        return bad("policy-invalid", f"cites the policy in entry {entry.ref.index}, which does "
                   f"not load ({exc.message})", [entry.ref])
    if policy.digest() != cited.digest:
        return bad("policy-digest-mismatch", f"cites policy digest {cited.digest[:12]}…, but "
                   f"the document in entry {entry.ref.index} hashes to "
                   f"{policy.digest()[:12]}…", [entry.ref])
    return policy, None


def _digest(entry: StatementOrRecord) -> str | None:
    p = entry.predicate
    return p.digest if isinstance(p, PolicyPredicate) else None


def audit_ledger(
    ledger: str | os.PathLike[str],
    trust: TrustFile,
    *,
    now: datetime | None = None,
    replay: bool = True,
    run_ids: list[str] | None = None,
    state_path: str | os.PathLike[str] | None = None,
    use_state: bool = True,
    workers: int | None = None,
    full: bool = False,
    progress: Callable[[int, int], None] | None = None,
    held_to: Sequence[Policy] = (),
    incremental: IncrementalAudit | None = None,
) -> LedgerAudit:
    """Audit ``ledger`` end to end against ``trust``: the log (see
    :func:`~scalegate.audit.audit_log`, whose keyword arguments these are) and, with
    ``replay``, every run (or only ``run_ids``), also held to each policy in ``held_to``
    (see :mod:`scalegate.audit.regulator`). ``now`` is the audit time for notification
    deadlines (default: the current time). ``incremental`` reads only what its last audit
    of this log did not (:class:`~scalegate.audit.incremental.IncrementalAudit`). Never
    raises on findings."""
    collector = RunCollector() if (replay or held_to) and incremental is None else None
    on_entry: Callable[[CheckedEntry], None] | None = collector
    if incremental is not None:  # its collector of the moment (a fresh fold has a new one)
        on_entry = incremental.collect
    with _no_full_collections() if on_entry is not None else nullcontext():
        report = audit_log(ledger, trust, state_path=state_path, use_state=use_state,
                           workers=workers, full=full, on_entry=on_entry, progress=progress,
                           incremental=incremental)
        if incremental is not None:
            collector = incremental.collector
        runs: list[RunAudit] = []
        held: list[HeldTo] = []
        stopped = any(c.name in ("ledger readable", "audit completed") and not c.ok
                      for c in report.checks)
        if collector is not None and not stopped:  # a partial read would replay half a run
            now = now or datetime.now(UTC)
            if replay:
                runs = audit_runs(collector, report, now=now, run_ids=run_ids,
                                  time_checks=incremental.time_checks
                                  if incremental is not None else None)
            held = hold_to(held_to, collector, report, now=now, run_ids=run_ids,
                           read=incremental.held_read if incremental is not None else None)
            spot_checks(collector.runs, report)
    return LedgerAudit(report, runs, held)


def hold_to(policies: Sequence[Policy], collected: RunCollector, report: AuditReport, *,
            now: datetime, run_ids: list[str] | None = None,
            read: dict[tuple[str, str], Any] | None = None) -> list[HeldTo]:
    """Hold every collected run (or only ``run_ids``) to each of ``policies`` besides its
    own; add each policy's violations (labelled with it) and a check to ``report``.
    ``read``: see :func:`~scalegate.audit.regulator.hold_runs`."""
    if not policies:
        return []
    times = WitnessedTimes(WitnessedCheckpoint(w.size, w.existed_by, w.not_before)
                           for w in report.witnessed_times)
    runs = {rid: own for rid, own in collected.runs.items()
            if run_ids is None or rid in run_ids}
    out = []
    for policy in policies:
        held = hold_runs(policy, runs, times=times, now=now, read=read)
        for f in held.violations:
            assert f.violation is not None
            report.violation(f.violation, f"under {held.label}: {f.message}", f.refs,
                             run_id=f.run_id, policy=policy.id)
        bad = len(held.violations)
        report.check(f"held to {held.label}", bad == 0, held.summary() + (
            f"; not judged: {', '.join(held.not_judged)}" if held.not_judged else ""))
        out.append(held)
    return out


def replay_ledger(
    ledger: Ledger, *, run_ids: list[str] | None = None, now: datetime | None = None
) -> LedgerAudit:
    """Replay runs of an open ledger *without* verifying the log: its own key registry is
    taken at its word for who signed what (for reports; :func:`audit_ledger` verifies).
    The report says so with a failed, unverifiable check."""
    registry = ledger.registry()
    collector = RunCollector()
    if run_ids is None:
        wanted: Iterable[LogEntry] = ledger.iter_entries()
    else:
        picked = {e.index: e for rid in run_ids for e in ledger.entries(run_id=rid)}
        for kind in ("policy", "attestation"):
            picked.update((e.index, e) for e in ledger.entries(kind=kind))
        wanted = [picked[i] for i in sorted(picked)]
    report = AuditReport(ledger=ledger.path, origin=ledger.origin, size=ledger.size)
    report.check("log verified", False, "not checked: signatures, signers, the tree and "
                 "witnesses are taken from the ledger itself (verify with a trust file: "
                 "scalegate verify --trust FILE)", verifiable=False)
    with _no_full_collections():
        for e in wanted:
            collector(CheckedEntry(e.index, e.leaf_hash, e.data, e.kind, e.run_id,
                                   e.appended_at, e.signer, registry.get(e.signer), True))
        return LedgerAudit(report, audit_runs(collector, report, now=now, run_ids=run_ids))


# The run audit keeps every run's statements, folded: some ten objects per entry, all
# alive to the end. CPython's cyclic collector traverses each new object when it
# collects the youngest generation, again in each collection of an older one, and starts
# a full collection whenever the objects that lived long grew by a quarter: a growing
# audit would pay about seven traversals of everything it keeps (at 10^6 entries more
# than the audit itself). Almost nothing an audit makes is cyclic garbage (a few
# hundred objects per 10^5 entries), so while audits run the collector waits; when the
# last one ends, what they made is moved to the oldest generation at once (freeze, then
# unfreeze: no traversal) and is traversed with it, at the next full collection.
# Reference counting frees everything else as always. A process that froze objects of
# its own keeps them frozen: its objects are then not moved, only collected later.
_GC_LOCK = threading.Lock()
_GC_HOLDERS = 0
_GC_WAS_ENABLED = False
_GC_FROZEN_BEFORE = 0


@contextmanager
def _no_full_collections() -> Iterator[None]:
    global _GC_HOLDERS, _GC_WAS_ENABLED, _GC_FROZEN_BEFORE
    with _GC_LOCK:
        if _GC_HOLDERS == 0:
            _GC_WAS_ENABLED, _GC_FROZEN_BEFORE = gc.isenabled(), gc.get_freeze_count()
            gc.disable()
        _GC_HOLDERS += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_HOLDERS -= 1
            if _GC_HOLDERS == 0:
                if _GC_FROZEN_BEFORE == 0 and gc.get_freeze_count() == 0:
                    gc.freeze()
                    gc.unfreeze()
                if _GC_WAS_ENABLED:
                    gc.enable()


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


#: Every violation kind the run-level audit can add to a report.
RUN_AUDIT_KINDS: dict[str, str] = {**HELD_VIOLATION_KINDS, **SETUP_VIOLATION_KINDS,
                                   **RUN_VIOLATION_KINDS}
