"""The commitments proposed in the followed logs, judged from the registry's own audits.

After each round the registry gathers every commitment proposed in any followed log and
judges it (:func:`scalegate.commitments.commitment_status`) from what it has verified:
each log's status as the monitor last recorded it, its commitment statements (read from
its mirror by kind), the key registry its audit folded from the trusted roots, and its
runs as the audit collected them (nothing is read or parsed again). Only computes that
could reach a scope are looked at (their total over every phase reaches the smallest
scope's FLOP, or a neighbour's does).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from scalegate.audit import IncrementalAudit
from scalegate.audit.regulator import HELD_VIOLATION_KINDS
from scalegate.audit.replay import RUN_VIOLATION_KINDS
from scalegate.audit.runcheck import SETUP_VIOLATION_KINDS, TRANSCRIPT_VIOLATION_KINDS
from scalegate.commitments import commitment_status, parse_commitment
from scalegate.commitments.evidence import (
    KINDS,
    LogFacts,
    add_to_run,
    evidence_of,
    proposed_in,
    read_statements,
    runs_of,
)
from scalegate.commitments.status import CommitmentStatus, ComputeSeen, RunEvidence
from scalegate.errors import ScalegateError
from scalegate.ledger import (
    AttestationPredicate,
    CommitmentPredicate,
    ComputePredicate,
    Ledger,
    RunPredicate,
)
from scalegate.registry.config import RegistryConfig
from scalegate.registry.store import RegistryStore

__all__ = ["judge_commitments"]

#: Violations about what runs did, not about the log: its statements are still authentic
#: (a breach of a commitment is proven by them).
_RUN_LEVEL = frozenset({*RUN_VIOLATION_KINDS, *SETUP_VIOLATION_KINDS, *HELD_VIOLATION_KINDS,
                        *TRANSCRIPT_VIOLATION_KINDS, "deadline-on-operator-word"})
#: The registry's statuses as a commitment's judge reads a party's log.
_AS_LOG = {"verified": "verified", "violations": "violations", "stale": "stale",
           "unwitnessed": "unwitnessed", "unreachable": "unreachable"}


def judge_commitments(config: RegistryConfig, store: RegistryStore, workdir: Path,
                      fold: Callable[[str], IncrementalAudit | None], now: datetime
                      ) -> list[CommitmentStatus]:
    """Judge every commitment proposed in a followed log; record and return them."""
    facts = [f for log in config.logs if (f := _facts(log.name, log.trusted, store,
                                                        workdir)) is not None]
    ids = proposed_in(facts)
    floor = _smallest_scope(facts)
    for f in facts:
        if ids:
            f.runs = _runs(f, fold(f.name), workdir, floor)
    out = []
    for ident in ids:
        evidence = evidence_of(ident, facts)
        if evidence is not None:
            out.append(commitment_status(evidence, now, stale_after=config.stale_after))
    store.record_commitments([s.model_dump(mode="json") for s in out],
                             now.isoformat().replace("+00:00", "Z"))
    return out


def _facts(name: str, trust: Any, store: RegistryStore, workdir: Path) -> LogFacts | None:
    rec = store.log(name)
    mirror = workdir / f"{name}.db"
    if rec is None or trust is None or not mirror.exists():
        return None
    try:
        with Ledger.open(mirror, checkpoint_on_close=False) as led:
            statements = read_statements(led, KINDS)
    except ScalegateError:
        return None
    witnessed = datetime.fromisoformat(rec.witnessed_at.replace("Z", "+00:00")) \
        if rec.witnessed_at else None
    status = _AS_LOG.get(rec.status, "unverifiable")
    kinds = set(rec.audit.get("report", {}).get("violation_counts", {}))
    if status == "violations" and kinds and kinds <= _RUN_LEVEL:  # the log itself holds up
        status = "verified"  # (how recently it was witnessed is judged with the rest)
    return LogFacts(name, trust, status, rec.problem, witnessed, statements, None)


def _runs(f: LogFacts, audit: IncrementalAudit | None, workdir: Path, floor: float
          ) -> list[tuple[str, RunEvidence]] | None:
    """The log's runs, from its audit's collected statements (or, when the audit has not
    collected them since a restart, read from its mirror); sets the trusted registry."""
    if audit is None or audit.sweep is None or not audit.ready:
        with Ledger.open(workdir / f"{f.name}.db", checkpoint_on_close=False) as led:
            f.statements.update(read_statements(led, ("run", "compute", "pause", "resume",
                                                      "decision", "attestation")))
        return runs_of(f.statements)
    if f.status in ("verified", "stale", "unwitnessed"):
        f.registry = audit.sweep.signers.registry
    out, attested = [], list(audit.collector.org_attestations)
    for run_id, records in audit.collector.runs.items():
        org, run, computes = None, RunEvidence(run_id=run_id), []
        for r in records:
            p = r.predicate
            if isinstance(p, ComputePredicate):
                computes.append(r)
            elif isinstance(p, RunPredicate) and org is None:
                org = p.org
            elif isinstance(p, AttestationPredicate):
                attested.append(r)
            else:
                add_to_run(run, r.ref, p)
        if org is not None:
            run.computes.extend(_near(computes, floor))
            out.append((org, run))
    f.statements["attestation"] = [(r.ref, r.signer or "", r.predicate) for r in attested]
    return out


def _near(computes: list[Any], floor: float) -> list[ComputeSeen]:
    """The computes that could reach a scope of ``floor`` FLOP, with their neighbours."""
    big = [sum(r.predicate.flop_by_phase.values()) >= floor * (1 - 1e-9) for r in computes]
    keep = [b or (i > 0 and big[i - 1]) or (i + 1 < len(big) and big[i + 1])
            for i, b in enumerate(big)]
    return [ComputeSeen(ref=r.ref, at=r.predicate.at, flop_by_phase=r.predicate.flop_by_phase)
            for r, k in zip(computes, keep, strict=True) if k]


def _smallest_scope(facts: list[LogFacts]) -> float:
    """The smallest compute scope among the commitments proposed (0 if any has none)."""
    flops = []
    for f in facts:
        for _, _, p in f.statements.get("commitment", []):
            assert isinstance(p, CommitmentPredicate)
            try:
                scope = parse_commitment(p.document).scope.compute
            except ScalegateError:
                continue
            flops.append(scope.flop if scope is not None else 0.0)
    return min(flops, default=0.0)

