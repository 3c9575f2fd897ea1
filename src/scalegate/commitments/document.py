"""A commitment as code: what its parties refrain from, when, who must join, how to leave.

.. code-block:: yaml

    id: pause-2023-joint
    title: Six-month pause of giant AI experiments, joined by the labs it addressed
    text: |
      We pause the training of AI systems more powerful than GPT-4 ...
    scope:                       # what the parties refrain from while it is active
      compute:                   # a training run past this much compute in this regime
        regime: training
        include: [pretraining, fine-tuning, rl, synthetic-data, merged-weights]
        flop: 2.1e25
      capabilities:              # and/or: reaching a level without the safeguards named
        - {capability: cyber, level: high, unless: [security-level-3]}
    window:
      start: activation          # or a date: 2023-04-01T00:00:00Z
      duration: 6mo              # or until: 2023-10-01T00:00:00Z
    activation:
      parties: [openai, google-deepmind, anthropic]    # organisation ids
      at_least: 3                # it binds once this many have joined (default: all)
      # immediately: true        # a unilateral pledge, or a regulator's moratorium
      signatories: organisations # or individuals (an open letter)
    withdrawal:
      notice: 30d                # a party leaves this long after saying so

:func:`parse_commitment` and :func:`load_commitment` check it as strictly as a policy: every
problem with file:line:column and field path. :meth:`Commitment.digest` is independent of
formatting and key order; statements name a commitment by it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scalegate.compute import Phase
from scalegate.documents import Position, Unreadable, YamlDocument
from scalegate.errors import CommitmentError
from scalegate.units import parse_duration

__all__ = ["Commitment", "bundled_commitments", "load_commitment", "parse_commitment",
           "read_commitment"]

SCHEMA_VERSION = 1
_ORG = r"^[a-z0-9][a-z0-9._-]{0,63}$"
#: The phases a "training" regime counts by default (what trains the system, not its use).
_TRAINING: tuple[Phase, ...] = ("pretraining", "fine-tuning", "rl", "synthetic-data",
                                "merged-weights")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComputeScope(_Model):
    """Training past ``flop`` FLOP of a regime (a total over phases) is what is refrained from."""

    regime: str = Field("training", min_length=1)
    include: list[Phase] = Field(default_factory=lambda: list(_TRAINING), min_length=1)
    flop: float = Field(gt=0, allow_inf_nan=False)
    cite: str = ""

    def total(self, flop_by_phase: dict[str, float]) -> float:
        """This regime's total of a compute statement's FLOP by phase."""
        return float(sum(flop_by_phase.get(p, 0.0) for p in self.include))


class CapabilityScope(_Model):
    """Reaching ``level`` of ``capability`` (as the party's own policy defines it) without
    every safeguard in ``unless`` attested is what is refrained from."""

    capability: str = Field(min_length=1)
    level: str = Field(min_length=1)
    unless: list[str] = Field(default_factory=list)


class Scope(_Model):
    compute: ComputeScope | None = None
    capabilities: list[CapabilityScope] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> Scope:
        if self.compute is None and not self.capabilities:
            raise ValueError("a scope names compute, capabilities, or both: what the parties "
                             "refrain from")
        return self


class Window(_Model):
    start: Literal["activation"] | datetime = "activation"
    duration: timedelta | None = None
    until: datetime | None = None

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None:
            return None
        got = parse_duration(value)
        if got <= timedelta(0):
            raise ValueError("must be positive")
        return got

    @field_validator("start", "until")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("give the time zone (e.g. 2023-04-01T00:00:00Z)")
        return value.astimezone(UTC) if isinstance(value, datetime) else value

    @model_validator(mode="after")
    def _end(self) -> Window:
        if (self.duration is None) == (self.until is None):
            raise ValueError("a window has a duration or an until date (one of the two)")
        if self.until is not None and isinstance(self.start, datetime) \
                and self.until <= self.start:
            raise ValueError("until must be after start")
        return self

    def span(self, activated: datetime) -> tuple[datetime, datetime]:
        """The window's start and end for a commitment that bound from ``activated``."""
        start = activated if self.start == "activation" else self.start
        assert isinstance(start, datetime)
        end = self.until if self.until is not None else start + (self.duration or timedelta(0))
        return start, end


class Activation(_Model):
    parties: list[str] = Field(default_factory=list)
    at_least: int | None = Field(None, ge=1)
    immediately: bool = False
    signatories: Literal["organisations", "individuals"] = "organisations"

    @field_validator("parties")
    @classmethod
    def _orgs(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if not re.match(_ORG, p)]
        if bad:
            raise ValueError(f"organisation ids are lower case letters, digits, '.', '_' and "
                             f"'-': {', '.join(map(repr, bad))}")
        if len(set(value)) != len(value):
            raise ValueError("a party is named twice")
        return value

    @model_validator(mode="after")
    def _quorum(self) -> Activation:
        if self.immediately and self.at_least is not None:
            raise ValueError("a commitment binds immediately or once at_least parties joined, "
                             "not both")
        if not self.immediately and not self.parties:
            raise ValueError("name the parties whose joining activates it (or immediately: "
                             "true)")
        if self.at_least is not None and self.at_least > len(self.parties):
            raise ValueError(f"at_least is {self.at_least}, but only {len(self.parties)} "
                             "parties are named")
        return self

    @property
    def needed(self) -> int:
        """How many parties must join before it binds (0: it binds on proposal)."""
        if self.immediately:
            return 0
        return self.at_least if self.at_least is not None else len(self.parties)


class Withdrawal(_Model):
    notice: timedelta = timedelta(0)

    @field_validator("notice", mode="before")
    @classmethod
    def _notice(cls, value: Any) -> timedelta:
        got = parse_duration(value)
        if got < timedelta(0):
            raise ValueError("must not be negative")
        return got


class Source(_Model):
    title: str = Field(min_length=1)
    publisher: str = ""
    date: str = ""
    url: str = ""


class Commitment(_Model):
    """A commitment document (see the module docstring)."""

    id: str = Field(pattern=_ORG)
    title: str = Field(min_length=1)
    text: str = Field(min_length=1)
    source: Source | None = None
    scope: Scope
    window: Window
    activation: Activation
    withdrawal: Withdrawal = Withdrawal()

    def digest(self) -> str:
        """Hex SHA-256 of the canonical form: independent of formatting and key order."""
        body = {"scalegate-commitment": SCHEMA_VERSION, "commitment": self.model_dump(mode="json")}
        data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(data.encode()).hexdigest()


def parse_commitment(text: str, *, source: str = "<commitment>") -> Commitment:
    """Parse and check a commitment from YAML text; raise :class:`CommitmentError`
    listing every problem."""
    doc = YamlDocument(source)
    try:
        data = doc.read(text)
    except Unreadable:
        raise _fail(doc) from None
    if doc.empty or not isinstance(data, dict):
        doc.problem(Position(1, 1), (), "a commitment is a mapping with id, title, text, "
                    "scope, window, activation and withdrawal (see `scalegate commitment "
                    "--help`)")
    if doc.problems:
        raise _fail(doc)
    try:
        return Commitment.model_validate(data)
    except ValidationError as exc:
        doc.invalid(exc.errors())
        raise _fail(doc) from None


def load_commitment(where: str | Path) -> Commitment:
    """A commitment from a file, or a bundled one by name (``scalegate commitment list``)."""
    return read_commitment(where)[0]


def read_commitment(where: str | Path) -> tuple[Commitment, str]:
    """A commitment and its YAML text (what a ``commitment`` statement logs), from a file
    or a bundled name."""
    path = Path(where)
    if not path.exists() and str(where) in bundled_commitments():
        text = (resources.files("scalegate.commitments") / "library" / f"{where}.yaml"
                ).read_text(encoding="utf-8")
        return parse_commitment(text, source=f"library/{where}.yaml"), text
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CommitmentError(f"no commitment file {str(where)!r}", hint="Give a YAML file or "
                              "a bundled name: " + ", ".join(bundled_commitments())) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommitmentError(f"cannot read commitment file {str(where)!r}: {exc}") from None
    return parse_commitment(text, source=str(path)), text


def bundled_commitments() -> list[str]:
    """The names of the commitments that ship with scalegate."""
    lib = resources.files("scalegate.commitments") / "library"
    return sorted(p.name.removesuffix(".yaml") for p in lib.iterdir()
                  if p.name.endswith(".yaml"))


def _fail(doc: YamlDocument) -> CommitmentError:
    return CommitmentError(doc.summary("the commitment"), problems=doc.located(),
                           hint="Fix each problem listed; start from a bundled commitment "
                           "(`scalegate commitment list`).")

