"""A run's compute account: FLOP by phase and by method, totals per regime, reconciliation.

The core takes plain data (``regimes: {name: [phase, ...]}``); ``ComputeAccount.for_policy``
is the thin adapter from a loaded ``scalegate.policy.Policy``. No torch here: a measured
step arrives as a ``StepFlop`` (or anything with ``total`` and ``recomputation``).

Methods are named: ``measured`` (FlopCounterMode), ``per-layer`` (full architecture count),
``megatron``, ``palm``, ``kaplan``, ``6ND``, ``hardware``. The reconciled figure is the most
precise method available (that order); every other method is compared with it and a
disagreement above the EU margin (30 %) is flagged. Figures are reported to two significant
figures with the method named, as the EU guidelines ask.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict

from scalegate.compute.phases import PHASES
from scalegate.errors import ComputeError
from scalegate.units import sig2

if TYPE_CHECKING:
    from datetime import datetime

    from scalegate.compute.projection import PlanSegment, Projection, Threshold

# Most precise first: a count of the real step beats a count from the architecture, which
# beats a closed-form approximation, which beats chips × time × an assumed utilisation.
METHOD_PREFERENCE: tuple[str, ...] = (
    "measured",
    "per-layer",
    "megatron",
    "palm",
    "kaplan",
    "6ND",
    "hardware",
)
EU_TOLERANCE = 0.30


def format_flop(value: float, method: str | None = None) -> str:
    """``6.6e23 FLOP (hardware)``: two significant figures, with the method when given."""
    text = f"{sig2(value)} FLOP"
    return f"{text} ({method})" if method else text


class Reconciliation(BaseModel):
    """Methods side by side: the reconciled figure and how far each method is from it."""

    model_config = ConfigDict(frozen=True)

    figures: dict[str, float]
    method: str
    flop: float
    deviations: dict[str, float]
    tolerance: float = EU_TOLERANCE

    @property
    def disagreements(self) -> dict[str, float]:
        """Methods further than ``tolerance`` (relative) from the reconciled figure."""
        # The epsilon keeps exactly 30 % (1.3 / 1.0 - 1 = 0.30000000000000004) inside.
        return {m: d for m, d in self.deviations.items() if abs(d) > self.tolerance + 1e-12}

    @property
    def flagged(self) -> bool:
        return bool(self.disagreements)

    @property
    def spread(self) -> float:
        """Largest figure over smallest, minus one (0 when only one method)."""
        values = [v for v in self.figures.values() if v > 0]
        return max(values) / min(values) - 1.0 if values else 0.0

    def statement(self) -> str:
        """One line for a report: the figure, the method, and how the others compare."""
        text = format_flop(self.flop, self.method)
        others = [m for m in self.figures if m != self.method]
        if not others:
            return text
        if self.flagged:
            worst = ", ".join(f"{m} {d:+.0%}" for m, d in self.disagreements.items())
            return f"{text}; DISAGREEMENT above {self.tolerance:.0%}: {worst}"
        widest = max(abs(self.deviations[m]) for m in others)
        return f"{text}; {', '.join(others)} agree within {widest:.0%}"


def reconcile(
    figures: Mapping[str, float],
    *,
    prefer: Sequence[str] = METHOD_PREFERENCE,
    tolerance: float = EU_TOLERANCE,
) -> Reconciliation:
    """Pick the most precise method's figure and compare every other figure with it."""
    usable = {m: float(v) for m, v in figures.items() if v is not None and v > 0}
    if not usable:
        raise ComputeError(
            "no method produced a figure to reconcile.",
            hint="Give the inputs of at least one method "
            "(see `scalegate compute estimate --help`).",
        )
    ranked = [m for m in prefer if m in usable] + sorted(m for m in usable if m not in prefer)
    method = ranked[0]
    ref = usable[method]
    return Reconciliation(
        figures=usable,
        method=method,
        flop=ref,
        deviations={m: v / ref - 1.0 for m, v in usable.items() if m != method},
        tolerance=tolerance,
    )


def check_regimes(regimes: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """Validate regimes as ``{name: phases}``: every phase must be a canonical one."""
    out: dict[str, tuple[str, ...]] = {}
    for name, phases in regimes.items():
        listed = tuple(phases)
        unknown = [p for p in listed if p not in PHASES]
        if unknown:
            raise ComputeError(
                f"regime {name!r} includes unknown phase(s) {', '.join(map(repr, unknown))}.",
                hint=f"Phases are: {', '.join(PHASES)}.",
            )
        out[name] = listed
    return out


class _StepLike(Protocol):
    total: float
    recomputation: float


class AccountSnapshot(BaseModel):
    """What a ``compute`` statement records: FLOP by phase, totals by regime, effective FLOP."""

    model_config = ConfigDict(frozen=True)

    method: str
    by_phase: dict[str, float]
    totals: dict[str, float]
    effective: float
    effective_regime: str | None
    multiplier: float
    tokens: float
    steps: int
    methods: dict[str, dict[str, float]]


class ComputeAccount:
    """Cumulative FLOP of one run, by phase and by method.

    >>> acc = ComputeAccount({"eu": ["pretraining", "fine-tuning"]})
    >>> acc.add(6e24, "pretraining"); acc.add(5e24, "evaluation")
    >>> acc.total("eu")
    6e+24
    """

    def __init__(
        self,
        regimes: Mapping[str, Iterable[str]] | None = None,
        *,
        multiplier: float = 1.0,
        effective_regime: str | None = None,
        method: str | None = None,
    ) -> None:
        self.regimes = check_regimes(regimes or {})
        if not multiplier > 0:
            raise ComputeError(f"the effective-compute multiplier must be > 0, got {multiplier}.")
        if effective_regime is not None and effective_regime not in self.regimes:
            raise ComputeError(
                f"effective compute refers to unknown regime {effective_regime!r}.",
                hint=f"Regimes are: {', '.join(self.regimes) or '(none)'}.",
            )
        self.multiplier = float(multiplier)
        self.effective_regime = effective_regime or next(iter(self.regimes), None)
        self._method = method
        self._flop: dict[str, dict[str, float]] = {}
        self.tokens = 0.0
        self.steps = 0

    @classmethod
    def for_policy(cls, policy: Any, *, method: str | None = None) -> ComputeAccount:
        """An account with the regimes and effective-compute rule of a loaded policy."""
        compute = policy.compute
        regimes = {name: list(r.include) for name, r in compute.regimes.items()}
        effective = getattr(compute, "effective", None)
        return cls(
            regimes,
            multiplier=getattr(effective, "multiplier", 1.0),
            effective_regime=getattr(effective, "regime", None),
            method=method,
        )

    # -- recording ------------------------------------------------------------------------

    def add(
        self,
        flop: float,
        phase: str = "pretraining",
        *,
        method: str = "measured",
        tokens: float = 0.0,
        steps: int = 0,
    ) -> None:
        """Add ``flop`` spent in ``phase``, as measured or estimated by ``method``.

        ``tokens`` and ``steps`` advance the run's counters; pass them with one method only
        (the one the run is accounted by), not once per method.
        """
        if phase not in PHASES:
            raise ComputeError(
                f"unknown phase {phase!r}.", hint=f"Phases are: {', '.join(PHASES)}."
            )
        if isinstance(flop, bool) or not math.isfinite(flop) or flop < 0:
            raise ComputeError(f"FLOP must be a finite number ≥ 0, got {flop!r} for {phase}.")
        if tokens < 0 or steps < 0:
            raise ComputeError("tokens and steps cannot go backwards.")
        by_phase = self._flop.setdefault(method, {})
        by_phase[phase] = by_phase.get(phase, 0.0) + float(flop)
        self.tokens += tokens
        self.steps += steps

    def add_step(
        self, step: _StepLike, phase: str = "pretraining", *, steps: int = 1, tokens: float = 0.0
    ) -> None:
        """Add ``steps`` measured steps: model FLOP to ``phase``, recomputation to its own."""
        model = (step.total - step.recomputation) * steps
        self.add(model, phase, method="measured", tokens=tokens, steps=steps)
        if step.recomputation:
            self.add(step.recomputation * steps, "recomputation", method="measured")

    # -- reading --------------------------------------------------------------------------

    @property
    def methods(self) -> list[str]:
        """Methods with at least one figure, most precise first."""
        return [m for m in METHOD_PREFERENCE if m in self._flop] + sorted(
            m for m in self._flop if m not in METHOD_PREFERENCE
        )

    @property
    def method(self) -> str:
        """The method totals are taken from: the one fixed at construction, else the most
        precise one recorded."""
        if self._method is not None:
            return self._method
        return self.methods[0] if self._flop else "measured"

    def by_phase(self, method: str | None = None) -> dict[str, float]:
        """Cumulative FLOP per phase by ``method`` (default: the account's method)."""
        return dict(self._flop.get(method or self.method, {}))

    def total(self, regime: str | None = None, method: str | None = None) -> float:
        """A regime's total (``None``: every phase)."""
        phases = self.by_phase(method)
        if regime is None:
            return float(sum(phases.values()))
        if regime not in self.regimes:
            raise ComputeError(
                f"unknown regime {regime!r}.",
                hint=f"Regimes are: {', '.join(self.regimes) or '(none defined)'}.",
            )
        return float(sum(phases.get(p, 0.0) for p in self.regimes[regime]))

    def totals(self, method: str | None = None) -> dict[str, float]:
        """Every regime's total."""
        return {name: self.total(name, method) for name in self.regimes}

    def effective(self, method: str | None = None) -> float:
        """Effective compute: the effective regime's total (all phases if none) × multiplier."""
        return self.total(self.effective_regime, method) * self.multiplier

    def reconcile(
        self, regime: str | None = None, *, tolerance: float = EU_TOLERANCE
    ) -> Reconciliation:
        """Every method's total for ``regime`` side by side, reconciled."""
        figures = {m: self.total(regime, m) for m in self.methods}
        prefer = [self._method] if self._method else []
        return reconcile(figures, prefer=[*prefer, *METHOD_PREFERENCE], tolerance=tolerance)

    def report(self, regime: str | None = None) -> str:
        """``<total to 2 s.f.> FLOP (<method>)`` for a regime, as a regulator reads it."""
        return format_flop(self.total(regime), self.method)

    def project(
        self,
        plan: Sequence[PlanSegment],
        thresholds: Iterable[Threshold],
        *,
        now: datetime | None = None,
    ) -> Projection:
        """Project the rest of the run (``PlanSegment``s) from this account's state against
        ``Threshold``s: see ``scalegate.compute.projection.project``."""
        from scalegate.compute.projection import project

        return project(
            plan, thresholds, self.regimes, spent=self.by_phase(), step=self.steps, now=now
        )

    def snapshot(self) -> AccountSnapshot:
        """The account's state, for a ``compute`` statement."""
        return AccountSnapshot(
            method=self.method,
            by_phase=self.by_phase(),
            totals=self.totals(),
            effective=self.effective(),
            effective_regime=self.effective_regime,
            multiplier=self.multiplier,
            tokens=self.tokens,
            steps=self.steps,
            methods={m: dict(v) for m, v in self._flop.items()},
        )


class RunAccount:
    """A training run's cumulative compute: FLOP by phase summed over everything the run
    did, whichever method counted each part, with each method's share.

    Unlike :class:`ComputeAccount`, whose methods are alternative estimates of the same
    work, a run's methods count different work: steps measured before a restart and
    steps declared after it add up. The run's total never stands still while it trains.

    >>> acc = RunAccount({"eu": ["pretraining"]})
    >>> acc.add(2e20, "pretraining", method="measured")
    >>> acc.add(1e20, "pretraining", method="declared")
    >>> acc.total("eu"), acc.method
    (3e+20, 'measured+declared')
    """

    def __init__(
        self,
        regimes: Mapping[str, Iterable[str]] | None = None,
        *,
        multiplier: float = 1.0,
        effective_regime: str | None = None,
    ) -> None:
        self._shape = ComputeAccount(regimes, multiplier=multiplier,
                                     effective_regime=effective_regime)
        self.regimes = self._shape.regimes
        self.multiplier = self._shape.multiplier
        self.effective_regime = self._shape.effective_regime
        self._phases: dict[str, float] = {}
        self._methods: dict[str, float] = {}
        self.tokens = 0.0
        self.steps = 0

    @classmethod
    def for_policy(cls, policy: Any) -> RunAccount:
        """An account with the regimes and effective-compute rule of a loaded policy."""
        shape = ComputeAccount.for_policy(policy)
        return cls(shape.regimes, multiplier=shape.multiplier,
                   effective_regime=shape.effective_regime)

    def restore(self, flop_by_phase: Mapping[str, float], methods: Mapping[str, float],
                method: str, *, tokens: float, steps: int) -> None:
        """Start from a recorded state (a run's latest ``compute`` statement)."""
        self._phases = {p: float(v) for p, v in flop_by_phase.items()}
        shares = {m: float(v) for m, v in methods.items()}
        self._methods = shares or {method or "measured": float(sum(self._phases.values()))}
        self.tokens, self.steps = float(tokens), int(steps)

    def add(self, flop: float, phase: str = "pretraining", *, method: str = "measured") -> None:
        """Add ``flop`` spent in ``phase``, counted by ``method``."""
        if phase not in PHASES:
            raise ComputeError(
                f"unknown phase {phase!r}.", hint=f"Phases are: {', '.join(PHASES)}."
            )
        if isinstance(flop, bool) or not math.isfinite(flop) or flop < 0:
            raise ComputeError(f"FLOP must be a finite number ≥ 0, got {flop!r} for {phase}.")
        self._phases[phase] = self._phases.get(phase, 0.0) + float(flop)
        self._methods[method] = self._methods.get(method, 0.0) + float(flop)

    @property
    def method(self) -> str:
        """The method that counted the run, or several joined by ``+`` (most precise first)."""
        used = [m for m in METHOD_PREFERENCE if m in self._methods] + [
            m for m in self._methods if m not in METHOD_PREFERENCE]
        return "+".join(used) if used else "measured"

    @property
    def methods(self) -> dict[str, float]:
        """FLOP counted by each method (they add up to the run's total)."""
        return dict(self._methods)

    def by_phase(self) -> dict[str, float]:
        """Cumulative FLOP per phase."""
        return dict(self._phases)

    def total(self, regime: str | None = None) -> float:
        """A regime's total (``None``: every phase)."""
        if regime is None:
            return float(sum(self._phases.values()))
        if regime not in self.regimes:
            raise ComputeError(
                f"unknown regime {regime!r}.",
                hint=f"Regimes are: {', '.join(self.regimes) or '(none defined)'}.",
            )
        return float(sum(self._phases.get(p, 0.0) for p in self.regimes[regime]))

    def totals(self) -> dict[str, float]:
        """Every regime's total."""
        return {name: self.total(name) for name in self.regimes}

    def effective(self) -> float:
        """Effective compute: the effective regime's total (all phases if none) × multiplier,
        summed in the policy's order of phases (the same float the gate computes)."""
        return self.total(self.effective_regime) * self.multiplier


__all__ = [
    "EU_TOLERANCE",
    "METHOD_PREFERENCE",
    "AccountSnapshot",
    "ComputeAccount",
    "Reconciliation",
    "RunAccount",
    "check_regimes",
    "format_flop",
    "reconcile",
]
