"""Statement kinds: in-toto Statement v1 with scalegate predicates (``urn:scalegate:<kind>:v1``).

Every predicate is a strict pydantic model (unknown fields are errors). Compute is
in FLOP (floats); times are RFC 3339 UTC; a reference to an earlier statement is a
:class:`Ref` ``{index, leaf_hash}``. Compute figures in ``compute`` statements are
*cumulative* for the run, so a replay can detect compute going backwards.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
)

from scalegate.compute import PHASES
from scalegate.documents import MAX_JSON_DEPTH, JsonTooDeep, json_too_deep, load_json
from scalegate.errors import StatementError

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
_PHASE_SET = frozenset(PHASES)
PREDICATE_PREFIX = "urn:scalegate:"
PREDICATE_SUFFIX = ":v1"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("time must carry a UTC offset (RFC 3339), e.g. 2026-01-31T12:00:00Z")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Flop = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Verdict = Literal["continue", "alert", "evaluate", "pause"]
VERDICT_ORDER: dict[str, int] = {"continue": 0, "alert": 1, "evaluate": 2, "pause": 3}


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no spaces, UTF-8) used for payloads and digests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes | str) -> str:
    """Hex SHA-256 of bytes (or of a string's UTF-8 encoding)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __reduce__(self) -> tuple[Any, ...]:
        # Its fields as they are, rebuilt without validating again: a pickle is taken of
        # statements already validated (an audit's fold), and pydantic's own way costs
        # several times more.
        return _unpickle_model, (type(self), self.__dict__, self.__pydantic_fields_set__)


def _unpickle_model(cls: type[_Strict], fields: dict[str, Any], fields_set: set[str]
                    ) -> _Strict:
    return cls.model_construct(fields_set, **fields)


class Ref(_Strict):
    """A reference to an earlier log entry: its index and its RFC 6962 leaf hash (hex)."""

    index: int = Field(ge=0)
    leaf_hash: Hex64


class Reason(_Strict):
    """Why the gate decided what it did: a rule, the threshold, what was observed, the evidence."""

    rule: str
    message: str
    threshold: float | str | None = None
    observed: float | str | None = None
    refs: list[Ref] = Field(default_factory=list)


class Obligation(_Strict):
    """Something the lab must do by a deadline (e.g. notify a regulator)."""

    id: str
    kind: Literal["notify"] = "notify"
    recipient: str
    deadline: UtcDatetime | None = None
    rule: str
    message: str = ""


class ResourceDescriptor(_Strict):
    """in-toto ResourceDescriptor (the subset scalegate uses)."""

    name: str
    digest: dict[str, str] = Field(min_length=1)


# --- predicates ----------------------------------------------------------------------------

#: The kinds that move a run along, written by its trainer: each carries ``seq``, its place
#: among the run's statements of these kinds (the ``run`` statement is 0), so a statement
#: replayed or withheld shows even in a log written around admission.
SEQUENCED_KINDS = frozenset({"compute", "checkpoint", "eval", "decision", "pause", "resume"})
SEQ_DOC = ("the statement's place among the run's run/compute/checkpoint/eval/decision/pause/"
           "resume statements, in log order (the run statement is 0)")

PREDICATES: dict[str, type[Predicate]] = {}


class Predicate(_Strict):
    """Base of every predicate; subclasses register their ``KIND``."""

    KIND: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.KIND:
            PREDICATES[cls.KIND] = cls

    @classmethod
    def predicate_type(cls) -> str:
        return f"{PREDICATE_PREFIX}{cls.KIND}{PREDICATE_SUFFIX}"

    def subject(self) -> ResourceDescriptor:
        """What the statement is about (in-toto requires at least one subject)."""
        run_id = getattr(self, "run_id", None)
        if run_id:
            return ResourceDescriptor(name=f"run/{run_id}", digest={"sha256": sha256_hex(run_id)})
        body = canonical_json(self.model_dump(mode="json"))
        return ResourceDescriptor(name=f"{self.KIND}", digest={"sha256": sha256_hex(body)})


class KeyPredicate(Predicate):
    """Registers a key (verifier key text) for an organisation with roles, signed by its root."""

    KIND: ClassVar[str] = "key"
    vkey: str
    org: str = Field(min_length=1)
    roles: list[str] = Field(default_factory=list)
    valid_from: UtcDatetime
    valid_until: UtcDatetime | None = None

    def subject(self) -> ResourceDescriptor:
        name = self.vkey.split("+", 1)[0]
        return ResourceDescriptor(name=f"key/{name}", digest={"sha256": sha256_hex(self.vkey)})


class KeyRevocationPredicate(Predicate):
    """Revokes a registered key from ``revoked_at`` on."""

    KIND: ClassVar[str] = "key-revocation"
    vkey: str
    reason: str
    revoked_at: UtcDatetime

    def subject(self) -> ResourceDescriptor:
        name = self.vkey.split("+", 1)[0]
        return ResourceDescriptor(name=f"key/{name}", digest={"sha256": sha256_hex(self.vkey)})


class PolicyPredicate(Predicate):
    """Publishes a policy document (the YAML text) with its id, version and digest."""

    KIND: ClassVar[str] = "policy"
    policy_id: str
    version: str
    digest: Hex64
    document: str
    # When it was published: each publication (by each approver) is its own statement.
    published_at: UtcDatetime | None = None

    def subject(self) -> ResourceDescriptor:
        return ResourceDescriptor(name=f"policy/{self.policy_id}", digest={"sha256": self.digest})


class PolicyRef(_Strict):
    """Which policy a run is under: id, version, digest, and its ``policy`` entry if logged."""

    id: str
    version: str
    digest: Hex64
    ref: Ref | None = None


class RunPredicate(Predicate):
    """Registers a training run under a policy."""

    KIND: ClassVar[str] = "run"
    run_id: str = Field(min_length=1)
    org: str
    model: str
    policy: PolicyRef
    planned_flop: Flop | None = None
    planned_tokens: Flop | None = None
    config_digest: Hex64 | None = None
    data_root: str | None = None
    seed_commitment: Hex64 | None = None
    started_at: UtcDatetime


class ComputePredicate(Predicate):
    """Cumulative compute of a run at ``step``: by phase, by regime, effective, with the method."""

    KIND: ClassVar[str] = "compute"
    run_id: str
    step: int = Field(ge=0)
    tokens: Flop
    flop_by_phase: dict[str, Flop]
    totals: dict[str, Flop] = Field(default_factory=dict)
    effective_flop: Flop
    method: str
    methods: dict[str, Flop] = Field(default_factory=dict)
    at: UtcDatetime
    seq: int | None = Field(default=None, ge=0, description=SEQ_DOC)

    @field_validator("flop_by_phase")
    @classmethod
    def _known_phases(cls, value: dict[str, float]) -> dict[str, float]:
        if _PHASE_SET.issuperset(value):  # every compute statement passes here: keep it cheap
            return value
        unknown = sorted(set(value) - _PHASE_SET)
        raise ValueError(f"unknown phase(s) {unknown}; known phases: {', '.join(PHASES)}")


class CheckpointPredicate(Predicate):
    """A model checkpoint: per-file SHA-256 manifest and its digest (OpenSSF model signing)."""

    KIND: ClassVar[str] = "checkpoint"
    run_id: str
    step: int = Field(ge=0)
    digest: Hex64
    manifest: dict[str, Hex64] = Field(default_factory=dict)
    effective_flop: Flop
    uri: str | None = None
    at: UtcDatetime
    seq: int | None = Field(default=None, ge=0, description=SEQ_DOC)


class EvalPredicate(Predicate):
    """One evaluation result (a failed evaluation has ``status='failed'`` and no value)."""

    KIND: ClassVar[str] = "eval"
    run_id: str
    evaluation_id: str
    capability: str
    metric: str
    value: float | None = None
    stderr: float | None = None
    n: int = Field(ge=0)
    elicitation: str = ""
    harness: str = ""
    step: int = Field(ge=0)
    effective_flop: Flop
    checkpoint: Ref | None = None
    checkpoint_digest: Hex64 | None = None
    log_digest: Hex64 | None = None
    status: Literal["success", "failed"] = "success"
    error: str | None = None
    at: UtcDatetime
    seq: int | None = Field(default=None, ge=0, description=SEQ_DOC)


class AttestationPredicate(Predicate):
    """A safeguard is in place, attested by a role the policy names, until ``valid_until``."""

    KIND: ClassVar[str] = "attestation"
    safeguard: str
    scope: Literal["org", "run"] = "org"
    org: str | None = None
    run_id: str | None = None
    evidence_digest: Hex64 | None = None
    evidence_uri: str | None = None
    valid_from: UtcDatetime
    valid_until: UtcDatetime | None = None

    def subject(self) -> ResourceDescriptor:
        body = canonical_json(self.model_dump(mode="json"))
        return ResourceDescriptor(
            name=f"safeguard/{self.safeguard}", digest={"sha256": sha256_hex(body)}
        )


class DecisionPredicate(Predicate):
    """The gate's decision for a run at a point: verdict, reasons, obligations, next milestone."""

    KIND: ClassVar[str] = "decision"
    run_id: str
    step: int = Field(ge=0)
    effective_flop: Flop
    verdict: Verdict
    reasons: list[Reason] = Field(default_factory=list)
    obligations: list[Obligation] = Field(default_factory=list)
    next_eval_at_flop: Flop | None = None
    ceiling_flop: Flop | None = None
    basis_size: int = Field(ge=0, description="log size whose entries the decision rests on")
    at: UtcDatetime
    seq: int | None = Field(default=None, ge=0, description=SEQ_DOC)


class PausePredicate(Predicate):
    """The run is paused: the decision that required it and the checkpoint it stopped at."""

    KIND: ClassVar[str] = "pause"
    run_id: str
    decision: Ref
    checkpoint: Ref
    step: int = Field(ge=0)
    effective_flop: Flop
    public_statement: str = ""
    at: UtcDatetime
    seq: int | None = Field(default=None, ge=0, description=SEQ_DOC)


class ApprovalPredicate(Predicate):
    """A governance role approves resuming a pause, optionally only up to a compute ceiling."""

    KIND: ClassVar[str] = "approval"
    run_id: str
    pause: Ref
    role: str
    rationale: str
    ceiling_flop: Flop | None = None
    at: UtcDatetime


class ResumePredicate(Predicate):
    """The run resumes from the paused checkpoint, citing the approvals and the gate's decision."""

    KIND: ClassVar[str] = "resume"
    run_id: str
    pause: Ref
    approvals: list[Ref] = Field(min_length=1)
    decision: Ref
    checkpoint: Ref
    ceiling_flop: Flop | None = None
    at: UtcDatetime
    seq: int | None = Field(default=None, ge=0, description=SEQ_DOC)


class NotificationPredicate(Predicate):
    """An obligation was met: who was notified, when, and a digest of what was sent."""

    KIND: ClassVar[str] = "notification"
    run_id: str | None = None
    obligation: Ref
    obligation_id: str
    recipient: str
    sent_at: UtcDatetime
    content_digest: Hex64


class _AboutCommitment(Predicate):
    """A statement about one commitment, named by its id and the digest of its document."""

    commitment_id: str
    digest: Hex64

    def subject(self) -> ResourceDescriptor:
        return ResourceDescriptor(name=f"commitment/{self.commitment_id}",
                                  digest={"sha256": self.digest})


class CommitmentPredicate(_AboutCommitment):
    """Proposes a commitment (a joint pause, a pledge, a moratorium): the document (its
    YAML text) with its id and digest, by the organisation that proposes it."""

    KIND: ClassVar[str] = "commitment"
    document: str
    org: str
    at: UtcDatetime


class Signatory(_Strict):
    """Who a person signing says they are: a name, and a title and affiliation claimed."""

    name: str = Field(min_length=1, max_length=200)
    title: str | None = Field(None, max_length=200)
    affiliation: str | None = Field(None, max_length=200)


class EndorsementPredicate(_AboutCommitment):
    """Joins a commitment (by digest): an organisation (``signatory`` absent) or a person
    (``signatory``: the name and affiliation they claim; a verifier says whether their key
    is bound to that affiliation)."""

    KIND: ClassVar[str] = "endorsement"
    org: str
    signatory: Signatory | None = None
    at: UtcDatetime


class WithdrawalPredicate(_AboutCommitment):
    """An organisation leaves a commitment, from ``effective`` (after the notice the
    commitment requires)."""

    KIND: ClassVar[str] = "withdrawal"
    org: str
    at: UtcDatetime
    effective: UtcDatetime
    reason: str = Field("", max_length=2000)


class SegmentResult(_Strict):
    """What re-executing one segment of a transcript showed."""

    segment: Ref
    start_step: int = Field(ge=0)
    end_step: int = Field(ge=0)
    ok: bool
    problems: list[str] = Field(default_factory=list)
    distance: float | None = None


class TranscriptAuditPredicate(Predicate):
    """A verifier's spot-check of a run's training transcript: the segments it challenged
    (out of ``segments``), how they were chosen (``seed``, and what it is), what
    re-executing each showed, and what the transcript as a whole showed (``chain``)."""

    KIND: ClassVar[str] = "transcript-audit"
    run_id: str
    segments: int = Field(ge=0)
    seed: str
    seed_source: str
    results: list[SegmentResult]
    chain: list[str] = Field(default_factory=list)  # problems with the transcript as a whole
    ok: bool
    at: UtcDatetime


class DomainVerificationPredicate(Predicate):
    """What a checker saw at an organisation's domain: the root keys it serves at
    ``https://DOMAIN/.well-known/scalegate.json``, when, over which TLS certificate."""

    KIND: ClassVar[str] = "domain-verification"
    domain: str
    org: str
    url: str
    roots: list[str]  # verifier key texts, as served
    checked_at: UtcDatetime
    tls_certificate_sha256: Hex64

    def subject(self) -> ResourceDescriptor:
        return ResourceDescriptor(name=f"domain/{self.domain}",
                                  digest={"sha256": self.tls_certificate_sha256})


class SegmentPredicate(Predicate):
    """One segment of a run's training transcript: optimizer steps ``start_step`` (the
    state digested in ``start_digest``) to ``end_step`` (``digest``: weights and optimizer
    state after it), the Merkle root of the digests of the batches fed, the learning rate
    of each step, the segment's FLOP, and the digest of the random-number generator states
    it drew from (``rng_digest``: its start's, and any a step began from other than the
    one the step before left)."""

    KIND: ClassVar[str] = "segment"
    run_id: str
    start_step: int = Field(ge=0)
    end_step: int = Field(ge=0)
    start_digest: Hex64 | None = None
    digest: Hex64
    batches_root: Hex64 | None = None
    learning_rates: list[float] = Field(default_factory=list)
    flop: Flop | None = None
    uri: str | None = None
    rng_digest: Hex64 | None = None


# --- the statement -------------------------------------------------------------------------


class Statement(BaseModel):
    """An in-toto Statement v1 whose predicate is one of the scalegate kinds."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type_: Literal["https://in-toto.io/Statement/v1"] = Field(default=STATEMENT_TYPE, alias="_type")
    subject: list[ResourceDescriptor] = Field(min_length=1)
    predicateType: str
    predicate: SerializeAsAny[Predicate]

    @field_validator("predicateType")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        kind_of(value)
        return value

    @field_validator("predicate", mode="before")
    @classmethod
    def _typed_predicate(cls, value: Any, info: Any) -> Any:
        if isinstance(value, Predicate):
            return value
        ptype = info.data.get("predicateType")
        if ptype is None:
            raise ValueError("not checked: the predicateType is missing or unknown")
        return PREDICATES[kind_of(ptype)].model_validate(value)

    @property
    def kind(self) -> str:
        """The statement kind, e.g. ``pause``."""
        return kind_of(self.predicateType)

    @property
    def run_id(self) -> str | None:
        """The run the statement concerns, if any."""
        return getattr(self.predicate, "run_id", None)

    def to_payload(self) -> bytes:
        """The canonical JSON bytes carried as the DSSE payload."""
        data = self.model_dump(mode="json", by_alias=True)
        if "seq" in data["predicate"] and data["predicate"]["seq"] is None:
            del data["predicate"]["seq"]  # unsequenced statements read as they always did
        return canonical_json(data)


def kind_of(predicate_type: str) -> str:
    """``urn:scalegate:pause:v1`` -> ``pause``; raises ``ValueError`` for anything else."""
    kind = _KIND_OF_TYPE.get(predicate_type)  # hot: three lookups per appended entry
    if kind is None:
        if len(_KIND_OF_TYPE) != len(PREDICATES):  # a kind registered after import
            _KIND_OF_TYPE.update({c.predicate_type(): k for k, c in PREDICATES.items()})
            return kind_of(predicate_type)
        raise ValueError(
            f"unknown predicateType {predicate_type!r}; expected one of "
            + ", ".join(p.predicate_type() for p in PREDICATES.values())
        )
    return kind


_KIND_OF_TYPE: dict[str, str] = {}


def make_statement(predicate: Predicate) -> Statement:
    """Wrap a predicate in an in-toto Statement with its subject derived from the predicate."""
    return Statement(
        subject=[predicate.subject()],
        predicateType=predicate.predicate_type(),
        predicate=predicate,
    )


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:8]:
        where = ".".join(str(p) for p in e["loc"]) or "(statement)"
        parts.append(f"{where}: {e['msg']}")
    more = len(err.errors()) - 8
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_TWENTY_DIGITS = b"0" * 20


def json_value(payload: bytes) -> Any:
    """``json.loads(payload)``, through orjson (several times faster) wherever the two agree.

    What orjson refuses is read under :func:`~scalegate.documents.load_json`'s depth
    limit; :func:`parse_statement` holds statements to that limit on both paths.

    orjson refuses what only :mod:`json` accepts (``NaN``, lone surrogates, a BOM): those
    go to :mod:`json`, which also raises the errors. Integers beyond 64 bits orjson
    would read as floats, so payloads with 20 digits in a row go to :mod:`json` too.
    A string holding a lone surrogate (escaped, or encoded in what is then not UTF-8) is
    refused as orjson refuses it: it is not text, and could not be written or shown again.
    """
    # (20 digits in a row, found by turning every digit into 0: ten times a regex's speed)
    if _TWENTY_DIGITS not in bytes(payload).translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(payload)  # (it refuses more than 1024 levels itself)
        except orjson.JSONDecodeError:
            pass
    try:
        value = load_json(payload)
    except json.JSONDecodeError:
        raise
    except ValueError:  # a number beyond Python's int_max_str_digits
        limit = sys.get_int_max_str_digits()
        doc = _lenient(payload)
        found = re.search(rf"[0-9]{{{limit + 1}}}", doc)
        raise json.JSONDecodeError(f"a number has more than {limit} digits", doc,
                                   found.start() if found else 0) from None
    return _text_only(value, payload)


def _lenient(payload: bytes) -> str:
    return bytes(payload).decode("utf-8", "surrogatepass")


def _text_only(value: Any, payload: bytes) -> Any:
    """``value``, unless one of its strings holds a lone surrogate (JSONDecodeError)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        doc = _lenient(payload)
        at = next((i for i, c in enumerate(doc) if 0xD800 <= ord(c) <= 0xDFFF),
                  max(doc.lower().find("\\ud"), 0))
        raise json.JSONDecodeError("a string holds a lone surrogate (half a UTF-16 pair), "
                                   "which is not text", doc, at) from None
    return value


def parse_statement(payload: bytes) -> Statement:
    """Parse and validate a DSSE payload as a scalegate statement; raise ``StatementError``."""
    try:
        data = json_value(payload)
        at = json_too_deep(payload)  # orjson read it: hold it to load_json's limit
        if at is not None:
            raise JsonTooDeep(f"it nests deeper than {MAX_JSON_DEPTH} levels",
                              bytes(payload).decode("utf-8", "replace"), at)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StatementError(f"statement payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StatementError("statement payload must be a JSON object (an in-toto Statement v1)")
    if data.get("_type") != STATEMENT_TYPE:
        raise StatementError(
            f"statement _type is {data.get('_type')!r}; expected {STATEMENT_TYPE!r}"
        )
    try:
        return Statement.model_validate(data)
    except ValidationError as exc:
        raise StatementError(f"malformed statement: {_describe(exc)}") from None


def sign_statement(statement: Statement | Predicate, key: Any) -> Any:
    """Sign a statement (or a bare predicate) with a ``SigningKey``: returns a DSSE ``Envelope``."""
    from scalegate.ledger.envelope import sign_envelope

    if isinstance(statement, Predicate):
        statement = make_statement(statement)
    return sign_envelope(statement.to_payload(), key)


def now_utc() -> datetime:
    """The current time in UTC (callers pass times explicitly; this is for the edges)."""
    return datetime.now(UTC)
