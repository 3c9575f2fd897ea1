"""`scalegate verify` end to end through its CLI: a ledger audit, and offline receipts from
`scalegate ledger prove`; exit status 0 ok, 3 violations found, 4 could not verify."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from scalegate.cli import _ledger, _verify
from scalegate.ledger.keys import SigningKey

from .conftest import ORIGIN, Lab

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("verify")(_verify.verify)
    app.add_typer(_ledger.app, name="ledger")
    return app


def _run(*args: str, input: str | None = None) -> tuple[int, str]:
    res = runner.invoke(_app(), list(args), input=input)
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout


@pytest.fixture
def trust_file(lab: Lab) -> Path:
    path = lab.dir / "trust.yaml"
    path.write_text(lab.trust().to_yaml(), encoding="utf-8")
    return path


def _prove(lab: Lab, index: int) -> tuple[Path, Path]:
    """A receipt from `ledger prove`, and the entry as `ledger show --json` prints it."""
    code, receipt = _run("ledger", "prove", str(index), "--ledger", str(lab.path))
    assert code == 0, receipt
    code, shown = _run("ledger", "show", "--ledger", str(lab.path), "--json", "--start",
                       str(index), "--limit", "1")
    assert code == 0, shown
    r, e = lab.dir / f"r{index}.txt", lab.dir / f"e{index}.json"
    r.write_text(receipt, encoding="utf-8")
    e.write_text(shown, encoding="utf-8")  # the `ledger show --json` line holds the envelope
    return r, e


def test_verify_a_ledger_ok_then_violations(lab: Lab, trust_file: Path) -> None:
    lab.pause_and_approve()
    lab.checkpoint()
    state = lab.dir / "state.json"
    # The lab's runs are not under a published policy: check the log only.
    base = ["verify", "--no-replay", "--ledger", str(lab.path), "--trust", str(trust_file),
            "--state", str(state)]
    code, out = _run(*base)
    assert code == 0, out
    assert "nothing violated" in out and "witnessed checkpoint" in out
    code, out = _run(*base, "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["exit_code"] == 0
    assert {c["name"] for c in data["checks"]} >= {"tree recomputed from the entries",
                                                   "envelopes and signatures"}
    log = f"{ORIGIN} {lab.log_key.vkey.text()}"
    assert json.loads(state.read_text())["logs"][log]["checkpoints"][0]["size"] == \
        lab.ledger.size
    lab.ledger.close()
    con = sqlite3.connect(lab.path)
    con.execute("UPDATE entries SET data = replace(data, 'a', 'b') WHERE idx = 7")
    con.commit()
    con.close()
    code, out = _run(*base, "--json")
    data = json.loads(out)
    assert code == 3 and not data["ok"]
    # The altered entry no longer hashes to its leaf, is no envelope, and the tree it gives
    # is neither the signed one nor the one this auditor accepted before.
    assert data["violation_counts"] == {"leaf-hash": 1, "envelope-malformed": 1,
                                        "tree-root": 1, "split-view": 1}
    assert data["violations"][0]["refs"][0]["index"] == 7
    code, out = _run(*base)
    assert code == 3 and "leaf-hash" in out and "violations found" in out


def test_verify_could_not_verify(lab: Lab, trust_file: Path) -> None:
    lab.checkpoint(cosigners=(0,))
    code, out = _run("verify", "--no-replay", "--ledger", str(lab.path), "--trust", str(trust_file),
                     "--no-state")
    assert code == 4 and "could not verify" in out
    code, out = _run("verify", "--ledger", str(lab.path), "--trust", str(lab.dir / "no.yaml"),
                     "--json")
    assert code == 4 and "no trust file" in json.loads(out)["error"]
    bad = lab.dir / "bad.yaml"
    bad.write_text("log: {origin: x}\n")
    code, out = _run("verify", "--ledger", str(lab.path), "--trust", str(bad))
    assert code == 4


def _stderr(*args: str) -> tuple[int, str]:
    res = runner.invoke(_app(), list(args), env={"COLUMNS": "300", "NO_COLOR": "1"})
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stderr


def test_trust_file_mistakes_are_one_clear_message(lab: Lab, trust_file: Path) -> None:
    """An empty org_roots says what it needs; a binary file says it is not YAML text; the
    listed problems and the hint are lines of their own (no line starting with a space)."""
    empty = lab.dir / "empty-roots.yaml"
    text = trust_file.read_text(encoding="utf-8")
    head, _, rest = text.partition("org_roots:")
    tail = rest.split("\nroles:", 1)
    empty.write_text(head + "org_roots: {}\n" + ("roles:" + tail[1] if len(tail) > 1 else ""),
                     encoding="utf-8")
    code, err = _stderr("verify", "--ledger", str(lab.path), "--trust", str(empty))
    assert code == 4 and "Traceback" not in err
    assert "Dictionary should have" not in err
    assert ("org_roots: no organisation is listed; a trust file needs at least one "
            "organisation with its root verifier keys") in err
    lines = err.rstrip("\n").split("\n")
    assert lines[0] == f"error: {empty}: the trust file is invalid (1 problem):"
    assert lines[1].startswith(f"  {empty}:")
    assert lines[-1] == ("Fix each problem listed; see `scalegate verify --help` for the "
                         "format.")

    binary = lab.dir / "trust.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    code, err = _stderr("verify", "--ledger", str(lab.path), "--trust", str(binary))
    assert code == 4 and "Traceback" not in err and "<unicode string>" not in err
    assert f"trust file {binary} is not a YAML text file" in " ".join(err.split())


def test_a_receipt_verifies_offline(lab: Lab, trust_file: Path) -> None:
    lab.pause_and_approve()
    lab.checkpoint()
    receipt, entry = _prove(lab, lab.refs["pause"].index)  # a pause declaration, offline
    code, out = _run("verify", "--trust", str(trust_file), "--receipt", str(receipt),
                     "--entry", str(entry), "--no-state", "--json")
    data = json.loads(out)
    assert code == 0, data
    assert data["checkpoint"]["cosigned_by"] == ["witness.example/w1", "witness.example/w2"]
    assert "a pause statement of run run-1, signed by acme/trainer" in json.dumps(data["checks"])
    code, out = _run("verify", "--trust", str(trust_file), "--receipt", str(receipt),
                     "--entry", str(entry), "--no-state")
    assert code == 0 and "inclusion of the entry" in out
    # The bare envelope, in any JSON layout, is the same entry.
    bare = lab.dir / "bare.json"
    bare.write_text(json.dumps(json.loads(entry.read_text())["envelope"], indent=2))
    code, _ = _run("verify", "--trust", str(trust_file), "--receipt", str(receipt),
                   "--entry", str(bare), "--no-state")
    assert code == 0
    # The fields a reader sees beside the envelope must say what the envelope says.
    line = json.loads(entry.read_text())
    for field, value in (("statement", {**line["statement"], "predicateType": "x"}),
                         ("leaf_hash", "00" * 32), ("kind", "approval"),
                         ("signer", "acme/rso+00000000")):
        forged = lab.dir / f"forged-{field}.json"
        forged.write_text(json.dumps({**line, field: value}))
        code, out = _run("verify", "--trust", str(trust_file), "--receipt", str(receipt),
                         "--entry", str(forged), "--no-state", "--json")
        assert code == 4, out
        (check,) = [c for c in json.loads(out)["checks"] if c["name"] == "entry file"]
        assert f"whose {field} disagree with its envelope" in check["detail"]
    # Its index, too, once the receipt has proven where the envelope sits.
    forged = lab.dir / "forged-index.json"
    forged.write_text(json.dumps({**line, "index": line["index"] + 7}))
    code, out = _run("verify", "--trust", str(trust_file), "--receipt", str(receipt),
                     "--entry", str(forged), "--no-state", "--json")
    assert code == 4 and "says it is entry" in out, out


def test_a_receipt_uses_the_witnessed_checkpoint_that_covers_the_entry(
        lab: Lab, trust_file: Path) -> None:
    """Entries appended after the witnesses cosigned do not make `prove` sign a fresh,
    uncosigned checkpoint for an entry the witnessed one covers; a later entry gets a new
    checkpoint, said on stderr, which verifies once witnesses cosign it."""
    lab.checkpoint()
    witnessed = lab.ledger.size
    lab.compute(3)
    receipt, entry = _prove(lab, witnessed - 1)
    assert f"\n{witnessed}\n" in receipt.read_text()  # the witnessed size
    args = ["--trust", str(trust_file), "--no-state"]
    assert _run("verify", "--receipt", str(receipt), "--entry", str(entry), *args)[0] == 0
    late = lab.ledger.size - 1
    res = runner.invoke(_app(), ["ledger", "prove", str(late), "--ledger", str(lab.path)])
    assert res.exit_code == 0 and "signed one of size" in res.stderr
    receipt, entry = _prove(lab, late)
    assert _run("verify", "--receipt", str(receipt), "--entry", str(entry), *args)[0] == 4
    lab.checkpoint()  # the witnesses cosign the new checkpoint
    receipt, entry = _prove(lab, late)
    assert _run("verify", "--receipt", str(receipt), "--entry", str(entry), *args)[0] == 0


def test_receipt_failures_are_violations_or_could_not_verify(lab: Lab, trust_file: Path) -> None:
    lab.checkpoint()
    receipt, entry = _prove(lab, 4)
    _, other = _prove(lab, 5)
    text = receipt.read_text()

    def check(receipt_text: str, entry_path: Path, trust: Path = trust_file,
              *extra: str) -> int:
        path = lab.dir / "x.txt"
        path.write_text(receipt_text)
        return _run("verify", "--trust", str(trust), "--receipt", str(path), "--entry",
                    str(entry_path), "--no-state", *extra)[0]

    assert check(text, entry) == 0
    assert check(text, other) == 3  # the receipt proves another entry
    lines = text.split("\n")
    lines[3] = "A" * 43 + "="  # an altered proof hash
    assert check("\n".join(lines), entry) == 3
    assert check(text.replace("index 4", "index 5"), entry) == 3
    assert check("not a receipt", entry) == 4
    junk = lab.dir / "junk.db"
    junk.write_bytes(lab.path.read_bytes()[:4096])  # the wrong file: a mistake, said so
    assert check(text, junk) == 4
    res = runner.invoke(_app(), ["verify", "--trust", str(trust_file), "--receipt",
                                 str(receipt), "--entry", str(junk), "--no-state"])
    assert res.exit_code == 4 and "is not JSON" in res.output, res.output
    assert "ledger show --json" in res.output
    res = runner.invoke(_app(), ["verify", "--trust", str(trust_file), "--receipt",
                                 str(receipt), "--entry", str(entry), "--state",
                                 str(lab.dir / "no" / "dir" / "s.json")])
    assert res.exit_code == 4 and "does not exist" in res.output, res.output
    assert not (lab.dir / "no").exists()
    for extra in (["--ledger", str(lab.path)], ["--html", str(lab.dir / "r.html")]):
        res = runner.invoke(_app(), ["verify", "--trust", str(trust_file), "--receipt",
                                     str(receipt), "--entry", str(entry), *extra])
        assert res.exit_code == 4 and "are for a ledger audit" in res.output, res.output
    res = runner.invoke(_app(), ["verify", "--trust", str(trust_file), "--ledger",
                                 str(lab.path), "--state", str(lab.dir / "s.json"), "--no-state"])
    assert res.exit_code == 4 and "contradict each other" in res.output, res.output
    one = lab.dir / "one.yaml"
    one.write_text(lab.trust(quorum=2).model_copy(update={"witnesses": {
        w.name: v for w, v in zip(lab.witnesses, lab.trust().witness_verifiers, strict=True)
    }}).to_yaml())
    # Stripping a cosignature leaves fewer than the quorum: could not verify.
    stripped = "".join(ln + "\n" for ln in text.rstrip("\n").split("\n")
                       if "witness.example/w2" not in ln)
    assert check(stripped, entry) == 4
    other_log = lab.trust().model_copy(update={"log": lab.trust().log.model_copy(
        update={"key": SigningKey.generate("example.org/elsewhere").vkey})})
    elsewhere = lab.dir / "elsewhere.yaml"
    elsewhere.write_text(other_log.to_yaml())
    assert check(text, entry, elsewhere) == 4
    assert _run("verify", "--trust", str(trust_file), "--receipt", str(receipt))[0] == 4


def test_a_receipt_from_a_split_view_is_caught_by_the_auditor_state(
        lab: Lab, trust_file: Path) -> None:
    lab.checkpoint()
    state = lab.dir / "state.json"
    code, _ = _run("verify", "--no-replay", "--ledger", str(lab.path), "--trust",
                   str(trust_file), "--state", str(state))
    assert code == 0
    receipt, entry = _prove(lab, 2)
    args = ["verify", "--trust", str(trust_file), "--receipt", str(receipt), "--entry",
            str(entry), "--state", str(state)]
    assert _run(*args)[0] == 0
    data = json.loads(state.read_text())
    log = f"{ORIGIN} {lab.log_key.vkey.text()}"
    data["logs"][log]["checkpoints"][0]["root_hash"] = "A" * 43 + "="
    state.write_text(json.dumps(data))
    code, out = _run(*args, "--json")
    assert code == 3 and "split-view" in json.loads(out)["violation_counts"]
