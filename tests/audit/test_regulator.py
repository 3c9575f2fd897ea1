"""Issue 15 §3: the regulator's audit. A run registered under its lab's own policy is also
held to policies it did not choose (``verify --policy``): thresholds reached, notifications
owed and whether the log shows them in time, training inside a moratorium window. Findings
carry the policy they come from, and the lab's own decisions are not judged under it.

The run is a real supervised one under the audit tests' policy (see :mod:`runworld`); the
policies it is held to are small laws shaped like the EU AI Act with low thresholds, and
the bundled ``eu-ai-act`` and ``fli-pause-2023`` themselves."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalegate.audit import EXIT_OK, EXIT_VIOLATIONS, HeldTo
from scalegate.audit.regulator import PolicyFinding
from scalegate.audit.report_html import render_html
from scalegate.audit.runcheck import LedgerAudit
from scalegate.cli import app
from scalegate.ledger.statements import NotificationPredicate, Ref, sha256_hex
from scalegate.policy import Policy, load_policy, parse_policy

from .runworld import RUN, T0, World, new_world

LAW = """
id: test-law
version: "1"
kind: law
title: a law shaped like the EU AI Act, with a low threshold
compute:
  regimes:
    cumulative: {include: [pretraining, fine-tuning, rl, synthetic-data, merged-weights]}
  effective: {regime: cumulative, multiplier: 1x, source: the law counts raw FLOP}
  thresholds:
    - {id: systemic-planned, regime: cumulative, flop: 5e12, basis: planned, action: notify,
       recipient: AI Office, deadline: 14d, obligation: art52}
    - {id: systemic-reached, regime: cumulative, flop: 5e12, basis: reached, action: notify,
       recipient: AI Office, deadline: 14d, obligation: art52}
governance:
  roles: [compliance-officer]
  resumption: {quorum: {any_of: [compliance-officer]}}
  policy_change: {any_of: [compliance-officer]}
"""


def moratorium(start: str, end: str) -> Policy:
    """A pause letter with a low compute line, in force from ``start`` to ``end``."""
    return parse_policy(f"""
id: test-letter
version: "1"
kind: letter
title: a pause letter with a low line
compute:
  regimes:
    training: {{include: [pretraining, fine-tuning, rl]}}
  effective: {{regime: training, multiplier: 1x, source: none}}
  thresholds:
    - {{id: big-model, regime: training, flop: 5e12, basis: reached, action: pause,
       window: {{start: "{start}", end: "{end}"}}}}
governance:
  roles: [board]
  resumption: {{quorum: {{any_of: [board]}}}}
  policy_change: {{any_of: [board]}}
""", source="test-letter")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A run evaluated at its first milestones up to the alert (~1.6e13 FLOP): it crossed
    the law's 5e12 line; it owes the lab's own notification (1e13) too."""
    w = new_world(tmp_path_factory.mktemp("held"))
    w.train(lambda d: d.verdict == "alert")
    yield w
    w.close()


@pytest.fixture
def world(running: World, tmp_path: Path):
    w = running.copy(tmp_path)
    yield w
    w.close()


def law() -> Policy:
    return parse_policy(LAW, source="test-law")


def held(audit: LedgerAudit, policy_id: str) -> HeldTo:
    (h,) = [h for h in audit.held_to if h.id == policy_id]
    return h


def finding(h: HeldTo, kind: str, subject: str) -> PolicyFinding:
    (f,) = [f for f in h.findings if f.kind == kind and f.subject == subject]
    return f


def meet_own_obligation(w: World) -> Ref:
    """The lab meets its own policy's notification (to its own recipient), in time."""
    return w.notify("demo-notify", w.clock.t)


def notify_law(w: World, sent_at, obligation: str = "art52", recipient: str = "AI Office") -> Ref:
    decision = w.state().decisions[-1].ref
    return w.sign(NotificationPredicate(
        run_id=RUN, obligation=decision, obligation_id=obligation, recipient=recipient,
        sent_at=sent_at, content_digest=sha256_hex("art52 notice")))


def test_the_threshold_crossed_and_the_notification_owed(world: World) -> None:
    meet_own_obligation(world)
    audit = world.audit(held_to=[law()])
    assert audit.report.exit_code == EXIT_OK, audit.report.violations
    h = held(audit, "test-law")
    planned = finding(h, "threshold", "systemic-planned")
    assert planned.status == "not-reached" and "declares no planned compute" in planned.message
    reached = finding(h, "threshold", "systemic-reached")
    crossing = next(c for c in world.state().compute
                if c.predicate.flop_by_phase["pretraining"] >= 5e12)
    assert reached.status == "reached" and reached.refs == [crossing.ref]
    assert reached.when == crossing.predicate.at
    owed = finding(h, "notification", "art52")
    assert owed.status == "due" and owed.deadline == reached.when + timedelta(days=14)
    assert owed.violation is None and not h.violations
    # The lab's decisions are not replayed under the law: nothing is a "decision mismatch".
    assert all(v.policy is None for v in audit.report.violations)
    check = next(c for c in audit.report.checks if c.name == "held to test-law 1")
    assert check.ok and "1 threshold(s) reached" in check.detail and "not yet due" in check.detail


def test_a_notification_owed_under_the_law_and_never_sent(world: World) -> None:
    """The lab met its own policy's notification; the law's, to the AI Office, never: a
    violation labelled with the law, and exit 3 — the lab's own audit alone is clean."""
    meet_own_obligation(world)
    deadline = held(world.audit(held_to=[law()]), "test-law").findings[-1].deadline
    assert deadline is not None
    after = deadline + timedelta(hours=1)
    assert world.audit(now=after).report.exit_code == EXIT_OK  # its own policy: clean
    audit = world.audit(now=after, held_to=[law()])
    assert audit.report.exit_code == EXIT_VIOLATIONS
    (v,) = audit.report.violations
    assert v.kind == "notification-missed" and v.policy == "test-law" and v.run_id == RUN
    assert v.message.startswith("under test-law 1: obligation art52 (notify AI Office")
    assert "no notification is recorded" in v.message
    missed = finding(held(audit, "test-law"), "notification", "art52")
    assert missed.status == "missed" and missed.violation == "notification-missed"
    assert not next(c for c in audit.report.checks if c.name == "held to test-law 1").ok
    data = audit.to_json_data()
    assert data["exit_code"] == EXIT_VIOLATIONS and data["violations"][0]["policy"] == "test-law"
    (section,) = data["held_to"]
    assert section["id"] == "test-law" and section["label"] == "test-law 1"
    assert {f["status"] for f in section["findings"]} >= {"reached", "missed", "not-reached"}


def test_a_notification_logged_in_time_as_a_witness_shows(world: World) -> None:
    meet_own_obligation(world)
    n = notify_law(world, world.clock.t)
    audit = world.audit(now=world.clock.t + timedelta(days=30), held_to=[law()])
    assert audit.report.exit_code == EXIT_OK, audit.report.violations
    met = finding(held(audit, "test-law"), "notification", "art52")
    assert met.status == "met" and met.refs[-1] == n and "as a witness's cosignature" in met.message


def test_a_notification_to_the_recipient_under_another_name_counts(world: World) -> None:
    meet_own_obligation(world)
    notify_law(world, world.clock.t, obligation="eu-notice")  # the lab's own name for it
    audit = world.audit(now=world.clock.t + timedelta(days=30), held_to=[law()])
    assert finding(held(audit, "test-law"), "notification", "art52").status == "met"


def test_on_the_operators_word_only_is_said_apart(world: World) -> None:
    """No witnessed checkpoint shows when the law's notification was logged: listed as met
    on the log operator's word, not as met, and not a violation."""
    meet_own_obligation(world)
    deadline = held(world.audit(held_to=[law()]), "test-law").findings[-1].deadline
    n = notify_law(world, deadline - timedelta(days=1))
    world.clock.jump(deadline + timedelta(days=1) - world.clock.t)
    audit = world.audit(now=deadline + timedelta(days=2), held_to=[law()])
    assert audit.report.exit_code == EXIT_OK
    said = finding(held(audit, "test-law"), "notification", "art52")
    assert said.status == "operator-word" and said.refs[-1] == n
    assert "no witnessed checkpoint shows" in said.message


def test_logged_late_by_a_log_whose_clock_was_set_back(world: World) -> None:
    """The notification claims to be in time and the log's clock agrees; a trusted witness
    cosigned, after the deadline, a checkpoint that did not contain it."""
    meet_own_obligation(world)
    deadline = held(world.audit(held_to=[law()]), "test-law").findings[-1].deadline
    world.more_compute(1)
    world.witness(at=deadline + timedelta(days=2))  # the witness's own clock
    assert world.clock.t < deadline  # the operator's clock
    n = notify_law(world, deadline - timedelta(hours=1))
    audit = world.audit(now=deadline + timedelta(days=8), witness_at=deadline + timedelta(days=3),
                        held_to=[law()])
    (v,) = [v for v in audit.report.violations if v.policy == "test-law"]
    assert v.kind == "notification-missed" and v.refs[-1] == n
    assert "did not yet contain it" in v.message


def test_the_bundled_eu_ai_act_loads_by_name_and_finds_a_small_run_below_it(
        world: World) -> None:
    meet_own_obligation(world)
    audit = world.audit(held_to=[load_policy("eu-ai-act")])
    assert audit.report.exit_code == EXIT_OK
    h = held(audit, "eu-ai-act")
    assert h.label == "eu-ai-act 2024/1689" and h.kind == "law" and h.runs == 1
    assert [(f.subject, f.status) for f in h.findings] == [
        ("systemic-risk-planned", "not-reached"), ("systemic-risk-reached", "not-reached")]
    assert "of the 1e+25 FLOP threshold" in h.findings[1].message


def test_training_inside_a_moratorium_window(world: World) -> None:
    meet_own_obligation(world)
    letter = moratorium(str((T0 - timedelta(days=1)).date()), str((T0 + timedelta(days=60)).date()))
    audit = world.audit(held_to=[letter])
    assert audit.report.exit_code == EXIT_VIOLATIONS
    (v,) = audit.report.violations
    assert v.kind == "moratorium-training" and v.policy == "test-letter"
    assert "trained past threshold big-model" in v.message and "inside its window" in v.message
    f = finding(held(audit, "test-letter"), "moratorium", "big-model")
    assert f.status == "breached"
    # The first statement past the line is the one that crossed it.
    crossing = next(c for c in world.state().compute
                if c.predicate.flop_by_phase["pretraining"] > 5e12)
    assert f.refs[0] == crossing.ref


def test_a_window_that_closed_before_the_run_is_respected(world: World) -> None:
    meet_own_obligation(world)
    letter = moratorium("2023-03-29", "2023-09-29")
    audit = world.audit(held_to=[letter, load_policy("fli-pause-2023")])
    assert audit.report.exit_code == EXIT_OK, audit.report.violations
    f = finding(held(audit, "test-letter"), "moratorium", "big-model")
    assert f.status == "respected" and "2023-03-29" in f.message
    fli = held(audit, "fli-pause-2023")
    assert [(x.subject, x.status) for x in fli.findings] == [("gpt4-proxy", "not-reached")]


def test_post_dated_training_logged_inside_the_window_is_caught(world: World) -> None:
    """A lab dates its compute after the moratorium ends, but a witness saw the log before
    and after those entries, inside the window: they were logged (so trained) in it."""
    meet_own_obligation(world)
    end = world.clock.t + timedelta(days=10)
    letter = moratorium(str((T0 - timedelta(days=400)).date()), end.isoformat())
    world.witness()
    last = world.state().latest_compute.predicate
    flop = last.flop_by_phase["pretraining"]
    claimed = end + timedelta(days=1)
    world.compute(last.step + 1, flop + 1e11, at=claimed)
    world.compute(last.step + 2, flop + 2e11, at=claimed + timedelta(hours=1))
    # Judged on the later statements only: the honest ones before were in the window too,
    # so look at the finding's span, which starts at the crossing and ends at the last.
    audit = world.audit(now=end + timedelta(days=30), held_to=[letter])
    f = finding(held(audit, "test-letter"), "moratorium", "big-model")
    assert f.status == "breached"
    last_ref = world.state().latest_compute.ref
    assert f.refs[-1] == last_ref


def test_only_post_dated_statements_are_judged_by_their_logging(world: World) -> None:
    """The same post-dated statements, against a window that opened after the honest
    training: only the witnesses' times put them inside it."""
    meet_own_obligation(world)
    opens = world.clock.t + timedelta(minutes=10)
    end = opens + timedelta(days=10)
    letter = moratorium(opens.isoformat(), end.isoformat())
    world.clock.jump(timedelta(minutes=20))
    world.witness()  # the window is open: the log is seen before the new entries
    last = world.state().latest_compute.predicate
    flop = last.flop_by_phase["pretraining"]
    n = world.compute(last.step + 1, flop + 1e11, at=end + timedelta(days=1))
    audit = world.audit(now=end + timedelta(days=30), held_to=[letter])
    f = finding(held(audit, "test-letter"), "moratorium", "big-model")
    assert f.status == "breached" and f.refs == [n]
    assert "as witnesses show" in f.message


def test_the_html_report_has_a_section_per_policy(world: World) -> None:
    meet_own_obligation(world)
    deadline = held(world.audit(held_to=[law()]), "test-law").findings[-1].deadline
    audit = world.audit(now=deadline + timedelta(hours=1), held_to=[law()])
    page = render_html(audit)
    assert '<section class="held-to"><h2>Held to test-law 1 (law)' in page
    assert "✗ 1 violation" in page and "missed" in page
    embedded = page.split('id="scalegate-audit">', 1)[1].split("</script>", 1)[0]
    assert "held_to" in embedded


def test_the_command_line(world: World, tmp_path: Path) -> None:
    meet_own_obligation(world)
    world.witness()
    law_file = tmp_path / "test-law.yaml"
    law_file.write_text(LAW)
    trust = world.trust_file()
    ledger = str(world.ws.ledger_path)
    world.ledger.close()
    after = (world.clock.t + timedelta(days=20)).isoformat()
    args = ["verify", "--ledger", ledger, "--trust", str(trust), "--no-state", "--at", after]
    res = CliRunner().invoke(app, [*args, "--policy", str(law_file), "--policy", "eu-ai-act",
                                   "--json"])
    assert res.exit_code == EXIT_VIOLATIONS, res.output
    data = json.loads(res.stdout)
    assert [h["id"] for h in data["held_to"]] == ["test-law", "eu-ai-act"]
    assert [v["policy"] for v in data["violations"]] == ["test-law"]
    text = CliRunner().invoke(app, [*args, "--policy", str(law_file)])
    assert text.exit_code == EXIT_VIOLATIONS
    said = " ".join(text.stdout.split())
    assert "held to test-law 1 (law)" in said and "notification art52" in said
    unknown = CliRunner().invoke(app, [*args, "--policy", "eu-ai-acts"])
    assert unknown.exit_code == 4 and "no bundled policy named 'eu-ai-acts'" in unknown.output
    assert "Traceback" not in unknown.output
    world.ws.ledger = world.ledger.open(ledger, now=world.clock)


def test_the_lab_meets_the_laws_obligation_with_notify(world: World) -> None:
    """`notify --policy LAW`: the obligation the law creates (not the run's own policy) is
    met, citing the compute statement that reached the law's threshold; the audit held to
    the law then finds it met, and a second notice or an obligation the law does not create
    is refused."""
    from scalegate.errors import RunError
    from scalegate.governance import notify

    meet_own_obligation(world)
    key = world.ws.key("trainer")
    with pytest.raises(RunError, match="owes no obligation 'art52'"):
        notify(world.ledger, key, RUN, "art52", evidence=b"notice", now=world.clock.t)
    ref = notify(world.ledger, key, RUN, "art52", evidence=b"notice", now=world.clock.t,
                 held_to=law())
    note = world.ledger.entry(ref.index).statement.predicate
    reached = finding(held(world.audit(held_to=[law()]), "test-law"), "threshold",
                      "systemic-reached")
    assert note.obligation == reached.refs[0] and note.recipient == "AI Office"
    deadline = reached.when + timedelta(days=14)
    audit = world.audit(now=deadline + timedelta(days=1), held_to=[law()])
    assert audit.report.exit_code == EXIT_OK, audit.report.violations
    assert finding(held(audit, "test-law"), "notification", "art52").status == "met"
    with pytest.raises(RunError,
                       match=r"owes no open obligation .art52. \((met|operator-word)\)"):
        notify(world.ledger, key, RUN, "art52", evidence=b"again", now=world.clock.t,
               held_to=law())
    with pytest.raises(RunError, match="owes no open obligation 'nothing'"):
        notify(world.ledger, key, RUN, "nothing", evidence=b"x", now=world.clock.t,
               held_to=law())
