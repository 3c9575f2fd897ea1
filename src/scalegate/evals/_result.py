"""What an evaluation is given (``EvalContext``) and what it reports (``EvalResult``).

``EvalResult`` fields map one to one onto the ledger's ``eval`` statement predicate;
the run id, step and effective FLOP come from the ``EvalContext`` the supervisor passed.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class EvalContext(BaseModel):
    """Where in a run an evaluation happens, passed by the supervisor to every evaluation.

    ``log_dir`` is where full evaluation logs may be written (each result carries the
    SHA-256 of its log); ``None`` means logs are hashed but not kept.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str = Field(min_length=1)
    step: int = Field(ge=0)
    effective_flop: float = Field(ge=0.0, description="cumulative effective training FLOP")
    checkpoint: str | None = Field(
        default=None, description="digest (or ledger ref) of the weights being evaluated"
    )
    log_dir: Path | None = None
    seed: int | None = None

    @field_validator("effective_flop")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("effective_flop must be a finite number of FLOP")
        return v


class EvalResult(BaseModel):
    """One measured value of one evaluation, or a record that the evaluation failed.

    A failed result (``status='failed'``) has ``value=None`` and an ``error`` saying what
    went wrong; the gate treats it as a missing evaluation. ``log_digest`` is the SHA-256
    (hex) of the full evaluation log bytes, so an auditor holding the log can check it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    evaluation_id: str = Field(min_length=1)
    capability: str
    metric: str
    value: float | None
    stderr: float | None = None
    n: int = Field(ge=0)
    elicitation: str
    harness: str
    checkpoint: str | None = None
    log_digest: str
    status: Literal["success", "failed"]
    error: str | None = None
    started_at: datetime
    completed_at: datetime

    @field_validator("log_digest")
    @classmethod
    def _hex64(cls, v: str) -> str:
        if not _HEX64.match(v):
            raise ValueError(f"log_digest must be 64 lowercase hex characters (SHA-256), got {v!r}")
        return v

    @field_validator("started_at", "completed_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("times must be timezone-aware (UTC)")
        return v.astimezone(UTC)

    @field_validator("stderr")
    @classmethod
    def _stderr_finite(cls, v: float | None) -> float | None:
        # A NaN stderr (e.g. one sample) carries no information: record it as unknown.
        return v if v is not None and math.isfinite(v) else None

    @model_validator(mode="after")
    def _consistent(self) -> EvalResult:
        if self.status == "success":
            if self.value is None or not math.isfinite(self.value):
                raise ValueError(
                    f"a successful result needs a finite value, got {self.value!r}; "
                    "record the evaluation as failed instead"
                )
            if self.error is not None:
                raise ValueError("a successful result must not carry an error")
        else:
            if self.value is not None:
                raise ValueError("a failed result must have value=None")
            if not self.error:
                raise ValueError("a failed result must say what went wrong (error)")
        if self.completed_at < self.started_at:
            raise ValueError("completed_at is before started_at")
        return self

    @classmethod
    def failed_for(
        cls,
        evaluation: Any,
        context: EvalContext,
        *,
        error: str,
        log_digest: str,
        started_at: datetime,
        n: int = 0,
    ) -> EvalResult:
        """A failed result of ``evaluation`` (anything with ``id``, ``capability``,
        ``metric`` and optionally ``elicitation`` and ``harness``) in ``context``."""
        return cls.failed(
            evaluation_id=evaluation.id,
            capability=str(getattr(evaluation, "capability", "")),
            metric=str(getattr(evaluation, "metric", "")),
            error=error,
            elicitation=str(getattr(evaluation, "elicitation", "") or ""),
            harness=str(getattr(evaluation, "harness", "") or type(evaluation).__name__),
            checkpoint=context.checkpoint,
            log_digest=log_digest,
            started_at=started_at,
            n=n,
        )

    @classmethod
    def failed(
        cls,
        *,
        evaluation_id: str,
        capability: str,
        metric: str,
        error: str,
        elicitation: str,
        harness: str,
        checkpoint: str | None,
        log_digest: str,
        started_at: datetime,
        n: int = 0,
    ) -> EvalResult:
        """A failed result: no value, the error message, completed now."""
        return cls(
            evaluation_id=evaluation_id,
            capability=capability,
            metric=metric,
            value=None,
            stderr=None,
            n=n,
            elicitation=elicitation,
            harness=harness,
            checkpoint=checkpoint,
            log_digest=log_digest,
            status="failed",
            error=error or "evaluation failed without a message",
            started_at=started_at,
            completed_at=max(utc_now(), started_at),
        )
