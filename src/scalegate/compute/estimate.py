"""Every compute estimate a run's description allows, side by side and reconciled.

What ``scalegate compute estimate`` prints, as a library call: from any of parameter counts,
tokens, the architecture and the hardware, each applicable method's figure, the reconciled
figure, and notes on inputs that disagree. A method whose inputs are only partly given is an
error (naming what is missing), never silently skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from scalegate.compute import formulas as f
from scalegate.compute.account import Reconciliation, reconcile
from scalegate.compute.formulas import Causal, HardwarePeriod, ModelKind, Transformer
from scalegate.compute.projection import Crossing, PlanSegment, Threshold, project
from scalegate.errors import ComputeError
from scalegate.units import sig2


class RunDescription(BaseModel):
    """What is known about a training run."""

    model_config = ConfigDict(frozen=True)

    params: float | None = Field(default=None, gt=0)
    active_params: float | None = Field(default=None, gt=0)
    tokens: float | None = Field(default=None, gt=0)
    arch: Transformer | None = None
    hardware: list[HardwarePeriod] = Field(default_factory=list)
    model_kind: ModelKind = "language"
    causal: Causal = "full"
    phase: str = "pretraining"


class MethodFigure(BaseModel):
    """One method's figure, the formula with its numbers, and whether it is reconciled."""

    model_config = ConfigDict(frozen=True)

    method: str
    flop: float
    formula: str
    reconciled: bool = True
    note: str = ""


class Estimate(BaseModel):
    """All figures, the reconciliation of those that count model FLOP, and notes."""

    model_config = ConfigDict(frozen=True)

    run: RunDescription
    figures: list[MethodFigure]
    reconciliation: Reconciliation
    notes: list[str] = Field(default_factory=list)


def _n(x: float) -> str:
    return sig2(x, 3)


def _standard_gpt(arch: Transformer) -> str | None:
    """Why Megatron's closed form does not apply to ``arch`` (None when it does)."""
    if arch.ffn != 4 * arch.d_model:
        return "it assumes d_ff = 4·d_model"
    if arch.gated_mlp:
        return "it assumes a non-gated MLP"
    if arch.kv_heads != arch.n_heads:
        return "it assumes no grouped-query attention"
    if arch.is_moe:
        return "it assumes a dense MLP"
    if arch.d_attn != arch.d_model:
        return "it assumes heads × d_head = d_model"
    return None


def _counted_params(run: RunDescription, notes: list[str]) -> tuple[float, str] | None:
    """The N of 6·N·D: active parameters for a mixture of experts, else all."""
    arch = run.arch
    if run.active_params is not None:
        return run.active_params, "active params"
    if arch is not None and arch.is_moe:
        if run.params is not None:
            notes.append(
                "--params is the total of a mixture of experts; 6ND uses the active "
                f"parameters from the architecture ({_n(arch.active_params())})."
            )
        return float(arch.active_params()), "active params (architecture)"
    if run.params is not None:
        return run.params, "params"
    if arch is not None:
        return float(arch.params()), "params (architecture)"
    return None


def _check_complete(run: RunDescription) -> None:
    if run.tokens is None and (run.params or run.active_params or run.arch):
        given = [
            name
            for name, v in (
                ("--params", run.params),
                ("--active-params", run.active_params),
                ("the architecture", run.arch),
            )
            if v is not None
        ]
        raise ComputeError(
            f"{' and '.join(given)} given without --tokens: every architecture method "
            "(6ND, Kaplan, PaLM, Megatron, per-layer) needs the number of training tokens.",
            hint="Add --tokens (e.g. --tokens 15T), or leave these out and use the hardware "
            "method alone.",
        )
    if not (run.tokens or run.hardware):
        raise ComputeError(
            "nothing to estimate from.",
            hint="Give --params and --tokens (6ND), the architecture and --tokens, or "
            "--chips, --chip and --hours (hardware).",
        )
    if run.tokens is not None and not (run.params or run.active_params or run.arch):
        raise ComputeError(
            "--tokens given without a model size.",
            hint="Add --params (e.g. --params 70B), --active-params, or the architecture "
            "(--layers --d-model --heads --seq-len --vocab).",
        )
    if run.params and run.active_params and run.active_params > run.params:
        raise ComputeError(
            f"--active-params {_n(run.active_params)} is more than --params "
            f"{_n(run.params)}: the parameters active per token are a part of the total.",
            hint="Check the two (e.g. Mixtral 8x7B: --params 46.7B --active-params 12.9B).")


def estimate(run: RunDescription) -> Estimate:
    """Every method ``run`` allows, reconciled (most precise method first)."""
    _check_complete(run)
    notes: list[str] = []
    figures: list[MethodFigure] = []
    if run.params is not None and run.params < 1e6:
        notes.append(f"--params {run.params:g} is {run.params:g} parameters; a model size is "
                     "usually written with its unit (e.g. 70B).")
    counted = _counted_params(run, notes) if run.tokens is not None else None
    if counted is not None and run.tokens is not None:
        n, label = counted
        figures.append(MethodFigure(method="6ND", flop=f.six_nd(n, run.tokens),
                                    formula=f"6 × {_n(n)} {label} × {_n(run.tokens)} tokens"))
    if run.arch is not None and run.tokens is not None:
        figures += _architecture_figures(run, run.arch, run.tokens, counted, notes)
    if run.hardware:
        figures.append(_hardware_figure(run))
    _check_finite(figures)
    rec = reconcile({m.method: m.flop for m in figures if m.reconciled})
    if rec.flagged:
        notes.append(
            "methods disagree by more than 30 % (the EU margin): "
            + ", ".join(f"{m} {d:+.0%}" for m, d in rec.disagreements.items())
            + f" relative to {rec.method}. Check the inputs, or measure utilisation."
        )
    return Estimate(run=run, figures=figures, reconciliation=rec, notes=notes)


def _check_finite(figures: list[MethodFigure]) -> None:
    """Refuse figures that overflowed (inputs such as 1e308 tokens) rather than print inf."""
    for fig in figures:
        if not math.isfinite(fig.flop):
            raise ComputeError(
                f"the {fig.method} method gives no finite figure ({fig.formula}): an input is "
                "out of any real range.", hint="Check the magnitudes and units (70B, 15T).")


def _architecture_figures(run: RunDescription, arch: Transformer, tokens: float,
                          counted: tuple[float, str] | None, notes: list[str]
                          ) -> list[MethodFigure]:
    """The methods that read the architecture: per-layer, Kaplan, PaLM, Megatron."""
    if run.params is not None and run.active_params is None:
        derived = arch.params()
        if abs(derived / run.params - 1) > 0.10:
            notes.append(f"the architecture has {_n(derived)} parameters but --params says "
                         f"{_n(run.params)}: check both.")
    layer = f.transformer_flop(arch, tokens, causal=run.causal)
    nonembed = float(arch.non_embedding_params(active=True))
    n_palm = counted[0] if counted is not None else float(arch.active_params())
    figures = [
        MethodFigure(
            method="per-layer", flop=layer.total,
            formula=f"3 × {_n(layer.forward_per_token)} forward FLOP/token × {_n(tokens)}",
            note=f"causal attention counted {run.causal}"),
        MethodFigure(
            method="kaplan",
            flop=f.kaplan(nonembed, arch.n_layers, arch.seq_len, arch.d_attn, tokens),
            formula=f"3 × (2 × {_n(nonembed)} + 2·{arch.n_layers}·{arch.seq_len}·"
            f"{arch.d_attn}) × {_n(tokens)}"),
        MethodFigure(
            method="palm",
            flop=f.palm(n_palm, arch.n_layers, arch.n_heads, arch.head_dim, arch.seq_len,
                        tokens, causal=run.causal),
            formula=f"(6 × {_n(n_palm)} + 12·{arch.n_layers}·{arch.n_heads}·"
            f"{arch.head_dim}·{arch.seq_len}) × {_n(tokens)}"),
    ]
    why_not = _standard_gpt(arch)
    if why_not is not None:
        notes.append(f"Megatron's formula is not applicable: {why_not}.")
        return figures
    args = (tokens, arch.n_layers, arch.d_model, arch.seq_len, arch.vocab_size)
    return [*figures,
            MethodFigure(method="megatron", flop=f.megatron(*args, causal=run.causal),
                         formula="72·B·s·l·h²·(1 + s/6h + V/12lh)"),
            MethodFigure(method="megatron-recompute",
                         flop=f.megatron(*args, recompute=True, causal=run.causal),
                         formula="96·B·s·l·h²·(1 + s/6h + V/16lh)", reconciled=False,
                         note="includes activation recomputation: hardware FLOP, not counted "
                         "toward EU totals")]


def _hardware_figure(run: RunDescription) -> MethodFigure:
    """Chips × time × peak × utilisation (the EU default utilisation when not measured)."""
    default_u = f.DEFAULT_UTILISATION[run.model_kind]
    parts = []
    for p in run.hardware:
        u = p.utilisation if p.utilisation is not None else default_u
        parts.append(f"{p.chips} × {p.seconds / 3600:g} h × {_n(p.peak())} FLOP/s × {u:g}")
    defaulted = any(p.utilisation is None for p in run.hardware)
    kind = "language" if run.model_kind == "language" else "other"
    return MethodFigure(
        method="hardware", flop=f.hardware(run.hardware, run.model_kind),
        formula=" + ".join(parts),
        note=f"utilisation not measured: EU default {default_u:g} for {kind} models"
        if defaulted else "")


class ThresholdCheck(BaseModel):
    """One policy threshold against an estimate."""

    model_config = ConfigDict(frozen=True)

    policy: str
    policy_kind: str
    threshold: Threshold
    counted: bool
    crossing: Crossing
    by_method: dict[str, bool]

    @property
    def crossed(self) -> bool:
        """Met by the reconciled figure (and applicable at that time)."""
        return self.counted and self.crossing.crossed and self.crossing.in_window

    @property
    def uncertain(self) -> bool:
        """Some methods put the run over the line and others do not."""
        return self.counted and len(set(self.by_method.values())) > 1


def _plan(est: Estimate) -> list[PlanSegment]:
    run, flop = est.run, est.reconciliation.flop
    if run.hardware:
        # Spread the reconciled figure over the hardware periods in proportion to each
        # period's own figure, so a crossing lands at the right time.
        shares = [p.flop(run.model_kind) for p in run.hardware]
        whole = sum(shares)
        return [
            PlanSegment(phase=run.phase, flop=flop * s / whole, seconds=p.seconds)
            for p, s in zip(run.hardware, shares, strict=True)
        ]
    return [PlanSegment(phase=run.phase, flop=flop, tokens=run.tokens)]


def check_thresholds(
    est: Estimate,
    policies: Iterable[Any],
    *,
    now: datetime | None = None,
    start: datetime | None = None,
) -> list[ThresholdCheck]:
    """Every compute threshold of ``policies`` (loaded ``Policy`` objects) against ``est``.

    The estimate is filed under its run's phase; a threshold whose regime does not include
    that phase is reported as not counted. ``start`` is when the run starts (for the time at
    which a ``reached`` threshold is met, from the hardware hours); ``now`` when the
    estimate is made (a ``planned`` threshold's duty starts then).
    """
    plan = _plan(est)
    checks: list[ThresholdCheck] = []
    for policy in policies:
        regimes = {name: list(r.include) for name, r in policy.compute.regimes.items()}
        thresholds = Threshold.from_policy(policy)
        projection = project(plan, thresholds, regimes, now=now, start=start)
        for crossing in projection.crossings:
            t = crossing.threshold
            counted = est.run.phase in regimes[t.regime]
            checks.append(
                ThresholdCheck(
                    policy=policy.id,
                    policy_kind=policy.kind,
                    threshold=t,
                    counted=counted,
                    crossing=crossing,
                    by_method={
                        m: counted and v >= t.flop for m, v in est.reconciliation.figures.items()
                    },
                )
            )
    return checks


__all__ = [
    "Estimate",
    "MethodFigure",
    "RunDescription",
    "ThresholdCheck",
    "check_thresholds",
    "estimate",
]
