"""Shared fixtures for the framework integrations: a real workspace (keys, ledger), one
torch thread, the example policy, running an example in-process, and the officers'
resumption."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from scalegate.demo.workspace import Workspace, create_workspace

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# The examples share the plain-loop example's policy: evaluate held-out accuracy from
# ~4e7 FLOP, every 2x (1.5x after the 0.5 alert), pause at 0.95 without the CISO's safeguard.
POLICY = EXAMPLES / "torch_loop_policy.yaml"


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: models this small only lose time to a busy second core."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def ws(tmp_path: Path):
    workspace = create_workspace(tmp_path / "ws")
    yield workspace
    workspace.close()


def run_example(name: str, *args: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run ``examples/<name>`` in this process (imports are paid once), as
    ``python examples/<name> ARGS`` would; its globals, also when it exits."""
    path = EXAMPLES / name
    monkeypatch.setattr(sys, "argv", [str(path), *args])
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(path)}
    code = compile(path.read_text(), str(path), "exec")
    try:
        exec(code, namespace)
    except SystemExit as stop:
        namespace["__exit__"] = stop.code
    return namespace


def resume_run(ws: Workspace, run_id: str) -> None:
    """The CISO attests the safeguard; the RSO and a board member approve; the trainer resumes."""
    from scalegate.governance import approve, attest, resume
    from scalegate.policy import load_policy

    attest(ws.ledger, ws.key("ciso"), "security-level-demo", policy=load_policy(POLICY),
           evidence=b"weights are encrypted at rest")
    approve(ws.ledger, ws.key("rso"), run_id, "the security safeguard is attested")
    approve(ws.ledger, ws.key("board"), run_id, "agreed")
    resume(ws.ledger, ws.key("trainer"), run_id)


def replayed(ws: Workspace, run_id: str) -> int:
    """Every decision of the run replays from the log to the same verdict and rules."""
    from scalegate.audit.replay import replay_decisions
    from scalegate.policy import load_policy
    from scalegate.runs import run_log_entries, to_entries

    entries = to_entries(run_log_entries(ws.ledger, run_id), ws.ledger.registry())
    results = replay_decisions(load_policy(POLICY), entries, run_id)
    assert all(r.matches for r in results), [r for r in results if not r.matches]
    return len(results)
