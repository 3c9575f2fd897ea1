"""The HTML audit report: self-contained, carrying the audit and the plots' data, safe
against what a ledger may contain, and drawn by a real browser when one is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from scalegate.audit._plots import MAX_POINTS, compute_figure
from scalegate.audit.report_html import render_html, write_html
from scalegate.errors import VerificationError
from scalegate.ledger.statements import ComputePredicate, Ref, RunPredicate, make_statement
from scalegate.state import LoggedStatement, fold

from .runworld import POLICY, RUN, T0, World, build_stages

EVIL = '</script><script>alert("pwned")</script><img src=x onerror=alert(1)>'


class _Scripts(HTMLParser):
    """Collects <script> elements (attributes and text) and element ids."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.ids: list[str] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"] or "")
        if tag == "script":
            self._open = a
            self.scripts.append((a, ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            a, text = self.scripts[-1]
            self.scripts[-1] = (a, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None


def parse(page: str) -> tuple[dict[str, Any], list[dict[str, Any]], _Scripts]:
    p = _Scripts()
    p.feed(page)
    (audit,) = [json.loads(t) for a, t in p.scripts if a.get("id") == "scalegate-audit"]
    figures = [json.loads(t) for a, t in p.scripts if a.get("class") == "scalegate-figure"]
    return audit, figures, p


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """The honest run to its second pause, then a trainer who trains on, with hostile text."""
    stages = build_stages(tmp_path_factory.mktemp("stages"))
    w = stages["ceiling"]
    for other in ("running", "paused", "resumed"):
        stages[other].close()
    w.approve("rso", ceiling="1.5x")  # a rationale is free text: make it hostile
    from scalegate.governance import approve

    approve(w.ledger, w.ws.key("board"), RUN, EVIL, now=w.clock())
    w.more_compute(2)
    yield w
    w.close()


@pytest.fixture(scope="module")
def page(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    audit = world.audit(now=T0 + timedelta(days=1))
    path = write_html(tmp_path_factory.mktemp("html") / "audit.html", audit)
    return path, audit


def test_report_embeds_the_audit_and_the_plot_data(page: tuple[Path, Any]) -> None:
    path, audit = page
    text = path.read_text(encoding="utf-8")
    data, figures, parsed = parse(text)
    expected = json.loads(json.dumps(audit.to_json_data(), default=str))
    assert data == {**expected, "ledger": "ledger.db"}  # the auditor's path stays private
    assert data["exit_code"] == 3 and data["violations"][0]["kind"] == "training-during-pause"
    assert [f["title"] for f in figures] == [
        "compute vs thresholds", "evaluation scores vs compute",
        "timeline: decisions, pauses, approvals, resumptions"]
    compute, evals, timeline = figures
    # Compute on a log scale, with the policy's threshold and the resumption's ceiling.
    assert compute["y"]["scale"] == "log"
    assert [ln["y"] for ln in compute["lines"]] == [1e13]
    state = audit.runs[0].replay.state
    series = {x["name"]: x for x in compute["series"]}
    assert series["effective compute"]["y"] == [r.predicate.effective_flop for r in state.compute]
    (ceiling,) = [x for name, x in series.items() if name.startswith("ceiling")]
    assert ceiling["y"] == [state.resumes[0].predicate.ceiling_flop] * 2
    # Scores vs compute with the alert and trigger lines.
    assert evals["x"]["scale"] == "log"
    assert sorted(ln["y"] for ln in evals["lines"]) == [0.5, 0.8]
    (scores,) = evals["series"]
    assert scores["y"] == [r.predicate.value for r in state.evals]
    # The timeline: every pause, approval and resumption, pauses shaded.
    rows: dict[str, int] = {}
    for x in timeline["series"]:
        rows[x["name"]] = rows.get(x["name"], 0) + len(x["x"])
    assert rows["pauses"] == 2 and rows["approvals"] == 4 and rows["resumptions"] == 1
    assert rows["violations"] == 1 and rows["decisions"] == len(state.decisions)
    assert len(timeline["bands"]) == 2
    # Each plot is drawn in the page as SVG (no script, nothing fetched), and the page is
    # small: the audit, the plots and the tables, not a plotting library.
    targets = [a["data-target"] for a, _ in parsed.scripts if a.get("class") ==
               "scalegate-figure"]
    assert all(t in parsed.ids for t in targets) and text.count('<svg class="chart"') == 3
    assert not [a for a, _ in parsed.scripts if a.get("src") or a.get("type") is None]
    assert len(text.encode()) < 400_000, len(text.encode())


def test_the_report_is_complete_and_names_no_local_path(page: tuple[Path, Any]) -> None:
    path, audit = page
    text = path.read_text(encoding="utf-8")
    state = audit.runs[0].replay.state
    assert "<h3>Safeguard attestations</h3>" in text and state.attestations
    assert state.attestations[0].predicate.safeguard in text
    assert "Obligations open at the audit time" in text
    assert str(path.parent) not in text and str(Path.home()) not in text
    assert audit.report.ledger not in text and "ledger.db" in text


def test_ledger_text_cannot_inject_markup(page: tuple[Path, Any]) -> None:
    text = page[0].read_text(encoding="utf-8")
    assert "pwned" in text  # the text is there ...
    assert '<script>alert("pwned")' not in text and "<img src=x" not in text  # ... inert
    _, _, parsed = parse(text)
    assert not [a for a, t in parsed.scripts if "pwned" in t and a.get("type") is None]
    svg = text[text.index('<svg class="chart"'):]
    assert "<img" not in svg and "&lt;img" in svg  # a tooltip shows it, as text


def test_renders_in_a_headless_browser(page: tuple[Path, Any], tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which(
        "google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium installed (apt-get install chromium)")
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        f"--user-data-dir={tmp_path / 'profile'}",
                        "--virtual-time-budget=20000", "--dump-dom", page[0].as_uri()],
                       capture_output=True, text=True, timeout=120)
    dom = r.stdout
    assert dom.count('<svg class="chart"') == 3, r.stderr[-2000:]
    assert dom.count("<circle") > 10 and "<path" in dom
    assert "pwned" in dom and "<img src=x" not in dom


def test_long_runs_are_thinned_for_plotting() -> None:
    n = 3 * MAX_POINTS + 7
    ref = Ref(index=0, leaf_hash="0" * 64)
    run = make_statement(RunPredicate(
        run_id="long", org="o", model="m", started_at=T0,
        policy={"id": POLICY.id, "version": POLICY.version, "digest": POLICY.digest()}))
    entries = [LoggedStatement(ref=ref, statement=run)] + [LoggedStatement(
        ref=Ref(index=i, leaf_hash="0" * 64), statement=make_statement(ComputePredicate(
            run_id="long", step=i, tokens=1.0 * i, flop_by_phase={"pretraining": 1e9 * i},
            effective_flop=1e9 * i, method="declared", at=T0 + timedelta(seconds=i))))
        for i in range(1, n + 1)]
    fig = compute_figure(POLICY, fold(entries, run_id="long")).data()
    (eff,) = [t for t in fig["series"] if t["name"] == "effective compute"]
    assert len(eff["y"]) <= MAX_POINTS + 1
    assert eff["y"][0] == 1e9 and eff["y"][-1] == 1e9 * n  # the ends are kept


def test_write_is_atomic_and_fails_cleanly(page: tuple[Path, Any], tmp_path: Path) -> None:
    audit = page[1]
    with pytest.raises(VerificationError, match="cannot write the report"):
        write_html(tmp_path / "missing-dir" / "r.html", audit)
    assert not (tmp_path / "missing-dir").exists()
    written = write_html(tmp_path / "r.html", audit)
    assert written.stat().st_mode & 0o777 == 0o644  # for sharing, not private
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left
    one = render_html(audit, run_ids=[RUN])
    assert "scalegate report: run run-1" in one
    assert re.findall(r"<h2 id=\"run-[^\"]+\">", one) == ['<h2 id="run-run-1">']


def test_the_witnessed_times_are_shown(page: tuple[Path, Any]) -> None:
    path, audit = page
    text = path.read_text(encoding="utf-8")
    assert audit.report.witnessed_times
    assert "<h2>Time from the witnesses</h2>" in text
    w = audit.report.witnessed_times[-1]
    assert f"<td>{w.size}</td>" in text
