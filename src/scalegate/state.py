"""A run's state as a fold over its ledger statements (pure, no I/O).

The supervisor folds what it appends; the auditor re-folds the whole log and must
get the same state, then the same decisions. The fold records; it does not judge:
whether an attestation's signer may attest, or an approver may approve, is the
gate's question. For that the fold keeps, with every statement, the signer's key
name and the roles that key held — resolved by the caller from ``key`` statements.

>>> state = fold(entries)          # entries: LoggedStatement(ref, statement, signer, roles)
>>> state = fold(more, into=state) # continue from an earlier state
>>> state = fold(more, into=state, extend=True)  # ... reusing (consuming) its lists

A state is immutable; ``extend=True`` is for a caller that folds a long run piece by
piece and keeps only the latest state (as the auditor's replay does): the record lists
are extended in place instead of copied, so folding n entries in k pieces costs O(n)
instead of O(n·k), and the gate's figures kept with them (see :class:`Records`) carry
over from one piece to the next.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Generic, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from scalegate.errors import RunError
from scalegate.ledger import (
    ApprovalPredicate,
    AttestationPredicate,
    CheckpointPredicate,
    ComputePredicate,
    DecisionPredicate,
    EvalPredicate,
    NotificationPredicate,
    PausePredicate,
    PolicyRef,
    Predicate,
    Ref,
    ResumePredicate,
    RunPredicate,
    Statement,
)

P = TypeVar("P", bound=Predicate)


class LoggedStatement(BaseModel):
    """A statement as the log holds it, as the fold reads it: where it is (``ref``), what
    it says, who signed it (and their roles), and when it was logged."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    ref: Ref
    statement: Statement
    signer: str | None = None
    roles: tuple[str, ...] = ()
    logged_at: datetime | None = None  # when the log recorded it, where the reader knows

    @property
    def predicate(self) -> Predicate:
        """What the statement says (as a :class:`Recorded` names it too)."""
        return self.statement.predicate


class Recorded(BaseModel, Generic[P]):
    """A predicate folded into the state, with its ref, signer and the signer's roles."""

    model_config = ConfigDict(frozen=True)

    ref: Ref
    predicate: P
    signer: str | None = None
    roles: tuple[str, ...] = ()
    #: When the log recorded it (the entry's ``appended_at``), where the reader knows it:
    #: a deadline is met by what the log held by then, not by the time a statement claims.
    logged_at: datetime | None = None

    @property
    def index(self) -> int:
        """The entry's index in the log."""
        return self.ref.index

    def __reduce__(self) -> tuple[Any, ...]:
        # A parametrised model's class is not found by name: pickle it by its predicate's.
        return _unpickle_record, (type(self.predicate), self.ref, self.predicate,
                                  self.signer, self.roles, self.logged_at)


def _unpickle_record(kind: type[Predicate], ref: Ref, predicate: Predicate,
                     signer: str | None, roles: tuple[str, ...], logged_at: datetime | None
                     ) -> Recorded[Any]:
    return record_type(kind).model_construct(ref=ref, predicate=predicate, signer=signer,
                                             roles=roles, logged_at=logged_at)


#: What :func:`fold` takes: ledger entries, or records already made (an entry reduced to
#: its predicate, as a state keeps it: the fold keeps such a record as it is).
StatementOrRecord: TypeAlias = LoggedStatement | Recorded[Any]


class Records(list[Any]):
    """A :class:`RunState`'s list of records of one kind (a plain list to every reader)
    that can also carry what a reader derived from it, in ``derived``: the gate keeps its
    per-statement compute figures there, valid for as long as the list only grows, as it
    does when a run is folded piece by piece with ``fold(..., extend=True)``. They live
    and die with the list; copies and pickles leave them behind."""

    __slots__ = ("derived",)

    def __init__(self, records: Iterable[Any] = ()) -> None:
        super().__init__(records)
        self.derived: Any = None

    def __reduce__(self) -> tuple[type[Records], tuple[list[Any]]]:
        return Records, (list(self),)


def same_ref(a: Ref, b: Ref) -> bool:
    """Whether two refs name the same entry (index and leaf hash both match)."""
    return a.index == b.index and a.leaf_hash == b.leaf_hash


class RunState(BaseModel):
    """Everything the ledger says about one run, in log order."""

    model_config = ConfigDict(frozen=True)

    run_id: str | None = None
    run: Recorded[RunPredicate] | None = None
    compute: list[Recorded[ComputePredicate]] = Field(default_factory=list)
    checkpoints: list[Recorded[CheckpointPredicate]] = Field(default_factory=list)
    evals: list[Recorded[EvalPredicate]] = Field(default_factory=list)
    attestations: list[Recorded[AttestationPredicate]] = Field(default_factory=list)
    decisions: list[Recorded[DecisionPredicate]] = Field(default_factory=list)
    pauses: list[Recorded[PausePredicate]] = Field(default_factory=list)
    approvals: list[Recorded[ApprovalPredicate]] = Field(default_factory=list)
    resumes: list[Recorded[ResumePredicate]] = Field(default_factory=list)
    notifications: list[Recorded[NotificationPredicate]] = Field(default_factory=list)
    size: int = Field(default=0, ge=0, description="log size the state rests on (last index + 1)")
    latest_time: datetime | None = None
    next_seq: int = Field(default=0, ge=0, description="the seq of the run's next run-moving "
                          "statement (see SEQUENCED_KINDS): what its trainer signs next")

    # -- views --

    @property
    def org(self) -> str | None:
        """The organisation that registered the run."""
        return self.run.predicate.org if self.run else None

    @property
    def policy(self) -> PolicyRef | None:
        """The policy the run registered under."""
        return self.run.predicate.policy if self.run else None

    @property
    def started_at(self) -> datetime | None:
        """When the run started (its ``run`` statement)."""
        return self.run.predicate.started_at if self.run else None

    @property
    def planned_flop(self) -> float | None:
        """The compute the run declared it plans to use."""
        return self.run.predicate.planned_flop if self.run else None

    @property
    def latest_compute(self) -> Recorded[ComputePredicate] | None:
        """The most recent ``compute`` statement."""
        return self.compute[-1] if self.compute else None

    @property
    def step(self) -> int:
        """The latest training step the ledger knows of."""
        return self.compute[-1].predicate.step if self.compute else 0

    def find(self, ref: Ref) -> Recorded[Predicate] | None:
        """The folded record at ``ref`` (any kind), if the state holds it."""
        for records in (
            self.compute, self.checkpoints, self.evals, self.attestations, self.decisions,
            self.pauses, self.approvals, self.resumes, self.notifications,
        ):
            for record in records:
                if same_ref(record.ref, ref):
                    return record  # type: ignore[return-value]
        if self.run and same_ref(self.run.ref, ref):
            return self.run  # type: ignore[return-value]
        return None

    def resume_of(self, pause: Ref) -> Recorded[ResumePredicate] | None:
        """The first ``resume`` that lifts ``pause``, if any."""
        return next((r for r in self.resumes if same_ref(r.predicate.pause, pause)), None)

    @property
    def active_pause(self) -> Recorded[PausePredicate] | None:
        """The latest pause if no resume has lifted it."""
        if not self.pauses:
            return None
        last = self.pauses[-1]
        return None if self.resume_of(last.ref) else last

    @property
    def last_resume(self) -> Recorded[ResumePredicate] | None:
        """The resume that lifted the latest pause (whose ceiling, if any, now applies)."""
        if not self.pauses:
            return None
        return self.resume_of(self.pauses[-1].ref)

    def approvals_for(self, pause: Ref) -> list[Recorded[ApprovalPredicate]]:
        """Approvals bound to ``pause`` (by index and leaf hash), in log order."""
        return [a for a in self.approvals if same_ref(a.predicate.pause, pause)]


_KINDS: dict[type[Predicate], str] = {
    ComputePredicate: "compute",
    CheckpointPredicate: "checkpoints",
    EvalPredicate: "evals",
    AttestationPredicate: "attestations",
    DecisionPredicate: "decisions",
    PausePredicate: "pauses",
    ApprovalPredicate: "approvals",
    ResumePredicate: "resumes",
    NotificationPredicate: "notifications",
}


_SEQUENCED = frozenset({"compute", "checkpoints", "evals", "decisions", "pauses", "resumes"})

_RECORDED: dict[type[Predicate], type[Recorded[Any]]] = {}


def record_type(kind: type[P]) -> type[Recorded[P]]:
    """``Recorded[kind]``, made once per predicate class (subscripting a generic model
    looks the class up again each time, which costs as much as building a record)."""
    cls = _RECORDED.get(kind)
    if cls is None:
        cls = _RECORDED[kind] = Recorded[kind]  # type: ignore[valid-type]
    return cls


def _record(entry: StatementOrRecord) -> Recorded[Predicate]:
    predicate = entry.predicate
    cls = _RECORDED.get(type(predicate)) or record_type(type(predicate))
    if type(entry) is cls:  # a record of its own kind already (immutable): keep it
        return entry
    return cls(ref=entry.ref, predicate=predicate, signer=entry.signer, roles=entry.roles,
               logged_at=entry.logged_at)


def _time_of(predicate: Predicate) -> datetime | None:
    # Not an attestation's valid_from: it may lie in the future and is no event time.
    for name in ("at", "sent_at", "started_at"):
        value = getattr(predicate, name, None)
        if isinstance(value, datetime):
            return value
    return None


def fold(
    entries: Iterable[StatementOrRecord],
    *,
    run_id: str | None = None,
    into: RunState | None = None,
    extend: bool = False,
) -> RunState:
    """Fold ledger entries into the state of one run.

    ``entries`` are :class:`LoggedStatement` objects or records already made (see
    :data:`StatementOrRecord`). ``run_id`` selects the run; without it, the first ``run``
    statement's run is used. Entries about other runs are skipped; organisation-scoped
    attestations (no run id) are kept when they concern the run's organisation (or name
    none). ``into`` continues an earlier fold. Raises :class:`RunError` only if two
    different runs could be meant.

    With ``extend=True`` the new state takes over ``into``'s record lists (the
    :class:`Records` a fold made) and appends to them instead of copying them: the cost
    is that of the new entries only, and what the gate derived from them carries over;
    but ``into`` is used up (its lists now hold the new records too: read only the state
    returned).
    """
    base = into or RunState(run_id=run_id)
    if into is not None and run_id is not None and into.run_id not in (None, run_id):
        raise RunError(f"cannot fold run {run_id!r} into the state of run {into.run_id!r}")
    run_id = base.run_id or run_id
    lists: dict[str, Any] = {}  # kind -> its Records (typed per kind in RunState)
    for name in _KINDS.values():
        kept = getattr(base, name)
        lists[name] = kept if extend and type(kept) is Records else Records(kept)
    run = base.run
    size = base.size
    latest = base.latest_time
    nxt = base.next_seq
    pending_attestations: list[StatementOrRecord] = []
    compute, compute_record = lists["compute"], record_type(ComputePredicate)
    for entry in entries:
        index = entry.ref.index
        if index >= size:
            size = index + 1
        predicate: Any = entry.predicate
        # Most of a run: its compute records, folded as they are (what the general path
        # below does for them, without its lookups).
        if type(entry) is compute_record and run_id is not None \
                and predicate.run_id == run_id:
            seq = predicate.seq
            if seq is None:
                nxt += 1
            elif seq < nxt:
                continue  # a replay (see in_place)
            else:
                nxt = seq + 1
            compute.append(entry)
            when = predicate.at
            if latest is None or when > latest:
                latest = when
            continue
        if isinstance(predicate, RunPredicate):
            if run_id is None:
                run_id = predicate.run_id
            if predicate.run_id == run_id and run is None:
                run = _record(entry)  # type: ignore[assignment]
                latest = _later(latest, predicate.started_at)
                nxt = max(nxt, 1)
            continue
        listed = _KINDS.get(type(predicate))
        if listed is None:
            continue  # key, policy, commitment, ...: not part of a run's state
        if isinstance(predicate, AttestationPredicate) and predicate.scope == "org":
            pending_attestations.append(entry)  # the run's org may only be known later
            continue
        owner = getattr(predicate, "run_id", None)
        if run_id is None and owner is not None:
            run_id = owner
        if owner != run_id:
            continue
        if listed in _SEQUENCED:
            kept, nxt = in_place(predicate.seq, nxt)
            if not kept:
                continue
        lists[listed].append(entry if type(entry) is _RECORDED.get(type(predicate))
                           else _record(entry))
        when = getattr(predicate, "at", None)  # what _time_of finds first, mostly
        if not isinstance(when, datetime):
            when = _time_of(predicate)
        if when is not None and (latest is None or when > latest):
            latest = when
    org = run.predicate.org if run else None
    for entry in pending_attestations:
        predicate = entry.predicate
        assert isinstance(predicate, AttestationPredicate)
        if predicate.org is not None and org is not None and predicate.org != org:
            continue
        lists["attestations"].append(_record(entry))
    lists["attestations"].sort(key=lambda r: r.ref.index)
    # Every value is the fold's own (validated records, counts, times): validating the
    # model again would only copy each list, which is what made folding in pieces O(n²).
    return RunState.model_construct(run_id=run_id, run=run, size=size, latest_time=latest,
                                    next_seq=nxt, **lists)


def in_place(seq: int | None, expected: int) -> tuple[bool, int]:
    """Whether a run-moving statement numbered ``seq`` stands where ``expected`` is due, and
    the number due after it.

    A number below ``expected`` was signed for an earlier place: a replay, left out of the
    run. One above it stands (the statements in between are missing, which an audit
    reports) and the count goes on from it. An unnumbered statement takes its place.
    """
    if seq is None:
        return True, expected + 1
    if seq < expected:
        return False, expected
    return True, seq + 1


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
