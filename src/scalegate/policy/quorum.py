"""Who must approve: the resumption quorum and ``governance.policy_change``.

Both are a *quorum*: a list of clauses that must **all** be met, each clause
``count`` approvals by distinct keys holding **any** of its roles. A policy writes it
in one of these forms, all read the same way::

    quorum: {all_of: [ceo, rso]}                      # both: one key of each role
    quorum: {all_of: [rso, {any_of: [board], count: 2}]}
    policy_change: {any_of: [rso, board]}              # one clause: either role
    quorum: rso                                        # one clause of one role
    quorum: [ceo, rso]                                 # a plain list: all of them

Every reader (the gate's resumption, ``approve``, ``policy publish``, ``policy
explain``) goes through :func:`quorum_roles`, :func:`seat_quorum` and
:func:`describe_quorum`, so that what explain says is what is enforced.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

Role = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=60)]


class QuorumClause(BaseModel):
    """``count`` approvals by distinct keys, each holding one of ``any_of``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    any_of: list[Role] = Field(min_length=1)
    count: int = Field(default=1, ge=1, le=100)

    def describe(self) -> str:
        """``rso`` / ``one of board, ltbt`` / ``2 of board``."""
        roles = ", ".join(self.any_of)
        if self.count == 1 and len(self.any_of) == 1:
            return roles
        return f"{self.count} of {roles}" if self.count > 1 else f"one of {roles}"


def _clause(value: Any) -> Any:
    # `rso` is shorthand for {any_of: [rso], count: 1}.
    return {"any_of": [value]} if isinstance(value, str) else value


Clause = Annotated[QuorumClause, BeforeValidator(_clause)]


def _relocated(
    handler: ValidatorFunctionWrapHandler, value: Any, strip: int, prefix: tuple[Any, ...]
) -> list[QuorumClause]:
    """Validate ``value`` as a list of clauses, reporting errors where the author wrote them
    (drop ``strip`` leading location parts, then put ``prefix`` in front)."""
    try:
        return handler(value)
    except ValidationError as exc:
        errors = [
            {
                "type": err["type"],
                "loc": (*prefix, *err["loc"][strip:]),
                "input": err["input"],
                **({"ctx": err["ctx"]} if "ctx" in err else {}),
            }
            for err in exc.errors()
        ]
        try:
            raised = ValidationError.from_exception_data(exc.title, errors)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):  # an error type that cannot be rebuilt
            raise exc from None
        raise raised from None


def _value_error(loc: tuple[str | int, ...], given: Any, message: str) -> Any:
    return {"type": "value_error", "loc": loc, "input": given,
            "ctx": {"error": ValueError(message)}}


def _quorum(value: Any, handler: ValidatorFunctionWrapHandler) -> list[QuorumClause]:
    if isinstance(value, Mapping) and "all_of" in value:
        extra = [k for k in value if k != "all_of"]
        if extra:  # reported at each key, as any unknown key is
            raise ValidationError.from_exception_data("Quorum", [
                _value_error((str(k),), value[k], f"unknown key {k!r} beside all_of; to count "
                             "approvals, put the count on a clause: {all_of: [rso, {any_of: "
                             "[board], count: 2}]}")
                for k in extra
            ])
        return _relocated(handler, value["all_of"], 0, ("all_of",))
    if isinstance(value, str | Mapping):
        return _relocated(handler, [value], 1, ())  # one clause
    if not isinstance(value, list):
        raise ValueError(
            f"expected who must approve, e.g. {{all_of: [rso, board]}} (each of them) or "
            f"{{any_of: [rso, board]}} (any one of them), got {value!r}"
        )
    return handler(value)  # a plain list: every item is a clause, all of them needed


#: A quorum as a policy writes it (see the module docstring), held as its clauses.
Quorum = Annotated[list[Clause], Field(min_length=1), WrapValidator(_quorum)]


def quorum_roles(clauses: Sequence[QuorumClause]) -> list[str]:
    """Every role whose approval can count towards the quorum, in policy order, once each."""
    return list(dict.fromkeys(role for clause in clauses for role in clause.any_of))


def seats(clauses: Sequence[QuorumClause]) -> int:
    """How many approvals (by distinct keys) the quorum needs."""
    return sum(clause.count for clause in clauses)


def describe_quorum(clauses: Sequence[QuorumClause]) -> str:
    """``rso`` / ``one of rso, board`` / ``ceo and rso`` / ``rso and 2 of (board, ltbt)``."""
    if len(clauses) == 1:
        return clauses[0].describe()
    parts = []
    for clause in clauses:
        text = clause.describe()
        if len(clause.any_of) > 1:  # keep each clause's roles together inside the "and"
            head, _, roles = text.partition(" of ")
            text = f"{head} of ({roles})"
        parts.append(text)
    return " and ".join(parts)


@dataclass(frozen=True)
class Seating:
    """Keys assigned to the quorum's seats, and the clauses still short (with how many)."""

    seated: list[tuple[int, str, str]]  # (clause index, key, role it fills the seat in)
    short: list[tuple[QuorumClause, int]]

    @property
    def met(self) -> bool:
        """Whether every clause has its count."""
        return not self.short


def seat_quorum(
    clauses: Sequence[QuorumClause], offers: Mapping[str, Collection[str]]
) -> Seating:
    """Assign keys to the quorum's seats, one seat per key (a maximum matching).

    ``offers`` maps each key to the roles it may approve in (roles it holds). A greedy
    assignment could give a key a seat another clause needed it for; augmenting paths
    reassign seats so that the quorum is met whenever some assignment meets it.
    """
    seat_clause = [ci for ci, clause in enumerate(clauses) for _ in range(clause.count)]
    holder: dict[int, str] = {}  # seat -> key

    def can_fill(key: str, seat: int) -> bool:
        return any(role in offers[key] for role in clauses[seat_clause[seat]].any_of)

    def augment(key: str, seen: set[int]) -> bool:
        for seat in range(len(seat_clause)):
            if seat in seen or not can_fill(key, seat):
                continue
            seen.add(seat)
            if seat not in holder or augment(holder[seat], seen):
                holder[seat] = key
                return True
        return False

    for key in offers:
        augment(key, set())
    seated = []
    for seat, key in sorted(holder.items()):
        ci = seat_clause[seat]
        role = next(r for r in clauses[ci].any_of if r in offers[key])
        seated.append((ci, key, role))
    short = []
    for ci, clause in enumerate(clauses):
        filled = sum(1 for seat in holder if seat_clause[seat] == ci)
        if filled < clause.count:
            short.append((clause, clause.count - filled))
    return Seating(seated, short)
