"""Publishing a policy: signed by one of the approvers it names (governance.policy_change),
cited by the runs under it, and required by a trust file that says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scalegate.audit.logcheck import audit_log
from scalegate.audit.trust import load_trust
from scalegate.demo.workspace import Workspace, create_workspace
from scalegate.errors import RunError
from scalegate.governance import publish_policy
from scalegate.ledger.statements import PolicyPredicate
from scalegate.policy import bundled_text, describe_quorum, load_policy, parse_policy
from scalegate.runs import load_state
from scalegate.supervisor import Supervisor

DEMO = load_policy("demo")  # governance.policy_change: {any_of: [rso, board]}
EXE = str(Path(sys.executable).with_name("scalegate"))


@pytest.fixture()
def ws(tmp_path: Path):
    workspace = create_workspace(tmp_path / "ws")
    yield workspace
    workspace.close()


def _cli(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "policy", "publish", *args, "--ledger", str(ws.ledger_path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def _policy_entries(ws: Workspace) -> list[tuple[int, str | None]]:
    return [(e.index, e.signer) for e in ws.ledger.entries(kind="policy")]


def test_an_approver_publishes_once_and_the_run_cites_it(ws: Workspace) -> None:
    ref, new = publish_policy(ws.ledger, ws.key("rso"), DEMO)
    assert new and _policy_entries(ws) == [(ref.index, ws.key("rso").vkey.keyid)]
    entry = ws.ledger.entry(ref.index)
    assert isinstance(entry.statement.predicate, PolicyPredicate)
    assert entry.statement.predicate.digest == DEMO.digest()
    again, new = publish_policy(ws.ledger, ws.key("board"), DEMO)
    assert (again, new) == (ref, False)  # the same document: its entry, nothing written
    sup = Supervisor.open("run-1", DEMO, ws.ledger, ws.key("trainer"), compute_every=1)
    sup.step(tokens=10, flop=1e9)
    sup.flush()
    run = load_state(ws.ledger, "run-1").run
    assert run is not None and run.predicate.policy.ref == ref
    assert len(_policy_entries(ws)) == 1  # the supervisor did not publish its own copy


def test_a_key_without_an_approver_role_is_refused_and_nothing_is_written(
        ws: Workspace) -> None:
    before = ws.ledger.size
    with pytest.raises(RunError) as exc:
        publish_policy(ws.ledger, ws.key("trainer"), DEMO)
    assert "holds trainer" in exc.value.message and "rso or board" in exc.value.message
    assert ws.ledger.size == before


def test_the_command(ws: Workspace) -> None:
    ws.ledger.close()  # the commands open it themselves
    done = _cli(ws, "demo", "--key", str(ws.root / "keys" / "ciso.key"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "ciso" in done.stderr and "rso or board" in done.stderr
    done = _cli(ws, "demo", "--key", str(ws.root / "keys" / "rso.key"))
    assert done.returncode == 0, done.stderr
    assert "published demo" in done.stdout and "signed by demo-lab/rso" in done.stdout
    done = _cli(ws, "demo", "--key", str(ws.root / "keys" / "board.key"))
    assert done.returncode == 0 and "already published" in done.stdout
    done = _cli(ws, "no-such-policy", "--key", str(ws.root / "keys" / "rso.key"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "no-such-policy" in done.stderr


def test_the_workspace_trust_file_requires_an_approver(ws: Workspace, tmp_path: Path) -> None:
    """A trainer that publishes its own policy is reported (wrong-role); an approver's
    publication is not."""
    trust = load_trust(ws.root / "trust.yaml")
    assert trust.allowed_roles("policy") == frozenset({"rso", "board"})
    Supervisor.open("self-published", DEMO, ws.ledger, ws.key("trainer")).flush()
    (own,) = _policy_entries(ws)
    report = audit_log(ws.ledger_path, trust, use_state=False, workers=1)
    wrong = [v for v in report.violations if v.kind == "wrong-role"]
    assert [r.index for v in wrong for r in v.refs] == [own[0]]

    other = create_workspace(tmp_path / "other")
    try:
        publish_policy(other.ledger, other.key("board"), DEMO)
        Supervisor.open("approved", DEMO, other.ledger, other.key("trainer")).flush()
        report = audit_log(other.ledger_path, load_trust(other.root / "trust.yaml"),
                           use_state=False, workers=1)
        assert not [v for v in report.violations if v.kind == "wrong-role"]
    finally:
        other.close()


def test_an_approver_publishes_over_a_trainers_copy_and_new_runs_cite_it(
        ws: Workspace) -> None:
    """The trainer published the document itself (nobody had); the approver's publication
    still goes in, and a run registered afterwards cites the approved entry."""
    Supervisor.open("early", DEMO, ws.ledger, ws.key("trainer")).flush()
    (own,) = _policy_entries(ws)
    ref, new = publish_policy(ws.ledger, ws.key("rso"), DEMO)
    assert new and ref.index != own[0]
    assert publish_policy(ws.ledger, ws.key("board"), DEMO) == (ref, False)
    Supervisor.open("later", DEMO, ws.ledger, ws.key("trainer")).flush()
    later = load_state(ws.ledger, "later").run
    assert later is not None and later.predicate.policy.ref == ref


def test_publish_reads_policy_change_as_explain_does(ws: Workspace) -> None:
    """Whose approval publishes a policy is what `policy explain` says: one of the roles of
    policy_change's one clause; another approver role of the policy does not do."""
    text = bundled_text("demo").replace("policy_change: {any_of: [rso, board]}",
                                        "policy_change: {any_of: [board]}")
    board_only = parse_policy(text, source="board-only.yaml")
    assert describe_quorum(board_only.governance.policy_change) == "board"
    before = ws.ledger.size
    with pytest.raises(RunError) as exc:
        publish_policy(ws.ledger, ws.key("rso"), board_only)
    assert "holds rso" in exc.value.message and "names board as who approves" in exc.value.message
    assert ws.ledger.size == before
    ref, new = publish_policy(ws.ledger, ws.key("board"), board_only)
    assert new and _policy_entries(ws) == [(ref.index, ws.key("board").vkey.keyid)]
