"""`scalegate compute ...` commands: training-compute estimates against policy thresholds."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from scalegate.cli._console import console
from scalegate.compute import (
    CHIPS,
    DTYPES,
    PHASES,
    Estimate,
    HardwarePeriod,
    RunDescription,
    ThresholdCheck,
    check_thresholds,
    estimate,
    format_flop,
    make_transformer,
)
from scalegate.errors import ComputeError
from scalegate.units import format_duration, parse_quantity, sig2

app = typer.Typer(
    help="Training compute: estimates by every method, reconciled, against policy thresholds.",
    no_args_is_help=True,
)

_GROUPED = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")


def _quantity(text: str | None, option: str) -> float | None:
    """A positive number as people write it (70B, 15T, 1.2e24, 370,000) or None."""
    if text is None:
        return None
    cleaned = text.strip().replace("_", "")
    if _GROUPED.match(cleaned):
        cleaned = cleaned.replace(",", "")
    try:
        return parse_quantity(cleaned)
    except ValueError as exc:
        if cleaned.startswith("-"):
            raise ComputeError(f"{option}: expected a positive number, got {text!r}.") from None
        raise ComputeError(f"{option}: {exc}.") from None


# Counts above 2^53 are no longer exact as floats (and no layer count or width is near it).
_MAX_WHOLE = 2**53


def _whole(text: str | None, option: str) -> int | None:
    value = _quantity(text, option)
    if value is None:
        return None
    if value > _MAX_WHOLE:
        raise ComputeError(f"{option} {text} is too large: a count above {_MAX_WHOLE:.2e} is "
                           "no architecture or cluster.", hint="Check the unit (70B, 15T).")
    if value != int(value):
        raise ComputeError(f"{option} must be a whole number, got {text!r}.")
    return int(value)


def _fraction(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    cleaned = text.strip()
    scale = 100.0 if cleaned.endswith("%") else 1.0
    value = _quantity(cleaned.rstrip("%"), option)
    assert value is not None
    value /= scale
    if value > 1:
        raise ComputeError(
            f"{option} is a fraction of peak between 0 and 1 (or a %), got {text!r}."
        )
    return value


def _architecture(fields: dict[str, str | None], flags: dict[str, Any]) -> Any:
    given = {k: v for k, v in fields.items() if v is not None}
    required = ("--layers", "--d-model", "--heads", "--seq-len", "--vocab")
    if not given:
        return None
    missing = [k for k in required if fields[k] is None]
    if missing:
        raise ComputeError(
            f"the architecture is incomplete: {', '.join(given)} given but "
            f"{', '.join(missing)} missing.",
            hint="The architecture methods need all of --layers --d-model --heads --seq-len "
            "--vocab (--ffn defaults to 4 × d-model).",
        )
    ints = {k: _whole(v, k) for k, v in fields.items()}
    if (ints["--experts"] or 1) > 1 and ints["--top-k"] is None:
        raise ComputeError(
            f"--experts {ints['--experts']} given without --top-k: how many experts each "
            "token is routed to decides the active parameters.",
            hint="Add --top-k (e.g. 2 for Mixtral).")
    return make_transformer(
        n_layers=ints["--layers"],
        d_model=ints["--d-model"],
        n_heads=ints["--heads"],
        seq_len=ints["--seq-len"],
        vocab_size=ints["--vocab"],
        d_ff=ints["--ffn"],
        n_kv_heads=ints["--kv-heads"],
        n_experts=ints["--experts"] or 1,
        experts_per_token=ints["--top-k"] or 1,
        **flags,
    )


def _hardware(
    chips: str | None,
    chip: str | None,
    hours: str | None,
    mfu: str | None,
    dtype: str | None,
    peak: str | None,
) -> list[HardwarePeriod]:
    given = {
        "--chips": chips, "--chip": chip, "--hours": hours, "--mfu": mfu, "--peak-flops": peak
    }
    if dtype is not None and dtype not in DTYPES:
        raise ComputeError(f"--dtype {dtype!r} is no number format; use one of: "
                           f"{', '.join(DTYPES)}.")
    if all(v is None for v in given.values()):
        if dtype is not None:
            raise ComputeError(
                f"--dtype {dtype} given without the hardware method: the number format only "
                "chooses a chip's peak FLOP/s.",
                hint="Add --chips, --hours and --chip (or --peak-flops), or drop --dtype.")
        return []
    missing = [k for k in ("--chips", "--hours") if given[k] is None]
    if chip is None and peak is None:
        missing.append("--chip (or --peak-flops)")
    if missing:
        present = ", ".join(k for k, v in given.items() if v is not None)
        raise ComputeError(
            f"the hardware method is incomplete: {present} given but {', '.join(missing)} "
            "missing.",
            hint=f"Known chips: {', '.join(CHIPS)}.",
        )
    return [
        HardwarePeriod.of_hours(
            _whole(chips, "--chips") or 0,
            _quantity(hours, "--hours") or 0.0,
            chip,
            dtype=dtype or "bf16",
            utilisation=_fraction(mfu, "--mfu"),
            peak_flops=_quantity(peak, "--peak-flops"),
        )
    ]


def _policies(names: list[str] | None) -> list[Any]:
    from scalegate.policy import bundled_policies, load_policy

    if names:
        return [load_policy(n) for n in names]
    loaded = [load_policy(n) for n in bundled_policies()]
    return [p for p in loaded if p.kind == "law"]


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def _obligation(check: ThresholdCheck) -> tuple[str, str]:
    """(what the threshold obliges, by when)."""
    t, c = check.threshold, check.crossing
    who = f" {t.recipient}" if t.recipient else ""
    what = {"notify": f"notify{who}", "evaluate": "run the evaluations", "pause": "pause training"}[
        t.action
    ]
    if not check.crossed:
        if check.counted and c.crossed and not c.in_window:
            end = _when(t.window_end)
            return what, f"not applicable: outside the window (ended {end})"
        return what, "—"
    if t.action == "notify" and t.deadline is not None:
        span = format_duration(t.deadline)
        if c.due is not None:
            start = "now: this estimate makes it known" if t.basis == "planned" else "it is met"
            return what, f"by {_when(c.due)} ({span} after {start})"
        return what, f"within {span} of reaching it (give --hours to date it)"
    if t.action == "pause":
        at = f" at {_when(c.known_at)}" if c.known_at else ""
        return what, f"when the line is reached{at}"
    return what, "on crossing" if t.basis == "reached" else "before the run"


def _render(est: Estimate, checks: list[ThresholdCheck]) -> None:
    rec = est.reconciliation
    table = Table(title="Training compute by method", title_justify="left")
    for col in ("method", "FLOP", "vs reconciled", "formula", "note"):
        table.add_column(col, overflow="fold")
    for fig in est.figures:
        dev = rec.deviations.get(fig.method)
        if fig.method == rec.method:
            vs = "reconciled"
        elif dev is None:
            vs = "not reconciled"
        else:
            vs = f"{dev:+.0%}" + (" ⚠" if fig.method in rec.disagreements else "")
        table.add_row(fig.method, sig2(fig.flop), vs, fig.formula, fig.note)
    console.print(table)
    style = "bold red" if rec.flagged else "bold green"
    console.print(f"[{style}]reconciled:[/{style}] {rec.statement()}", highlight=False)
    for note in est.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if not checks:
        return
    th = Table(title=f"Thresholds ({est.run.phase} compute)", title_justify="left")
    for col in ("policy", "threshold", "line", "crossed", "obliges", "by when"):
        th.add_column(col, overflow="fold")
    for check in checks:
        t = check.threshold
        if not check.counted:
            crossed = f"not counted ({est.run.phase} is outside {t.regime})"
        elif check.crossing.crossed and not check.crossing.in_window:
            crossed = "passed, outside its window"
        else:
            crossed = "[red]yes[/red]" if check.crossed else "no"
            if check.uncertain:
                others = [m for m, v in check.by_method.items() if v != check.crossed]
                crossed += f" [yellow](but not by {', '.join(others)})[/yellow]" if (
                    check.crossed
                ) else f" [yellow](but yes by {', '.join(others)})[/yellow]"
        what, when = _obligation(check)
        line = f"{sig2(t.flop)} {t.regime} ({t.basis})"
        th.add_row(f"{t.policy}", t.id, line, crossed, what, when)
    console.print(th)


def _json(est: Estimate, checks: list[ThresholdCheck]) -> str:
    rec = est.reconciliation
    doc = {
        "run": est.run.model_dump(mode="json"),
        "methods": [
            {**fig.model_dump(mode="json"), "flop_2sf": sig2(fig.flop)} for fig in est.figures
        ],
        "reconciled": {
            "method": rec.method,
            "flop": rec.flop,
            "flop_2sf": sig2(rec.flop),
            "report": format_flop(rec.flop, rec.method),
            "deviations": rec.deviations,
            "disagreements": rec.disagreements,
            "flagged": rec.flagged,
            "tolerance": rec.tolerance,
        },
        "notes": est.notes,
        "thresholds": [
            {
                "policy": c.policy,
                "policy_kind": c.policy_kind,
                **c.threshold.model_dump(mode="json", exclude={"policy"}),
                "counted": c.counted,
                "crossed": c.crossed,
                "uncertain": c.uncertain,
                "by_method": c.by_method,
                "in_window": c.crossing.in_window,
                "obliges": _obligation(c)[0],
                "known_at": c.crossing.known_at.isoformat() if c.crossing.known_at else None,
                "due": c.crossing.due.isoformat() if c.crossing.due and c.crossed else None,
                "at_seconds": c.crossing.seconds,
                "at_tokens": c.crossing.tokens,
            }
            for c in checks
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _num(flag: str, help_text: str) -> Any:
    # Numbers arrive as text so that 70B, 15T, 1.2e24 and 370,000 all parse, with one message.
    return typer.Option(None, flag, help=help_text, metavar="N")


@app.command("estimate")
def estimate_cmd(
    params: str | None = _num("--params", "Parameters, e.g. 70B."),
    active_params: str | None = _num(
        "--active-params", "Active parameters per token (mixture of experts)."
    ),
    tokens: str | None = _num("--tokens", "Training tokens, e.g. 15T."),
    layers: str | None = _num("--layers", "Transformer layers."),
    d_model: str | None = _num("--d-model", "Model width."),
    heads: str | None = _num("--heads", "Attention (query) heads."),
    seq_len: str | None = _num("--seq-len", "Training sequence length."),
    vocab: str | None = _num("--vocab", "Vocabulary size."),
    ffn: str | None = _num("--ffn", "MLP hidden width (default 4 × d-model)."),
    kv_heads: str | None = _num("--kv-heads", "Key/value heads (grouped-query)."),
    experts: str | None = _num("--experts", "Experts per MoE layer."),
    top_k: str | None = _num("--top-k", "Experts active per token."),
    gated: bool = typer.Option(False, "--gated", help="Gated MLP (SwiGLU: 3 matrices)."),
    tied: bool = typer.Option(False, "--tied-embeddings", help="Input/output embeddings tied."),
    chips: str | None = _num("--chips", "Number of accelerators."),
    chip: str | None = typer.Option(None, "--chip", help=f"One of: {', '.join(CHIPS)}."),
    hours: str | None = _num("--hours", "Wall-clock training hours."),
    mfu: str | None = _num("--mfu", "Measured utilisation, 0.45 or 45%."),
    dtype: str | None = typer.Option(
        None, "--dtype", help="Number format trained in, for --chip's peak (default bf16)."),
    peak: str | None = _num("--peak-flops", "Peak FLOP/s per chip (overrides --chip)."),
    model_kind: str = typer.Option(
        "language", "--model-kind", help="language (default utilisation 0.3) or other (0.4)."
    ),
    causal: str = typer.Option("full", "--causal", help="Attention counted full or halved."),
    phase: str = typer.Option("pretraining", "--phase", help="Phase this compute belongs to."),
    policy: list[str] | None = typer.Option(
        None, "--policy", help="Policy name or file (repeatable). Default: every bundled law."
    ),
    start: str | None = typer.Option(
        None, "--start", help="Run start (ISO 8601, UTC; default now), to date crossings."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Estimate a run's training compute by every method the inputs allow, reconcile the
    figures, and check each threshold of the policies: crossed or not, what it obliges, by
    when."""
    if model_kind not in ("language", "other"):
        raise ComputeError(f"--model-kind must be 'language' or 'other', got {model_kind!r}.")
    if causal not in ("full", "halved"):
        raise ComputeError(f"--causal must be 'full' or 'halved', got {causal!r}.")
    if phase not in PHASES:
        raise ComputeError(
            f"--phase: unknown phase {phase!r}.", hint=f"Phases: {', '.join(PHASES)}."
        )
    arch = _architecture(
        {
            "--layers": layers, "--d-model": d_model, "--heads": heads, "--seq-len": seq_len,
            "--vocab": vocab, "--ffn": ffn, "--kv-heads": kv_heads, "--experts": experts,
            "--top-k": top_k,
        },
        {"gated_mlp": gated, "tied_embeddings": tied},
    )
    run = RunDescription(
        params=_quantity(params, "--params"),
        active_params=_quantity(active_params, "--active-params"),
        tokens=_quantity(tokens, "--tokens"),
        arch=arch,
        hardware=_hardware(chips, chip, hours, mfu, dtype, peak),
        model_kind=model_kind,
        causal=causal,
        phase=phase,
    )
    now = datetime.now(UTC)
    begin = now
    if start is not None:
        try:
            begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError:
            raise ComputeError(
                f"--start: expected an ISO 8601 time such as 2025-09-01T00:00Z, got {start!r}."
            ) from None
        begin = begin if begin.tzinfo else begin.replace(tzinfo=UTC)
    est = estimate(run)
    checks = check_thresholds(est, _policies(policy), now=now, start=begin)
    if as_json:
        typer.echo(_json(est, checks))
    else:
        _render(est, checks)


@app.command("chips")
def chips_cmd(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The chip table: dense peak FLOP/s per number format, each with its datasheet."""
    if as_json:
        table_doc = {n: c.model_dump() for n, c in CHIPS.items()}
        typer.echo(json.dumps(table_doc, indent=2, ensure_ascii=False))
        return
    table = Table(title="Dense peak per chip (FLOP/s; int8: OP/s)", title_justify="left")
    for col in ("chip", "format", "peak", "source"):
        table.add_column(col, overflow="fold")
    for chip in CHIPS.values():
        for i, (dtype, value) in enumerate(chip.peak.items()):
            table.add_row(chip.name if i == 0 else "", dtype, sig2(value, 4), chip.sources[dtype])
    console.print(table)


__all__ = ["app"]
