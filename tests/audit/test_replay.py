"""The run replay as a pure function, the run-level audit around it, and `scalegate verify`
and `scalegate report` on real ledgers (real keys, a real witness, real subprocesses)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from scalegate.audit import EXIT_COULD_NOT_VERIFY, EXIT_OK, EXIT_VIOLATIONS
from scalegate.audit.replay import replay_decisions, replay_run
from scalegate.audit.runcheck import replay_ledger
from scalegate.cli._report import report
from scalegate.policy import load_policy
from scalegate.runs import run_log_entries, to_entries

from .runworld import POLICY, RUN, World, build_stages

SCALEGATE = [str(Path(sys.executable).with_name("scalegate"))]


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, World]:
    built = build_stages(tmp_path_factory.mktemp("stages"))
    yield built
    for w in built.values():
        w.close()


@pytest.fixture
def at(stages: dict[str, World], tmp_path: Path):
    made: list[World] = []

    def copy(stage: str) -> World:
        made.append(stages[stage].copy(tmp_path / f"{stage}-{len(made)}"))
        return made[-1]

    yield copy
    for w in made:
        w.close()


def _entries(w: World):
    return to_entries(run_log_entries(w.ledger, RUN), w.ledger.registry())


# --- the pure replay -----------------------------------------------------------------------------


def test_honest_run_replays_clean_and_deterministically(stages: dict[str, World]) -> None:
    w = stages["ceiling"]
    entries = _entries(w)
    now = w.clock.t + timedelta(hours=1)
    first = replay_run(POLICY, entries, RUN, now=now)
    again = replay_run(POLICY, list(reversed(entries)), RUN, now=now)  # order does not matter
    assert first.ok and not first.mismatches
    assert first.model_dump() == again.model_dump()
    verdicts = {d.recorded for d in first.decisions}
    assert verdicts >= {"continue", "alert", "pause"}
    assert first.resumes == 1 and first.consults > 0
    assert first.state is not None and first.state.active_pause is not None
    assert first.final is not None and first.final.verdict == "pause"
    # The lead's decision-only replay is the same decisions.
    assert replay_decisions(POLICY, entries, RUN) == replay_run(POLICY, entries, RUN).decisions


def test_the_policy_decides_the_replay(stages: dict[str, World]) -> None:
    """Replayed under another policy, the same honest decisions no longer match."""
    entries = _entries(stages["paused"])
    other = replay_run(load_policy("eu-ai-act"), entries, RUN)
    assert other.mismatches
    assert {v.kind for v in other.violations} >= {"decision-mismatch"}


def test_audit_time_defaults_to_the_run_and_judges_deadlines(at) -> None:
    w = at("running")
    entries = _entries(w)
    replay = replay_run(POLICY, entries, RUN)
    assert replay.now == replay.state.latest_time and replay.ok
    late = replay_run(POLICY, entries, RUN, now=w.clock.t + timedelta(days=15))
    assert [v.kind for v in late.violations] == ["notification-missed"]


def test_time_grace_is_a_parameter(at) -> None:
    w = at("paused")
    w.attest(valid_for=timedelta(hours=1))
    w.approve("rso")
    w.approve("board")
    w.honest_resume()
    w.clock.jump(timedelta(hours=1))
    w.more_compute(2)
    entries = _entries(w)
    assert replay_run(POLICY, entries, RUN).ok
    strict = replay_run(POLICY, entries, RUN, time_grace=timedelta(0))
    assert {v.kind for v in strict.violations} == {"pause-not-declared", "attestation-expired"}


def test_report_checks_and_json(at) -> None:
    w = at("paused")
    w.more_compute(1)
    audit = w.audit()
    data = audit.to_json_data()
    names = {c["name"] for c in data["checks"]}
    assert {"runs replayed", "pauses declared and honoured", "decisions replay to the same "
            "verdict", "witnessed checkpoint"} <= names
    assert [c["ok"] for c in data["checks"] if c["name"] == "pauses declared and honoured"] \
        == [False]
    (run,) = data["runs"]
    assert run["run_id"] == RUN and run["policy"]["digest"] == POLICY.digest()
    assert run["status"] == "paused" and run["violations"] == 1
    assert all(d["matches"] for d in run["decisions"]) and run["decisions_replayed"] >= 8
    json.dumps(data)  # JSON-ready
    assert audit.report.counts["decisions replayed"] == run["decisions_replayed"]


def test_replay_without_a_trust_file_says_the_log_is_unverified(at) -> None:
    w = at("paused")
    w.more_compute(1)
    audit = replay_ledger(w.ledger, run_ids=[RUN], now=w.clock.t)
    assert audit.report.exit_code == EXIT_VIOLATIONS
    assert [v.kind for v in audit.report.violations] == ["training-during-pause"]
    assert any(c.name == "log verified" and not c.ok for c in audit.report.checks)
    resumed = at("resumed")
    clean = replay_ledger(resumed.ledger, now=resumed.clock.t)
    assert clean.report.exit_code == EXIT_COULD_NOT_VERIFY and not clean.report.violations


# --- the command line ----------------------------------------------------------------------------


def _verify(w: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SCALEGATE, "verify", "--trust", str(w.trust_file()), "--ledger",
                           str(w.ws.ledger_path), "--no-state", *args],
                          capture_output=True, text=True, timeout=120)


def test_verify_exit_codes_and_json(at) -> None:
    honest, cheat, unwitnessed = at("resumed"), at("paused"), at("running")
    honest.witness()
    cheat.more_compute(1)
    cheat.witness()
    ok = _verify(honest, "--json", "--at", "2026-03-02T00:00:00Z")
    assert ok.returncode == EXIT_OK, ok.stdout + ok.stderr
    data = json.loads(ok.stdout)
    assert data["ok"] and data["runs"][0]["decisions_replayed"] > 0
    bad = _verify(cheat, "--json", "--at", "2026-03-02T00:00:00Z")
    assert bad.returncode == EXIT_VIOLATIONS
    (v,) = json.loads(bad.stdout)["violations"]
    assert v["kind"] == "training-during-pause" and len(v["refs"]) == 2
    assert set(v["refs"][0]) == {"index", "leaf_hash"}
    # No witnessed checkpoint: nothing anchors the log.
    none = _verify(unwitnessed, "--at", "2026-03-02T00:00:00Z")
    assert none.returncode == EXIT_COULD_NOT_VERIFY
    assert "runs replayed" in none.stdout  # the runs are still replayed and shown


def test_verify_terminal_summary_and_html(at, tmp_path: Path) -> None:
    w = at("paused")
    w.more_compute(1)
    w.witness()
    out = tmp_path / "audit.html"
    r = _verify(w, "--html", str(out), "--at", "2026-03-02T00:00:00Z")
    assert r.returncode == EXIT_VIOLATIONS, r.stderr
    assert "training-during-pause" in r.stdout and "runs replayed" in r.stdout
    assert "1 violation found" in r.stdout
    assert out.stat().st_size > 10_000 and "audit report written" in r.stderr
    no_replay = _verify(w, "--no-replay", "--json")
    assert no_replay.returncode == EXIT_OK
    assert json.loads(no_replay.stdout)["runs"] == []
    wrong = _verify(w, "--at", "yesterday")
    assert wrong.returncode == EXIT_COULD_NOT_VERIFY and "RFC 3339" in wrong.stderr


def test_report_command(at, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(report)
    w = at("ceiling")
    runner = CliRunner()
    out = tmp_path / "run.html"
    r = runner.invoke(app, [RUN, "--ledger", str(w.ws.ledger_path), "--html", str(out),
                            "--at", "2026-03-02T00:00:00Z"])
    assert r.exit_code == 0, r.output
    assert "NOT verified" in r.output and out.exists()
    assert "scalegate report: run run-1" in out.read_text()
    w.witness()
    trusted = runner.invoke(app, [RUN, "--ledger", str(w.ws.ledger_path), "--html", str(out),
                                  "--trust", str(w.trust_file()), "--at",
                                  "2026-03-02T00:00:00Z"])
    assert trusted.exit_code == EXIT_OK, trusted.output
    said = " ".join(trusted.output.split())  # rich wraps at the runner's width
    assert "0 violations in the replay" in said and "log verified" in said
    out2 = tmp_path / "run2.html"
    also = runner.invoke(app, [RUN, "--ledger", str(w.ws.ledger_path), "--out", str(out2)])
    assert also.exit_code == 0 and "scalegate report: run run-1" in out2.read_text()
    missing = runner.invoke(app, ["nope", "--ledger", str(w.ws.ledger_path), "--html",
                                  str(tmp_path / "x.html")])
    assert missing.exit_code != 0 and not (tmp_path / "x.html").exists()


def test_demo_ledger_verifies_clean(tmp_path: Path) -> None:
    """A short `scalegate demo` (real model, real Inspect evaluations, the real supervisor),
    witnessed, audits clean with every decision replayed. (The full demo, through its pause
    and resumption, takes minutes; the staged runs above cover that path.)"""
    import io

    pytest.importorskip("torch")
    from rich.console import Console

    from scalegate.audit import Witness, witness_ledger
    from scalegate.audit.runcheck import audit_ledger
    from scalegate.audit.trust import TrustFile
    from scalegate.demo.run import RUN_ID, DemoOptions, run_demo
    from scalegate.ledger.cosignature import CosignatureVerifier
    from scalegate.ledger.keys import SigningKey
    from scalegate.ledger.log import Ledger

    out = io.StringIO()
    assert run_demo(DemoOptions(dir=tmp_path / "demo", steps=40, live=False),
                    Console(file=out, width=120)), out.getvalue()
    keys = tmp_path / "demo" / "keys"
    w = SigningKey.generate("witness.example/w1")
    with Ledger.open(tmp_path / "demo" / "ledger.db") as led:
        led.checkpoint()
        witness_ledger(led, Witness(tmp_path / "w.json", w, {led.origin: SigningKey.load(
            keys / "log.key").vkey}))
        origin = led.origin
    trust = TrustFile.model_validate({
        "log": {"origin": origin, "key": SigningKey.load(keys / "log.key").vkey.text()},
        "witnesses": {w.name: CosignatureVerifier.from_key(w).text()}, "witness_quorum": 1,
        "org_roots": {"demo-lab": [SigningKey.load(keys / "root.key").vkey.text()]}})
    audit = audit_ledger(tmp_path / "demo" / "ledger.db", trust, use_state=False, workers=1)
    assert audit.report.exit_code == EXIT_OK, audit.report.to_json_data()
    run = audit.run(RUN_ID)
    assert run is not None and run.replay is not None and run.replay.decisions
    assert not run.replay.mismatches and run.replay.state.evals


def test_fast_statement_parsing_agrees_with_parse_statement(stages: dict[str, World]) -> None:
    """The collector parses from JSON bytes in one pass; it must read every statement as
    ``parse_statement`` does, and defer to it (and its error) for anything else."""
    from scalegate.audit.runcheck import _parse
    from scalegate.errors import StatementError
    from scalegate.ledger import CheckedEntry
    from scalegate.ledger._entry_check import decode_envelope
    from scalegate.ledger.statements import parse_statement

    kinds = set()
    for e in stages["ceiling"].ledger.entries():
        payload = decode_envelope(e.data)[1]
        audited = CheckedEntry(e.index, e.leaf_hash, e.data, e.kind, e.run_id, e.appended_at,
                               e.signer, None, True, payload)
        fast, slow = _parse(e.kind, audited), parse_statement(payload)
        assert fast.model_dump(by_alias=True) == slow.model_dump(by_alias=True)
        kinds.add(e.kind)
    assert kinds >= {"key", "policy", "run", "compute", "eval", "decision", "checkpoint",
                     "pause", "attestation", "approval", "resume"}
    body = json.loads(payload)
    body["predicate"]["surprise"] = 1
    bad = json.dumps(body).encode()
    audited = CheckedEntry(0, b"\0" * 32, b"", body["predicateType"].split(":")[2], None,
                           None, None, None, True, bad)
    with pytest.raises(StatementError, match="surprise"):
        _parse(audited.kind or "", audited)


def test_collected_records_replay_as_the_ledgers_own_entries(stages: dict[str, World]) -> None:
    """The collector keeps each statement as the record a state keeps; replaying them must
    give what replaying the ledger's own entries (parsed by ``parse_statement``) gives."""
    from scalegate.audit.logcheck import audit_log
    from scalegate.audit.runcheck import RunCollector
    from scalegate.state import Recorded

    for stage in ("paused", "ceiling"):
        w = stages[stage]
        collector = RunCollector()
        audit_log(w.ws.ledger_path, w.trust(), use_state=False, workers=1, on_entry=collector)
        records = sorted(collector.runs[RUN] + collector.org_attestations,
                         key=lambda r: r.ref.index)
        entries = _entries(w)
        assert len(records) == len(entries) and not collector.malformed
        for r, e in zip(records, entries, strict=True):
            assert isinstance(r, Recorded) and type(r.predicate) is type(e.predicate)
            assert (r.ref, r.predicate, r.signer, r.roles) == (e.ref, e.predicate, e.signer,
                                                                e.roles)
        now = w.clock.t + timedelta(hours=1)
        assert replay_run(POLICY, records, RUN, now=now).model_dump() == \
            replay_run(POLICY, entries, RUN, now=now).model_dump()


def test_the_collector_reads_every_statement_as_parse_statement(
        stages: dict[str, World]) -> None:
    """What the collector keeps of each statement is what ``parse_statement`` reads; what
    it cannot read it reports with parse_statement's own message."""
    from scalegate.audit.runcheck import RunCollector, _parse
    from scalegate.errors import StatementError
    from scalegate.ledger import CheckedEntry
    from scalegate.ledger._entry_check import decode_envelope
    from scalegate.ledger.statements import parse_statement

    def collect(kind: str, payload: bytes, index: int = 0) -> RunCollector:
        c = RunCollector()
        c(CheckedEntry(index, bytes([index % 256]) * 32, b"", kind,
                       None if kind == "policy" else RUN, None, None, None, True, payload))
        return c

    kinds: dict[str, bytes] = {}
    for e in stages["ceiling"].ledger.entries():
        if e.kind in ("key", "key-revocation"):
            continue  # the log audit's, not the replay's
        payload = decode_envelope(e.data)[1]
        c = collect(e.kind, payload, e.index)
        (record,) = c.policies or c.runs[RUN]
        slow = parse_statement(payload).predicate
        assert type(record.predicate) is type(slow) and record.predicate == slow
        assert record.ref.index == e.index and record.ref.leaf_hash == (
            bytes([e.index % 256]) * 32).hex()
        kinds[e.kind] = payload
    assert set(kinds) >= {"policy", "run", "compute", "eval", "decision", "checkpoint",
                          "pause", "attestation", "approval", "resume"}
    for kind, payload in kinds.items():
        body = json.loads(payload)
        broken = [
            {**body, "predicate": {**body["predicate"], "surprise": 1}},
            {**body, "subject": []},
            {**body, "_type": "https://in-toto.io/Statement/v0.1"},
            {k: v for k, v in body.items() if k != "_type"},
            {("type_" if k == "_type" else k): v for k, v in body.items()},
            {**body, "type_": body["_type"]},
            {**body, "predicateType": "urn:scalegate:nothing:v1"},
            {k: v for k, v in body.items() if k != "predicate"},
        ]
        for bad in [*(json.dumps(b).encode() for b in broken), payload[:-1], b"[]"]:
            with pytest.raises(StatementError) as slow_error:
                parse_statement(bad)
            with pytest.raises(StatementError, match=re.escape(slow_error.value.message)):
                _parse(kind, CheckedEntry(0, b"\0" * 32, b"", kind, None, None, None, None,
                                          True, bad))
            c = collect(kind, bad)
            assert [m for _, m, _ in c.malformed] == [slow_error.value.message]
            assert not c.runs and not c.policies
    # Odd but valid JSON is read alike (the last of duplicate keys, numbers as strings, an
    # offset time); what only parse_statement reads (a byte-order mark) it is left to.
    text = kinds["compute"].decode()
    as_string = text.replace('"step":', '"step":"', 1).replace(',"tokens"', '","tokens"', 1)
    for odd in (text.replace('"step":', '"step":0,"step":', 1), as_string,
                text.replace('Z"', '+02:00"', 1), "\ufeff" + text):
        (record,) = collect("compute", odd.encode()).runs[RUN]
        assert record.predicate == parse_statement(odd.encode()).predicate


def test_the_audit_leaves_the_garbage_collector_as_it_found_it(at) -> None:
    """The cyclic collector waits while audits run (nested or in threads: until the last
    ends); what they made is then in the oldest generation; a process's own frozen
    objects stay frozen."""
    import gc

    from scalegate.audit.runcheck import _no_full_collections

    w = at("resumed")
    assert gc.isenabled() and gc.get_freeze_count() == 0
    thresholds = gc.get_threshold()
    with _no_full_collections():
        assert not gc.isenabled()
        with _no_full_collections():
            pass
        assert not gc.isenabled()  # still held by the outer one
        made = [[i] for i in range(10_000)]  # tracked objects, young
    assert gc.isenabled() and gc.get_freeze_count() == 0 and gc.get_threshold() == thresholds
    assert gc.get_count()[0] < 1_000  # not left in the youngest generation
    assert gc.is_tracked(made[0])
    with pytest.raises(RuntimeError), _no_full_collections():
        raise RuntimeError("boom")
    assert gc.isenabled()
    assert w.audit().report.ok
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.freeze()  # a process that keeps objects frozen (a pre-forking server)
    try:
        frozen = gc.get_freeze_count()
        with _no_full_collections():
            pass
        assert gc.get_freeze_count() == frozen and gc.isenabled()
    finally:
        gc.unfreeze()
    gc.disable()  # and one that runs without the collector
    try:
        with _no_full_collections():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
