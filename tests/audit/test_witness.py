"""The witness: C2SP tlog-witness add-checkpoint semantics over real ledgers, with its own state."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from scalegate.audit.witness import (
    Witness,
    format_add_checkpoint,
    parse_add_checkpoint,
    witness_ledger,
)
from scalegate.cli import _witness
from scalegate.errors import LedgerError, SplitViewDetected, WitnessConflict, WitnessRefused
from scalegate.ledger.checkpoint import Checkpoint, sign_checkpoint
from scalegate.ledger.cosignature import CosignatureVerifier, open_cosigned_checkpoint
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.note import add_signature_lines
from scalegate.ledger.tlog_proof import verify_receipt

from .conftest import ORIGIN, Lab


def _fork(lab: Lab, name: str) -> Ledger:
    """A second ledger with the same log key and history so far: a split view once it grows."""
    return Ledger.open(lab.copy(name), log_key=lab.log_key, now=lab.clock)


def test_cosigns_first_and_consistent_checkpoints(lab: Lab) -> None:
    w = lab.witness(0)
    note = lab.ledger.checkpoint()
    line = w.add_checkpoint(0, [], note)
    cp, found = open_cosigned_checkpoint(add_signature_lines(note, line), lab.log_key.vkey,
                                         [w.verifier], 1, origin=ORIGIN)
    assert found[0].name == "witness.example/w1" and cp.size == lab.ledger.size
    assert w.size(ORIGIN) == cp.size
    assert w.latest(ORIGIN).checkpoint == note  # type: ignore[union-attr]
    lab.compute(5)
    note2 = lab.ledger.checkpoint()
    proof = lab.ledger.consistency_proof(cp.size)
    line2 = w.add_checkpoint(cp.size, proof, note2)
    open_cosigned_checkpoint(add_signature_lines(note2, line2), lab.log_key.vkey, [w.verifier], 1)
    # A fresh Witness object reads the same state back from disk.
    assert lab.witness(0).size(ORIGIN) == cp.size + 5
    # Equal sizes and roots: cosigned again without a proof.
    w.add_checkpoint(cp.size + 5, [], note2)


def test_refusals_carry_the_spec_status(lab: Lab) -> None:
    w = lab.witness(0)
    note = lab.ledger.checkpoint()
    size = lab.ledger.size
    other_log = SigningKey.generate("example.org/other")
    foreign = sign_checkpoint(Checkpoint("example.org/other", size, lab.ledger.root()), other_log)
    forged = sign_checkpoint(Checkpoint(ORIGIN, size, lab.ledger.root()), other_log)
    cases = [
        (lambda: w.add_checkpoint(0, [], foreign), 404,
         "does not witness the log 'example.org/other'; it witnesses 'example.org/scalegate-"
         "audit'"),
        (lambda: w.add_checkpoint(0, [], forged), 403, "no valid signature"),
        (lambda: w.add_checkpoint(size + 1, [], note), 400, "never shrinks"),
        (lambda: w.add_checkpoint(0, [b"\x00" * 32], note), 400, "must be empty"),
        (lambda: w.add_checkpoint(0, [b"\x00" * 32] * 64, note), 400, "at most 63"),
        (lambda: w.add_checkpoint(0, [b"\x00" * 31], note), 400, "32 bytes"),
        (lambda: w.add_checkpoint(0, [], "not a note"), 400, "malformed"),
        (lambda: w.add_checkpoint_request(b"old 01\n\n" + note.encode()), 400, "old <size>"),
        (lambda: w.add_checkpoint_request(b"old 0\n" + note.encode()), 400, "not base64"),
        (lambda: w.add_checkpoint_request(b"old 0\nAAAA\n"), 400, "empty line"),
    ]
    for call, status, message in cases:
        with pytest.raises(WitnessRefused, match=message) as info:
            call()
        assert info.value.status == status, message
    w.add_checkpoint(0, [], note)
    with pytest.raises(WitnessConflict) as conflict:
        w.add_checkpoint(0, [], note)
    assert conflict.value.status == 409 and conflict.value.size == size


def test_split_view_is_refused_and_the_evidence_kept(lab: Lab) -> None:
    w = lab.witness(0)
    base = lab.ledger.size
    w.add_checkpoint(0, [], lab.ledger.checkpoint())
    fork = _fork(lab, "fork.db")
    lab.compute(3)
    fork.append_many([lab.compute_envelope(100 + i) for i in range(4)])
    honest = lab.ledger.checkpoint()
    w.add_checkpoint(base, lab.ledger.consistency_proof(base), honest)
    # The fork extends the same old checkpoint, but not the one the witness now holds.
    fork_note = fork.checkpoint()
    with pytest.raises(SplitViewDetected) as info:
        w.add_checkpoint(base + 3, fork.consistency_proof(base + 3, base + 4), fork_note)
    assert info.value.status == 422 and info.value.exit_code == 3
    assert "evidence #1" in info.value.evidence
    # Same size, other root: the spec's 409, and evidence again.
    fork2 = _fork(lab, "fork2.db")
    lab.compute(1)
    fork2.append(lab.compute_envelope(999))
    lab_note = lab.ledger.checkpoint()
    w.add_checkpoint(base + 3, lab.ledger.consistency_proof(base + 3), lab_note)
    with pytest.raises(SplitViewDetected) as same:
        w.add_checkpoint(base + 4, [], fork2.checkpoint())
    assert same.value.status == 409
    assert "unless the log produces a consistency proof" in info.value.message
    assert "inconsistent with the one this witness cosigned: a split view." in same.value.message
    evidence = lab.witness(0).evidence()
    assert [e["submitted_checkpoint"] for e in evidence] == [fork_note, fork2.checkpoint()]
    # A proof that does not verify is not proof of a fork (a damaged request looks the same);
    # two checkpoints of one size with two roots are.
    assert [e["conclusive"] for e in evidence] == [False, True]
    assert evidence[0]["cosigned_checkpoint"] == honest
    assert w.size(ORIGIN) == base + 4  # the refusals changed nothing
    fork.close()
    fork2.close()


def _race(state: str, key_text: str, vkey: str, old: int, proof: list[bytes], note: str,
          out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    w = Witness(state, SigningKey.parse(key_text), {ORIGIN: vkey})
    try:
        w.add_checkpoint(old, proof, note)
        out.put("ok")
    except WitnessConflict as exc:
        out.put(f"409 {exc.size}")


def test_check_and_persist_are_atomic_across_processes(lab: Lab) -> None:
    w = lab.witness(0)
    base = lab.ledger.size
    w.add_checkpoint(0, [], lab.ledger.checkpoint())
    notes = []
    for _ in range(4):
        lab.compute(1)
        notes.append((lab.ledger.size, lab.ledger.checkpoint()))
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(w.state_path), lab.witnesses[0].text(),
                                             lab.log_key.vkey.text(), base,
                                             lab.ledger.consistency_proof(base, size), note, out))
             for size, note in notes]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = sorted(out.get(timeout=5) for _ in procs)
    assert results[-1] == "ok" and results.count("ok") == 1, results
    winner = w.size(ORIGIN)
    assert winner in {size for size, _ in notes}
    assert all(r == f"409 {winner}" for r in results[:-1]), results


def test_witness_ledger_attaches_cosignatures_that_receipts_carry(lab: Lab) -> None:
    lab.ledger.checkpoint()
    w1, w2 = lab.witness(0), lab.witness(1)
    witness_ledger(lab.ledger, w1)
    stored = witness_ledger(lab.ledger, w2)
    assert stored == lab.ledger.latest_checkpoint()
    receipt = lab.ledger.receipt(3)
    entry = lab.ledger.entry(3).data
    verified = verify_receipt(receipt, entry, lab.log_key.vkey, [w1.verifier, w2.verifier], 2,
                              origin=ORIGIN)
    assert sorted(c.name for c in verified.cosignatures) == ["witness.example/w1",
                                                            "witness.example/w2"]
    # Witnessing again (nothing new) keeps one line per witness.
    again = witness_ledger(lab.ledger, w1)
    assert again.count("— witness.example/w1 ") == 1
    lab.compute(2)
    lab.ledger.checkpoint()
    assert "witness.example/w1" in witness_ledger(lab.ledger, w1)


def test_witness_ledger_needs_a_checkpoint_and_refuses_a_rolled_back_log(lab: Lab) -> None:
    w = lab.witness(0)
    with pytest.raises(LedgerError, match="no checkpoint"):
        witness_ledger(lab.ledger, w)
    old = lab.copy("old.db")
    old_ledger = Ledger.open(old, log_key=lab.log_key)
    lab.compute(2)
    lab.ledger.checkpoint()
    witness_ledger(lab.ledger, w)
    old_ledger.checkpoint()
    with pytest.raises(WitnessRefused, match="older than the one this witness cosigned"):
        witness_ledger(old_ledger, w)
    old_ledger.close()


def test_state_files_belong_to_one_witness(lab: Lab, tmp_path: Path) -> None:
    key_file = tmp_path / "w.key"
    lab.witnesses[0].save(key_file)
    state = tmp_path / "state.json"
    w = Witness.create(state, key_file, {ORIGIN: lab.log_key.vkey.text()})
    with pytest.raises(LedgerError, match="already exists"):
        Witness.create(state, key_file, {ORIGIN: lab.log_key.vkey})
    assert Witness.open(state).verifier == w.verifier
    with pytest.raises(LedgerError, match="belongs to witness"):
        Witness(state, lab.witnesses[1], {ORIGIN: lab.log_key.vkey})
    with pytest.raises(LedgerError, match="no witness state"):
        Witness.open(tmp_path / "none.json")
    state.write_text("{not json")
    with pytest.raises(LedgerError, match="not valid JSON"):
        Witness.open(state)


def test_request_body_round_trip() -> None:
    proof = [bytes([i]) * 32 for i in range(3)]
    body = format_add_checkpoint(20852014, proof, "origin\n1\nAAAA\n\n— x y\n")
    assert body.startswith("old 20852014\n") and "\n\norigin\n" in body
    assert parse_add_checkpoint(body) == (20852014, proof, "origin\n1\nAAAA\n\n— x y\n")


def test_cli_init_cosign_show_and_split_view_exit(lab: Lab, tmp_path: Path) -> None:
    app = typer.Typer()
    app.add_typer(_witness.app, name="witness")
    runner = CliRunner()
    key_file, state = tmp_path / "w.key", tmp_path / "w.json"
    lab.witnesses[0].save(key_file)
    res = runner.invoke(app, ["witness", "init", "--key", str(key_file), "--log",
                              lab.log_key.vkey.text(), "--state", str(state)])
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == CosignatureVerifier.from_key(
        lab.witnesses[0]).text()
    lab.ledger.checkpoint()
    path = lab.copy("cli.db")
    fork = Ledger.open(path, log_key=lab.log_key, now=lab.clock)
    res = runner.invoke(app, ["witness", "cosign", "--ledger", str(lab.path), "--state",
                              str(state)])
    assert res.exit_code == 0, res.output
    assert "— witness.example/w1 " in res.output
    assert json.loads(state.read_text())["logs"][ORIGIN]["size"] == lab.ledger.size
    lab.compute(2)
    lab.ledger.checkpoint()
    assert runner.invoke(app, ["witness", "cosign", "--ledger", str(lab.path), "--state",
                               str(state)]).exit_code == 0
    fork.append_many([lab.compute_envelope(500 + i) for i in range(2)])
    fork.checkpoint()
    fork.close()
    res = runner.invoke(app, ["witness", "cosign", "--ledger", str(path), "--state", str(state)])
    assert res.exit_code == 3, res.output
    res = runner.invoke(app, ["witness", "show", "--state", str(state)])
    assert res.exit_code == 0 and "1 split-view evidence record" in res.output
    assert "(1 conclusive, 0 unproven" in res.output and "[unproven]" not in res.output
    res = runner.invoke(app, ["witness", "add-checkpoint", "--state", str(state)],
                        input=format_add_checkpoint(0, [], lab.ledger.checkpoint()))
    assert res.exit_code == 1 and res.output.splitlines()[0] == str(lab.ledger.size)
    # The log's side: the request for a witness that last cosigned a smaller size.
    cosigned = lab.ledger.size
    lab.compute(3)
    lab.ledger.checkpoint()
    req = runner.invoke(app, ["witness", "request", "--ledger", str(lab.path), "--old",
                              str(cosigned)])
    assert req.exit_code == 0 and req.output.startswith(f"old {cosigned}\n"), req.output
    res = runner.invoke(app, ["witness", "add-checkpoint", "--state", str(state)],
                        input=req.output)
    assert res.exit_code == 0 and res.output.startswith("— witness.example/w1 "), res.output
    bad = runner.invoke(app, ["witness", "request", "--ledger", str(lab.path), "--old", "999"])
    assert bad.exit_code == 1 and "is not a size up to the latest checkpoint" in bad.output
