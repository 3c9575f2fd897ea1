"""The audit report: every check made, every violation found, and what the exit status is.

A report is built by the log-level audit (:mod:`scalegate.audit.logcheck`) and
extended by later stages (run replay) through :meth:`AuditReport.check` and
:meth:`AuditReport.violation`. Violations name their ``kind`` (a stable, dashed
identifier such as ``bad-signature``), say what was wrong in ``message``, and point
at the statements involved with ``refs`` (``{index, leaf_hash}``, as statements
reference each other).

``could_not_verify`` means the auditor could not reach a verdict (no trusted,
witnessed checkpoint; an unreadable ledger or state file). Exit status: 0 when
nothing is violated and everything could be verified, :data:`EXIT_VIOLATIONS` when
at least one violation was found (even if something else could not be verified:
a proven violation is the stronger finding), else :data:`EXIT_COULD_NOT_VERIFY`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from scalegate.ledger import Ref

__all__ = [
    "EXIT_COULD_NOT_VERIFY",
    "EXIT_OK",
    "EXIT_VIOLATIONS",
    "AuditReport",
    "CheckResult",
    "CheckpointSummary",
    "TimestampTime",
    "Violation",
    "WitnessTime",
]

EXIT_OK = 0
EXIT_VIOLATIONS = 3
EXIT_COULD_NOT_VERIFY = 4

#: Violations of one kind kept verbatim in a report; beyond that they are only counted.
MAX_VIOLATIONS_PER_KIND = 1000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckResult(_Model):
    """One named check: whether it held and a one-line account of what was checked."""

    name: str
    ok: bool
    detail: str = ""


class Violation(_Model):
    """Something the ledger shows was done wrong (or was tampered with)."""

    kind: str
    message: str
    refs: list[Ref] = Field(default_factory=list)
    run_id: str | None = None
    checkpoint_size: int | None = None
    policy: str | None = Field(
        None, description="the policy the run was held to besides its own (verify --policy), "
        "when the finding is that policy's")


class CheckpointSummary(_Model):
    """The checkpoint the audit is anchored on: signed by the log, cosigned by a quorum."""

    size: int
    root_hash: str
    cosigned_by: list[str] = Field(default_factory=list)
    cosigned_at: list[int] = Field(default_factory=list)
    note: str


class WitnessTime(_Model):
    """A checkpoint the trusted witnesses cosigned, with the times they vouch for: the
    entries below ``size`` existed by ``existed_by``; later ones were not yet logged at
    ``not_before`` (as far as the witnesses were shown the log)."""

    size: int
    existed_by: datetime
    not_before: datetime


class TimestampTime(_Model):
    """A verified RFC 3161 token over a checkpoint: the entries below ``size`` existed by
    ``existed_by`` (the token's ``gen_time`` plus its accuracy). A time-stamping authority
    proves existence only, never that later entries were not yet logged."""

    size: int
    authority: str
    tsa: str
    gen_time: datetime
    existed_by: datetime
    serial: int


class AuditReport(_Model):
    """Everything an audit checked and found; see the module docstring for the exit status."""

    ledger: str
    origin: str
    size: int = 0
    root_hash: str | None = None
    checkpoint: CheckpointSummary | None = None
    witnessed_times: list[WitnessTime] = Field(
        default_factory=list, description="witnessed checkpoints that bound when entries were "
        "logged")
    timestamps: list[TimestampTime] = Field(
        default_factory=list, description="verified time-stamp tokens over checkpoints, from "
        "the trusted time-stamping authorities")
    operator_word: list[Violation] = Field(
        default_factory=list, description="deadlines met only on the log operator's word: no "
        "witness shows the entry logged in time, none shows it late")
    checks: list[CheckResult] = Field(default_factory=list)
    violations: list[Violation] = Field(default_factory=list)
    violation_counts: dict[str, int] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    could_not_verify: bool = False
    seconds: float = 0.0

    # --- building ----------------------------------------------------------------------------

    def check(self, name: str, ok: bool, detail: str = "", *, verifiable: bool = True) -> None:
        """Record a check. ``verifiable=False`` marks a failure as "could not verify"."""
        self.checks.append(CheckResult(name=name, ok=ok, detail=detail))
        if not ok and not verifiable:
            self.could_not_verify = True

    def violation(
        self,
        kind: str,
        message: str,
        refs: list[Ref] | None = None,
        *,
        run_id: str | None = None,
        checkpoint_size: int | None = None,
        policy: str | None = None,
    ) -> None:
        """Record a violation (kept verbatim up to a cap per kind, always counted)."""
        n = self.violation_counts.get(kind, 0)
        self.violation_counts[kind] = n + 1
        if n < MAX_VIOLATIONS_PER_KIND:
            self.violations.append(Violation(kind=kind, message=message, refs=refs or [],
                                             run_id=run_id, checkpoint_size=checkpoint_size,
                                             policy=policy))

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (entries, signatures, nodes, ...)."""
        self.counts[name] = self.counts.get(name, 0) + n

    # --- reading -----------------------------------------------------------------------------

    @property
    def violations_total(self) -> int:
        """Every violation found, including those beyond the per-kind cap."""
        return sum(self.violation_counts.values())

    @property
    def ok(self) -> bool:
        """True when nothing is violated and everything could be verified."""
        return self.violations_total == 0 and not self.could_not_verify

    @property
    def exit_code(self) -> int:
        """0 ok, 3 violations found, 4 could not verify."""
        if self.violations_total:
            return EXIT_VIOLATIONS
        return EXIT_COULD_NOT_VERIFY if self.could_not_verify else EXIT_OK

    def failed_checks(self) -> list[CheckResult]:
        """The checks that did not hold."""
        return [c for c in self.checks if not c.ok]

    def by_kind(self) -> Counter[str]:
        """Violation counts by kind."""
        return Counter(self.violation_counts)

    def to_json_data(self) -> dict[str, Any]:
        """The report as JSON-ready data, with ``ok``, ``exit_code`` and the total added."""
        data = self.model_dump(mode="json")
        data.update(ok=self.ok, exit_code=self.exit_code, violations_total=self.violations_total)
        return data
