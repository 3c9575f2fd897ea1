"""`scalegate policy ...`: list, check, explain, compare and publish policies."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from scalegate.cli._console import console, print_error
from scalegate.cli._ledger import LedgerOpt
from scalegate.errors import PolicyError

if TYPE_CHECKING:
    from scalegate.policy import Level, Policy

app = typer.Typer(
    help="Policies as code: list the bundled ones, check a file, explain or compare them, "
    "publish one in a ledger.",
    no_args_is_help=True,
)

_MARK = "[yellow]*[/yellow]"


def _flop(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}".replace("e+", "e")


def _dur(value: timedelta | None) -> str:
    from scalegate.units import format_duration

    return "-" if value is None else format_duration(value)


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:g}x"


def _star(item: Any) -> str:
    return _MARK if getattr(item, "illustrative", False) else ""


class _Table(Table):
    """A table whose cells are plain text (policy text may contain [brackets]) plus our marks."""

    def add_row(self, *cells: Any, **kwargs: Any) -> None:
        super().add_row(*(_plain(c) for c in cells), **kwargs)


def _plain(cell: Any) -> Any:
    if not isinstance(cell, str):
        return cell
    # Keep our own marks (illustrative star, effective tag); escape everything else.
    for mark in (_MARK, " [cyan](effective)[/cyan]"):
        if cell.endswith(mark):
            return _plain(cell[: -len(mark)]) + mark
    return escape(cell)


def _table(title: str, *columns: str) -> Table:
    table = _Table(title=escape(title), title_justify="left", title_style="bold",
                   box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


@app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="One JSON array (full digests)."),
) -> None:
    """The bundled policies, loadable by name (e.g. `--policy anthropic-rsp-2.2`)."""
    import json

    from scalegate.policy import bundled_policies, load_policy

    rows = [(name, load_policy(name)) for name in bundled_policies()]
    if as_json:
        print(json.dumps([{"name": n, "id": p.id, "kind": p.kind, "version": p.version,
                           "title": p.title, "digest": p.digest()} for n, p in rows], indent=2))
        return
    table = _table("bundled policies", "name", "kind", "version", "title", "digest")
    for name, p in rows:
        table.add_row(name, p.kind, p.version, p.title, p.digest()[:12])
    console.print(table)


@app.command("check")
def check(
    files: list[Path] = typer.Argument(..., help="Policy YAML files to validate."),
) -> None:
    """Validate policy files; list every problem with file:line:column; exit 1 if any."""
    from scalegate.policy import load_policy_file

    failed = 0
    for path in files:
        try:
            p = load_policy_file(path)
        except PolicyError as exc:
            failed += 1
            print_error(exc)
            continue
        console.print(
            f"[green]ok[/green] {path}: {p.id} {p.version} ({p.kind}), digest {p.digest()}",
            highlight=False, soft_wrap=True,
        )
    if failed:
        raise typer.Exit(1)


@app.command("publish")
def publish(
    policy: str = typer.Argument(..., help="A bundled policy name or a policy file."),
    key: Path = typer.Option(..., "--key", "-k", help="Your private key file (mode 0600): "
                             "a role the policy names under governance.policy_change."),
    ledger: str | None = LedgerOpt,
) -> None:
    """Publish a policy in the ledger, signed by one of its approvers; runs cite it."""
    from scalegate.cli._ledger import _open
    from scalegate.governance import publish_policy
    from scalegate.ledger import SigningKey
    from scalegate.policy import load_policy

    doc = load_policy(policy)
    signer = SigningKey.load(key)
    with _open(ledger) as led:
        ref, new = publish_policy(led, signer, doc)
    what = f"{doc.id} {doc.version} (digest {doc.digest()[:12]}…)"
    console.print(f"published {what} as entry {ref.index}, signed by {signer.name}" if new
                  else f"{what} is already published, as entry {ref.index}", highlight=False)


@app.command("explain")
def explain(
    policy: str = typer.Argument(..., help="A bundled policy name or a policy file."),
) -> None:
    """What a policy asks, as tables: compute, thresholds, cadence, levels, safeguards, quorum."""
    from scalegate.policy import load_policy

    p = load_policy(policy)
    for section in (_explain_head, _explain_compute, _explain_thresholds, _explain_cadence,
                    _explain_levels, _explain_safeguards, _explain_governance):
        section(p)
    console.print(f"{_MARK} illustrative: the source does not publish this value", highlight=False)


def _explain_head(p: Policy) -> None:
    ident = escape(f"{p.id} {p.version}")
    console.print(f"[bold]{escape(p.title or p.id)}[/bold]  [dim]{ident} ({p.kind})[/dim]",
                  highlight=False)
    if p.source:
        src = p.source
        when = f", {src.date:%Y-%m-%d}" if src.date else ""
        version = f" ({src.version})" if src.version and src.version != p.version else ""
        console.print(escape(f"source: {src.title}{version}{when} {src.url}".rstrip()),
                      highlight=False, soft_wrap=True, style="dim")
    console.print(f"digest: {p.digest()}", style="dim", highlight=False)


def _explain_compute(p: Policy) -> None:
    eff = p.compute.effective
    regimes = _table("compute regimes", "regime", "counts", "does not count")
    for name, regime in p.compute.regimes.items():
        label = f"{name}{_star(regime)}"
        if name == eff.regime:
            label += " [cyan](effective)[/cyan]"
        regimes.add_row(label, ", ".join(regime.include), ", ".join(regime.exclude) or "-")
    console.print(regimes)
    console.print(f"effective compute = {eff.regime} x {eff.multiplier:g}{_star(eff)}  "
                  f"[dim]({eff.source})[/dim]", highlight=False, soft_wrap=True)


def _explain_thresholds(p: Policy) -> None:
    if not p.compute.thresholds:
        return
    th = _table("compute thresholds", "id", "regime", "FLOP", "when", "action",
                "notify / deadline", "window")
    for t in p.compute.thresholds:
        window = "-"
        if t.window is not None and t.window.end is not None:
            window = f"{t.window.start:%Y-%m-%d} .. {t.window.end:%Y-%m-%d}"
        who = f"{t.recipient} / {_dur(t.deadline)}" if t.recipient else "-"
        th.add_row(f"{t.id}{_star(t)}", t.regime, _flop(t.flop), t.basis, t.action, who, window)
    console.print(th)


def _explain_cadence(p: Policy) -> None:
    cad = p.evaluation
    if cad is None:
        console.print("[bold]evaluation cadence[/bold]: none", highlight=False)
        return
    console.print(
        f"[bold]evaluation cadence[/bold]{_star(cad)}: every {_x(cad.every)} "
        "effective compute, "
        f"at most {_dur(cad.max_interval)} apart; first at {_flop(cad.first_at)}; "
        f"grace {_x(cad.grace)}; when missing: [bold]{cad.on_missing}[/bold]",
        highlight=False, soft_wrap=True,
    )


def _explain_levels(p: Policy) -> None:
    if not p.capabilities:
        return
    levels = _table("capability levels", "capability", "level", "evaluation (metric)", "alert",
                    "trigger", "requires / on reach", "on alert")
    for cap in p.capabilities:
        for li, level in enumerate(cap.levels):
            for n, trig in enumerate(level.evaluations):
                lower = "" if trig.direction == "higher" else ", lower is more capable"
                alert = level.on_alert
                effects = [f"every {_x(alert.every)}"] if alert.every else []
                effects += [f"notify {x.recipient}" for x in alert.notify]
                levels.add_row(
                    cap.id if n == 0 and li == 0 else "",
                    level.id if n == 0 else "",
                    f"{trig.evaluation} ({trig.metric}{lower})",
                    ("-" if trig.alert is None else f"{trig.alert:g}") + _star(trig),
                    ("-" if trig.trigger is None else f"{trig.trigger:g}") + _star(trig),
                    _when_reached(level) if n == 0 else "",
                    ", ".join(effects) or "-" if n == 0 else "",
                )
    console.print(levels)


def _explain_safeguards(p: Policy) -> None:
    if not p.safeguards:
        return
    sg = _table("safeguards", "safeguard", "kind", "attested by", "max age")
    for s in p.safeguards:
        sg.add_row(s.id, s.kind, " or ".join(s.attested_by), _dur(s.max_age) + _star(s))
    console.print(sg)


def _explain_governance(p: Policy) -> None:
    from scalegate.policy import describe_quorum

    gov = p.governance
    res = gov.resumption
    limits = []
    if res.require_ceiling:
        limits.append("every resumption needs a compute ceiling")
    if res.max_ceiling:
        limits.append(f"at most {_x(res.max_ceiling)} the paused compute")
    if res.require_evaluation:
        limits.append("a fresh evaluation after every pause")
    console.print(
        f"[bold]resumption[/bold]{_star(gov)}: approvals by {describe_quorum(res.quorum)}"
        + (f"; {'; '.join(limits)}" if limits else "")
        + "\n[bold]policy changes[/bold]: approved (published) by "
        + describe_quorum(gov.policy_change)
        + f"\n[bold]a pause publishes[/bold]: {', '.join(p.disclosure.on_pause)}"
        + (f" to {', '.join(p.disclosure.recipients)}" if p.disclosure.recipients else ""),
        highlight=False, soft_wrap=True,
    )


def _when_reached(level: Level) -> str:
    """What reaching a level does: pause until its safeguards are attested, or its on_reach."""
    if level.requires:
        return ", ".join(level.requires)
    if level.on_reach == "pause":
        return "pause, whatever is attested"
    return "record only" if level.on_reach == "continue" else "-"


def _flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Leaf values by path; list items that have an ``id`` are keyed by it. An empty list is
    no leaf: nothing listed and nothing said compare alike (the items on the other side are
    rows of their own)."""
    out: dict[str, Any] = {}
    if isinstance(value, list) and not value:
        return out
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(_flatten(item, f"{path}.{key}" if path else str(key)))
    elif isinstance(value, list) and value and all(isinstance(v, dict) and "id" in v
                                                    for v in value):
        for item in value:
            out.update(_flatten(item, f"{path}[{item['id']}]"))
    elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{path}[{i}]"))
    else:
        out[path] = value
    return out


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return _flop(value) if abs(value) >= 1e4 else f"{value:g}"
    if isinstance(value, timedelta):
        return _dur(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, list):
        return ", ".join(_show(v) for v in value) or "[]"
    text = str(value)
    return text if len(text) <= 70 else text[:67] + "..."


_MISSING = object()


def _only_in(path: str, other: dict[str, Any]) -> str | None:
    """The shortest ``...[id]`` or regime prefix of ``path`` that ``other`` has nothing under."""
    cut = 0
    while True:
        nxt = path.find("]", cut)
        if nxt < 0:
            break
        prefix = path[: nxt + 1]
        if not any(k == prefix or k.startswith((prefix + ".", prefix + "[")) for k in other):
            return prefix
        cut = nxt + 1
    if path.startswith("compute.regimes."):
        prefix = ".".join(path.split(".")[:3])
        if not any(k.startswith(prefix + ".") for k in other):
            return prefix
    return None


_PROSE = ("description", "cite", "note", "title", "name", "source", "url", "message")


def _summary(flat: dict[str, Any], whole: str) -> str:
    """What one side defines at ``whole`` (a threshold, a regime, a level), in its values:
    ``flop: 1e+25; regime: eu-cumulative; ...`` rather than just "defined"."""
    parts = []
    for path, value in flat.items():
        if not path.startswith((whole + ".", whole + "[")) or value is None:
            continue
        field = path[len(whole):].lstrip(".")
        if field.rsplit(".", 1)[-1] in _PROSE or field == "id":
            continue
        parts.append(f"{field}: {_show(value)}")
    return "; ".join(parts[:8]) + ("; …" if len(parts) > 8 else "") or "(defined)"


@app.command("diff")
def diff(
    a: str = typer.Argument(..., help="A bundled policy name or a policy file."),
    b: str = typer.Argument(..., help="Another bundled policy name or policy file."),
    all_text: bool = typer.Option(False, "--text", help="Also compare descriptions and citations."),
) -> None:
    """Every value that differs between two policies, path by path."""
    from scalegate.policy import load_policy

    pa, pb = load_policy(a), load_policy(b)
    fa, fb = _flatten(pa.model_dump()), _flatten(pb.model_dump())
    prose = ("description", "cite", "note", "title", "name", "source", "url")
    table = _table(f"{a} -> {b}", "path", a, b)
    count = 0
    shown: set[str] = set()
    for path in list(fa) + [k for k in fb if k not in fa]:
        va, vb = fa.get(path, _MISSING), fb.get(path, _MISSING)
        if va == vb:
            continue
        whole = _only_in(path, fb if vb is _MISSING else fa) if _MISSING in (va, vb) else None
        if whole is not None:
            # A capability, level, safeguard or threshold one side defines and the other lacks.
            if whole in shown:
                continue
            shown.add(whole)
            count += 1
            table.add_row(whole, "(absent)" if va is _MISSING else _summary(fa, whole),
                          "(absent)" if vb is _MISSING else _summary(fb, whole))
            continue
        if not all_text and path.rsplit(".", 1)[-1] in prose:
            continue
        count += 1
        table.add_row(path, "(absent)" if va is _MISSING else _show(va),
                      "(absent)" if vb is _MISSING else _show(vb))
    if pa.digest() == pb.digest():
        console.print(f"identical policies (digest {pa.digest()})", highlight=False)
        return
    if count:
        console.print(table)
    console.print(f"{count} difference{'s' if count != 1 else ''} "
                  f"(digests {pa.digest()[:12]} / {pb.digest()[:12]})"
                  + ("" if all_text else "; --text to include descriptions and citations"),
                  highlight=False)
