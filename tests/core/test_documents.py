"""One guarded reader for every YAML and JSON document the tool reads: nesting thousands
deep and alias bombs are refused quickly with a located problem, never a RecursionError,
a hang or gigabytes of memory; and each loader turns that into its own error and exit code."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalegate.audit.trust import load_trust, parse_trust
from scalegate.cli import app
from scalegate.documents import (
    JsonTooDeep,
    Unreadable,
    YamlDocument,
    json_too_deep,
    load_json,
)
from scalegate.errors import PolicyError, ScalegateError, TrustFileError
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import StatementError, parse_statement
from scalegate.policy import parse_policy

DEEP_FLOW = "log: " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_SHALLOWER = "log: " + "[" * 900 + "]" * 900 + "\n"  # libyaml composes it; we refuse
DEEP_BLOCK = "".join(" " * i + f"k{i}:\n" for i in range(300)) + " " * 300 + "v: 1\n"


def bomb(levels: int = 9) -> str:
    """The billion laughs: nine lines that expand to 10^9 values."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]"
              for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text", [DEEP_FLOW, DEEP_SHALLOWER, DEEP_BLOCK, "x: &a [*a]\n"],
                         ids=["flow-5000", "flow-900", "block-300", "recursive-alias"])
def test_deep_yaml_is_unreadable_with_a_position(text: str) -> None:
    doc = YamlDocument("t.yaml")
    with pytest.raises(Unreadable) as got:
        doc.read(text)
    assert got.value.problem.position is not None
    assert "deeper than 40 levels" in got.value.problem.message or (
        "invalid YAML" in got.value.problem.message), got.value.problem


def test_an_alias_bomb_is_refused_in_well_under_a_second() -> None:
    start = time.perf_counter()
    with pytest.raises(Unreadable) as got:
        YamlDocument("t.yaml").read(bomb())
    assert time.perf_counter() - start < 1.0
    assert got.value.kind == "limits"
    assert "more than 20000 values once its aliases are expanded" in got.value.problem.message


def test_yaml_problems_of_single_values_are_recorded_and_reading_goes_on() -> None:
    doc = YamlDocument("t.yaml")
    data = doc.read("a: 1\na: 2\n? [x]\n: 3\n4: four\nb: !tag v\nc: 2023-02-30\n<<: {d: 1}\n")
    assert data == {"a": 1, "b": None, "c": None}
    said = [p.message for p in doc.problems]
    assert any("duplicate key 'a' (first at line 1)" in m for m in said)
    assert any("keys must be plain text, not a list" in m for m in said)
    assert any("key '4' was read as int" in m for m in said)
    assert any("invalid YAML" in m and "!tag" in m for m in said)
    assert any("cannot read this value" in m for m in said)
    assert any("merge keys" in m for m in said)
    assert doc.locate(("c",)) is not None and doc.locate(("c",)).line == 7


@pytest.mark.parametrize("text", [DEEP_FLOW, DEEP_SHALLOWER, DEEP_BLOCK, bomb()],
                         ids=["flow-5000", "flow-900", "block-300", "alias-bomb"])
def test_trust_files_get_the_policy_loaders_guards(text: str, tmp_path: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(TrustFileError) as got:
        parse_trust(text, source="trust.yaml")
    assert time.perf_counter() - start < 2.0
    assert got.value.exit_code == 4
    assert got.value.problems and got.value.problems[0][0].startswith("trust.yaml:")
    with pytest.raises(PolicyError):
        parse_policy(text, source="p.yaml")
    path = tmp_path / "trust.yaml"
    path.write_text(text)
    res = CliRunner().invoke(app, ["verify", "--trust", str(path), "--ledger",
                                   str(tmp_path / "none.db")])
    assert res.exit_code == 4, res.output
    assert "trust file is invalid" in res.output
    with pytest.raises(TrustFileError):
        load_trust(path)


def test_json_depth_is_limited_and_strings_do_not_count() -> None:
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(JsonTooDeep) as got:
        load_json(deep)
    assert isinstance(got.value, json.JSONDecodeError) and got.value.pos == 64
    assert json_too_deep(deep) == 64
    assert json_too_deep("[" * 64 + "]" * 64) is None
    brackets_in_text = json.dumps({"a": "[" * 5000, "b": ["{" * 100, "]"]})
    assert load_json(brackets_in_text)["a"] == "[" * 5000
    assert json_too_deep(brackets_in_text) is None
    with pytest.raises(JsonTooDeep):
        load_json(b'{"x": "\\"[", "y": ' + b"[" * 70 + b"]" * 70 + b"}")


def test_statements_nested_too_deep_are_refused_on_both_paths() -> None:
    for n in (100, 900, 5000):  # orjson reads up to 1024 levels; json.loads would recurse
        payload = (b'{"_type":"https://in-toto.io/Statement/v1","subject":' + b"[" * n
                   + b"]" * n + b',"predicateType":"urn:scalegate:compute:v1","predicate":{}}')
        with pytest.raises(StatementError, match="nests deeper than 64 levels"):
            parse_statement(payload)


def test_ledger_append_refuses_envelopes_nested_thousands_deep(tmp_path: Path) -> None:
    root, log = SigningKey.generate("acme/root"), SigningKey.generate("example.org/log")
    db = tmp_path / "lab.db"
    Ledger.create(db, "example.org/log", log, [root.vkey]).close()
    bad = tmp_path / "deep.json"
    for body in (b'{"payload":"eyJ9","payloadType":"application/vnd.in-toto+json",'
                 b'"signatures":' + b"[" * 5000 + b"]" * 5000 + b"}",
                 b"[" * 100_000):
        bad.write_bytes(body)
        res = CliRunner().invoke(app, ["ledger", "append", str(bad), "--ledger", str(db)])
        assert isinstance(res.exception, ScalegateError), res.exception
        assert "nests deeper than 64 levels" in str(res.exception)
    with Ledger.open(db) as led:
        assert led.size == 0
