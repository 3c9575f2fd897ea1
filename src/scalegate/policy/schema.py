"""The policy schema: pydantic models for everything a responsible scaling policy says.

A policy is data. It names compute *regimes* (which training phases count), the
*effective-compute* multiplier, *compute thresholds* (notify / evaluate / pause),
the *evaluation cadence*, *capabilities* with levels whose evaluation results
raise an alert or reach the level, the *safeguards* a level requires and who may
attest them, *governance* (roles, resumption quorum, who may change the policy)
and *disclosure*. Every model is strict: an unknown key is an error, so a typo is
never silently ignored. Quantities are written as people write them
(``1e25``, ``14d``, ``6mo``, ``4x``) and normalised here, so that
:meth:`Policy.digest` does not depend on how a number was spelled.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from scalegate.compute import (
    PHASES,
    Phase,
)
from scalegate.errors import PolicyError
from scalegate.policy.quorum import (
    Quorum,
    QuorumClause,
    Role,
    describe_quorum,
    quorum_roles,
    seats,
)
from scalegate.units import format_duration, parse_duration, parse_quantity, parse_ratio

#: Bumped when the meaning of a field changes; part of the digest.
SCHEMA_VERSION = 1

# --- scalar types ---------------------------------------------------------------------------


def _flop(value: Any) -> float:
    try:
        return parse_quantity(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(str(exc)) from None


def _ratio(value: Any) -> float:
    try:
        return parse_ratio(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(str(exc)) from None


def _above_one(value: float) -> float:
    if value <= 1.0:
        raise ValueError(f"expected a multiplier greater than 1x (e.g. 2x, 4x), got {value:g}x")
    return value


def _at_least_one(value: float) -> float:
    if value < 1.0:
        raise ValueError(f"expected a multiplier of at least 1x, got {value:g}x")
    return value


def _duration(value: Any) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, str | timedelta):
        raise ValueError(f"expected a duration such as 24h, 14d, 2w, 6mo or 1y, got {value!r}")
    try:
        delta = parse_duration(value)
    except (ValueError, OverflowError) as exc:
        raise ValueError(str(exc)) from None
    if delta <= timedelta(0):
        raise ValueError(f"expected a positive duration, got {value!r}")
    return delta


def _utc_before(value: Any) -> Any:
    # YAML gives a date for `2023-03-29`: that day at 00:00 UTC.
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value


def _utc_after(value: datetime) -> datetime:
    # A time without an offset in a policy is read as UTC (policies are written by people).
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


Flop = Annotated[float, BeforeValidator(_flop)]
Multiplier = Annotated[float, BeforeValidator(_ratio)]
Cadence = Annotated[float, BeforeValidator(_ratio), AfterValidator(_above_one)]
Grace = Annotated[float, BeforeValidator(_ratio), AfterValidator(_at_least_one)]
# Serialised as people write it ("14d", "6mo") so a policy's JSON form loads back unchanged.
Duration = Annotated[
    timedelta, BeforeValidator(_duration), PlainSerializer(format_duration, when_used="json")
]
UtcTime = Annotated[datetime, BeforeValidator(_utc_before), AfterValidator(_utc_after)]
Number = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False)]
Slug = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", max_length=100)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Cited(_Model):
    """Where a number comes from, and whether the source actually publishes it."""

    cite: str = Field(default="", description="document section the value comes from")
    illustrative: bool = Field(
        default=False, description="true when the source does not publish this value"
    )


# --- compute --------------------------------------------------------------------------------


class Regime(_Cited):
    """A named total of training compute over some phases (e.g. what the EU AI Act counts)."""

    include: list[Phase] = Field(min_length=1)
    description: str = ""

    @model_validator(mode="after")
    def _unique(self) -> Regime:
        dup = sorted({p for p in self.include if self.include.count(p) > 1})
        if dup:
            raise ValueError(f"phase(s) listed twice in include: {', '.join(dup)}")
        return self

    @property
    def exclude(self) -> list[str]:
        """The phases this regime does not count."""
        return [p for p in PHASES if p not in self.include]


class EffectiveCompute(_Cited):
    """Effective compute = a regime's raw FLOP x a declared algorithmic multiplier."""

    regime: str
    multiplier: Multiplier = 1.0
    source: str = Field(min_length=1, description="what the multiplier rests on")


class Window(_Model):
    """A time window ``[start, end)``; written as start + end or start + duration."""

    start: UtcTime
    end: UtcTime | None = None
    duration: Duration | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _close(self) -> Window:
        if self.duration is not None:
            end = self.start + self.duration
            if self.end is not None and self.end != end:
                raise ValueError("give either end or duration, not both (they disagree)")
            self.__dict__["end"] = end
        if self.end is None:
            raise ValueError("a window needs an end or a duration, e.g. duration: 6mo")
        if self.end <= self.start:
            raise ValueError("window end must be after its start")
        return self

    def contains(self, when: datetime) -> bool:
        """Whether ``when`` lies inside the window (start inclusive, end exclusive)."""
        assert self.end is not None
        return self.start <= when < self.end


class ComputeThreshold(_Cited):
    """A FLOP line on a regime: when planned or reached, notify, require an evaluation, or pause."""

    id: Slug
    regime: str
    flop: Flop
    basis: Literal["planned", "reached"] = "reached"
    action: Literal["notify", "evaluate", "pause"]
    recipient: str | None = None
    deadline: Duration | None = None
    window: Window | None = None
    obligation: Slug | None = Field(
        default=None,
        description="obligation id; thresholds sharing one yield a single obligation "
        "(e.g. 'planned or reached', whichever comes first)",
    )
    description: str = ""

    @model_validator(mode="after")
    def _notify_fields(self) -> ComputeThreshold:
        if self.action == "notify" and not self.recipient:
            raise ValueError("a notify threshold needs a recipient (who is notified)")
        if self.action != "notify" and (self.deadline is not None or self.obligation):
            raise ValueError("deadline and obligation only apply to action: notify")
        return self

    @property
    def obligation_id(self) -> str:
        """The id of the obligation this threshold creates (``notify`` only)."""
        return self.obligation or self.id


class Compute(_Model):
    """Regimes, the effective-compute definition, and compute thresholds."""

    regimes: dict[Slug, Regime] = Field(min_length=1)
    effective: EffectiveCompute
    thresholds: list[ComputeThreshold] = Field(default_factory=list)

    def totals(self, flop_by_phase: dict[str, float]) -> dict[str, float]:
        """Each regime's total from FLOP by phase (phases it does not include are left out)."""
        return {
            name: float(sum(flop_by_phase.get(p, 0.0) for p in regime.include))
            for name, regime in self.regimes.items()
        }

    def effective_flop(self, flop_by_phase: dict[str, float]) -> float:
        """Effective compute: the effective regime's total times the multiplier."""
        regime = self.regimes.get(self.effective.regime)
        if regime is None:  # unreachable for a validated policy
            return 0.0
        raw = float(sum(flop_by_phase.get(p, 0.0) for p in regime.include))
        return raw * self.effective.multiplier


# --- evaluations and capabilities -----------------------------------------------------------


class EvaluationCadence(_Cited):
    """When evaluations are due: every ``every`` x of effective compute, ``max_interval`` apart."""

    every: Cadence | None = None
    max_interval: Duration | None = None
    first_at: Flop | None = Field(
        default=None,
        description="effective FLOP of the first evaluation; if absent, the first compute is due",
    )
    grace: Grace = Field(
        default=1.0,
        description="how far past a milestone (x) training may go while the evaluation runs",
    )
    on_missing: Literal["pause", "evaluate", "alert"] = "pause"

    @model_validator(mode="after")
    def _something(self) -> EvaluationCadence:
        if self.every is None and self.max_interval is None:
            raise ValueError("give every (e.g. 4x) and/or max_interval (e.g. 6mo)")
        return self


class Notify(_Model):
    """Tell someone, by a deadline after the event."""

    recipient: str = Field(min_length=1)
    deadline: Duration | None = None
    id: Slug | None = None


class OnAlert(_Model):
    """What an early-warning result changes: a tighter cadence, notifications."""

    every: Cadence | None = None
    max_interval: Duration | None = None
    notify: list[Notify] = Field(default_factory=list)


class OnTrigger(_Model):
    """What reaching a level changes besides requiring safeguards: notifications."""

    notify: list[Notify] = Field(default_factory=list)


class EvaluationTrigger(_Cited):
    """An evaluation result that raises an alert or reaches a level."""

    evaluation: Slug
    metric: str = Field(min_length=1)
    alert: Number | None = None
    trigger: Number | None = None
    direction: Literal["higher", "lower"] = Field(
        default="higher", description="whether a higher value means more capable"
    )

    @model_validator(mode="after")
    def _order(self) -> EvaluationTrigger:
        if self.alert is None and self.trigger is None:
            raise ValueError("give an alert value, a trigger value, or both")
        if self.alert is not None and self.trigger is not None:
            early = self.alert <= self.trigger if self.direction == "higher" else (
                self.alert >= self.trigger
            )
            if not early:
                raise ValueError(
                    f"alert ({self.alert:g}) must come before trigger ({self.trigger:g}) "
                    f"for direction {self.direction!r}"
                )
        return self

    def meets(self, value: float, which: Literal["alert", "trigger"]) -> bool:
        """Whether ``value`` meets this trigger's alert or trigger line."""
        line = self.alert if which == "alert" else self.trigger
        if line is None:
            return False
        return value >= line if self.direction == "higher" else value <= line


class Level(_Cited):
    """A capability level: evaluation triggers, what reaching it means, alert and trigger effects.

    A level with a trigger must say what reaching it means, so that it cannot silently mean
    nothing: ``requires`` (pause until these safeguards are attested), or ``on_reach``:
    ``pause`` (pause whatever is attested: a level the lab will not train past) or
    ``continue`` (record only: the evaluation, notifications and the ``on_alert`` cadence).
    """

    id: Slug
    name: str = ""
    description: str = ""
    evaluations: list[EvaluationTrigger] = Field(min_length=1)
    requires: list[Slug] = Field(default_factory=list)
    on_reach: Literal["pause", "continue"] | None = Field(
        default=None,
        description="what reaching a level without requires means: pause regardless, or "
        "continue (record only)",
    )
    on_alert: OnAlert = Field(default_factory=OnAlert)
    on_trigger: OnTrigger = Field(default_factory=OnTrigger)

    @field_validator("on_reach")
    @classmethod
    def _not_with_requires(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("requires"):
            what = ("pauses whatever is attested" if value == "pause"
                    else "would let the run go on without them")
            raise ValueError(
                f"on_reach: {value} contradicts requires (which pauses until those safeguards "
                f"are attested; on_reach: {value} {what}); keep one of them"
            )
        return value

    @model_serializer(mode="wrap")
    def _without_unset_on_reach(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A level that does not use on_reach dumps (and digests) as it did before the field.
        data = handler(self)
        if self.on_reach is None and isinstance(data, dict):
            data.pop("on_reach", None)
        return data

    @model_validator(mode="after")
    def _says_what_reaching_means(self) -> Level:
        reachable = any(trig.trigger is not None for trig in self.evaluations)
        if reachable and not self.requires and self.on_reach is None:
            raise ValueError(
                f"level {self.id} has a trigger but does not say what reaching it means; add "
                "requires: [safeguard ids] (pause until they are attested), on_reach: pause "
                "(pause whatever is attested), or on_reach: continue (record only)"
            )
        return self


class Capability(_Cited):
    """A risk domain with its levels (e.g. CBRN with CBRN-3 and CBRN-4)."""

    id: Slug
    name: str = ""
    description: str = ""
    levels: list[Level] = Field(min_length=1)


class Safeguard(_Cited):
    """A protective measure, who may attest it is in place, and how long an attestation lasts."""

    id: Slug
    kind: Literal["security", "deployment", "alignment", "governance", "other"]
    attested_by: list[Role] = Field(min_length=1)
    max_age: Duration | None = None
    description: str = ""


# --- governance and disclosure --------------------------------------------------------------


class ResumptionRule(_Cited):
    """Who must approve before a paused run resumes, and how far it may then go."""

    quorum: Quorum = Field(
        description="approvals needed: {all_of: [...]} every clause, {any_of: [...], count: n} "
        "n keys of any of the roles; a plain list is all of its items"
    )
    require_ceiling: bool = Field(
        default=False, description="every resumption must carry a compute ceiling"
    )
    max_ceiling: Cadence | None = Field(
        default=None, description="no resumption may go beyond this multiple of the paused compute"
    )
    require_evaluation: bool = Field(
        default=False, description="every resumption needs a fresh evaluation after the pause"
    )


class Governance(_Cited):
    """Roles, the resumption quorum, and who may change the policy."""

    roles: list[Role] = Field(min_length=1)
    resumption: ResumptionRule
    policy_change: Quorum = Field(
        description="who approves a change: {any_of: [...]}, any one of these roles (a policy "
        "is published by one approver's signature)"
    )

    @field_validator("policy_change")
    @classmethod
    def _one_approver(cls, clauses: list[QuorumClause]) -> list[QuorumClause]:
        # The ledger records a policy as one approver's signed statement: a change needing
        # several approvals would be published on the first alone, its quorum never checked.
        if seats(clauses) != 1:
            roles = ", ".join(quorum_roles(clauses))
            raise ValueError(
                f"this asks for {describe_quorum(clauses)} ({seats(clauses)} approvals), but a "
                "policy is published by one approver's signature and the others would never be "
                f"checked; write policy_change: {{any_of: [{roles}]}} if any one of them "
                "approves a change"
            )
        return clauses


#: What a pause statement template may name (``{run_id}`` etc.), with what it is.
STATEMENT_FIELDS = {
    "run_id": "the run", "step": "the step at the pause",
    "effective_flop": "effective compute at the pause (e.g. 3.4e10)",
    "reasons": "the gate's reasons, joined by '; '", "policy_id": "this policy's id",
    "policy_version": "this policy's version",
}


def _statement_template(text: str) -> str:
    import string

    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text)
                  if name is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc}); write fields as {{run_id}}, and a "
                         "literal brace as {{ or }}") from None
    styled = [name for name, spec, conv in fields if spec or conv]
    if styled:  # the values are text already: a format spec would fail at the pause
        raise ValueError(f"field {{{styled[0]}}} has a format spec or conversion; write fields "
                         "plainly, as {effective_flop}")
    unknown = [n for n, _, _ in fields if n not in STATEMENT_FIELDS]
    if unknown:
        raise ValueError(f"unknown field {{{unknown[0]}}}; a statement may name "
                         + ", ".join(f"{{{k}}}" for k in STATEMENT_FIELDS))
    return text


DisclosedPart = Literal["verdict", "reasons", "compute", "capabilities", "safeguards", "missing"]


def _disclosed_by_default() -> list[DisclosedPart]:
    return ["verdict", "reasons"]


class Disclosure(_Cited):
    """What a pause publishes, and to whom."""

    on_pause: list[DisclosedPart] = Field(default_factory=_disclosed_by_default)
    recipients: list[str] = Field(default_factory=list)
    statement: Annotated[str, AfterValidator(_statement_template)] = Field(
        default="", description="template for the pause's public statement (see "
        "STATEMENT_FIELDS)")


class Source(_Model):
    """The document a policy's numbers come from."""

    title: str = Field(min_length=1)
    publisher: str = ""
    version: str = ""
    date: UtcTime | None = None
    url: str = ""
    note: str = ""


# --- the policy -----------------------------------------------------------------------------


class _ReferenceProblems(PolicyError):
    """A policy names a regime, safeguard or role it does not define; ``paths`` locate each."""

    def __init__(self, paths: list[tuple[tuple[Any, ...], str]]) -> None:
        from scalegate.policy._references import dotted

        super().__init__(
            "the policy refers to things it does not define",
            problems=[(dotted(path), msg) for path, msg in paths],
        )
        self.paths = paths


class Policy(_Model):
    """A responsible scaling policy (or a law's or letter's compute rules) as data."""

    id: Slug
    version: str = Field(min_length=1)
    kind: Literal["law", "framework", "letter", "demo", "custom"] = "custom"
    title: str = ""
    description: str = ""
    source: Source | None = None
    compute: Compute
    evaluation: EvaluationCadence | None = None
    capabilities: list[Capability] = Field(default_factory=list)
    safeguards: list[Safeguard] = Field(default_factory=list)
    governance: Governance
    disclosure: Disclosure = Field(default_factory=Disclosure)

    @model_validator(mode="after")
    def _cross_references(self) -> Policy:
        # Raised as PolicyError (not ValueError) so the loader can place each problem at its
        # own line; pydantic lets non-ValueError exceptions through unchanged.
        from scalegate.policy._references import reference_problems

        problems = reference_problems(self.model_dump())
        if problems:
            raise _ReferenceProblems(problems)
        return self

    # -- helpers used by the gate, the supervisor and the CLI --

    def document(self) -> str:
        """The policy as a JSON document (valid YAML) that loads back to this policy.

        This is what a ``policy`` statement publishes, so an auditor can replay a run
        under exactly the policy it ran under.
        """
        return json.dumps(self.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n"

    def digest(self) -> str:
        """Hex SHA-256 of the canonical form: independent of formatting, key order, spelling."""
        body = {"scalegate-policy": SCHEMA_VERSION, "policy": self.model_dump(mode="json")}
        data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(data.encode()).hexdigest()

    def evaluation_ids(self) -> list[str]:
        """Every evaluation id the capability levels rely on, in policy order, once each."""
        seen: dict[str, None] = {}
        for cap in self.capabilities:
            for level in cap.levels:
                for trig in level.evaluations:
                    seen.setdefault(trig.evaluation, None)
        return list(seen)

    def safeguard(self, safeguard_id: str) -> Safeguard | None:
        """The safeguard with this id, if the policy defines it."""
        return next((s for s in self.safeguards if s.id == safeguard_id), None)

    def threshold(self, threshold_id: str) -> ComputeThreshold | None:
        """The compute threshold with this id, if any."""
        return next((t for t in self.compute.thresholds if t.id == threshold_id), None)
