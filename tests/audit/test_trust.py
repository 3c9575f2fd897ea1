"""The trust file: strict YAML, every problem located, keys parsed and cross-checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalegate.audit.trust import TrustFile, load_trust, parse_trust
from scalegate.errors import TrustFileError
from scalegate.ledger.cosignature import CosignatureVerifier
from scalegate.ledger.keys import SigningKey

LOG = SigningKey.generate("example.org/log")
W1, W2 = SigningKey.generate("witness.example/w1"), SigningKey.generate("witness.example/w2")
ROOT = SigningKey.generate("acme/root")


def _text(**over: str) -> str:
    parts = {
        "log": f"log:\n  origin: example.org/log\n  key: {LOG.vkey.text()}\n",
        "witnesses": "witnesses:\n"
        f"  witness.example/w1: {CosignatureVerifier.from_key(W1).text()}\n"
        f"  witness.example/w2: {CosignatureVerifier.from_key(W2).text()}\n",
        "quorum": "witness_quorum: 2\n",
        "roots": f"org_roots:\n  acme:\n    - {ROOT.vkey.text()}\n",
        "roles": "roles:\n  decision: [trainer]\n  approval: [rso, board]\n",
    }
    parts.update(over)
    return "".join(parts.values())


def _problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(TrustFileError) as info:
        parse_trust(text, source="trust.yaml")
    assert info.value.exit_code == 4
    return info.value.problems


def test_a_valid_trust_file_gives_real_keys_and_round_trips(tmp_path: Path) -> None:
    trust = parse_trust(_text(), source="trust.yaml")
    assert trust.origin == "example.org/log"
    assert trust.log_verifier == LOG.vkey
    assert trust.witness_verifiers == [CosignatureVerifier.from_key(W1),
                                       CosignatureVerifier.from_key(W2)]
    assert trust.quorum == 2
    assert trust.roots == [ROOT.vkey]
    assert trust.allowed_roles("approval") == {"rso", "board"}
    assert trust.allowed_roles("compute") is None
    path = tmp_path / "trust.yaml"
    path.write_text(trust.to_yaml(), encoding="utf-8")
    assert load_trust(path) == trust


def test_witnesses_and_roles_are_optional() -> None:
    trust = parse_trust(_text(witnesses="", quorum="", roles=""))
    assert trust.quorum == 0 and trust.witness_verifiers == [] and trust.roles == {}


def test_problems_name_line_column_and_field() -> None:
    bad_key = ROOT.vkey.text().replace(ROOT.key_id.hex(), "00000000")
    problems = _problems(_text(quorum='witness_quorum: "2"\n',
                               roots=f"org_roots:\n  acme:\n    - {bad_key}\n",
                               roles="roles:\n  decision: [trainer]\nextra: 1\n"))
    where = dict(problems)
    assert any(w.startswith("trust.yaml:7:17: witness_quorum") for w in where), problems
    assert "Input should be a valid integer (got '2')" in where[
        next(w for w in where if "witness_quorum" in w)]
    assert any(w.startswith("trust.yaml:10:7: org_roots.acme.0") and "key ID" in m
               for w, m in problems), problems
    assert any(w.startswith("trust.yaml:13:1: extra") and "unknown key" in m
               for w, m in problems), problems


@pytest.mark.parametrize(
    ("over", "where", "message"),
    [
        ({"quorum": "witness_quorum: 3\n"}, "witness_quorum", "impossible with 2 witnesses"),
        ({"quorum": ""}, "witness_quorum", "missing required key 'witness_quorum'"),
        ({"witnesses": "witnesses:\n  witness.example/w9: "
          f"{CosignatureVerifier.from_key(W1).text()}\n"}, "witnesses.witness.example/w9",
         "not 'witness.example/w9'"),
        ({"roots": f"org_roots:\n  other: [{ROOT.vkey.text()}]\n"}, "org_roots.other.0",
         "belongs to organisation 'acme'"),
        ({"roles": "roles:\n  key: [root]\n"}, "roles.key", "take no roles"),
        ({"roles": "roles:\n  decison: [trainer]\n"}, "roles.decison", "unknown statement kind"),
        ({"roots": "org_roots: {}\n"}, "org_roots",
         "no organisation is listed; a trust file needs at least one organisation with its "
         "root verifier keys"),
        ({"roots": "org_roots:\n  acme: []\n"}, "org_roots.acme",
         "organisation 'acme' lists no root key"),
        ({"roles": "roles:\n  decision: []\n"}, "roles.decision",
         "no role is listed for 'decision' statements"),
        ({"log": f"log:\n  origin: ''\n  key: {LOG.vkey.text()}\n"}, "log.origin",
         "must not be empty"),
        ({"quorum": "witness_quorum: 2\n", "witnesses": "witnesses:\n"
          f"  witness.example/w1: {CosignatureVerifier.from_key(W1).text()}\n"},
         "witness_quorum", "is impossible with 1 witness"),
        ({"log": "log:\n  origin: example.org/log\n  key: 12\n"}, "log.key",
         "expected a verifier key as text"),
    ],
)
def test_each_rule_is_enforced(over: dict[str, str], where: str, message: str) -> None:
    problems = _problems(_text(**over))
    assert any(where in w and message in m for w, m in problems), problems
    assert not any("should have at least" in m for _, m in problems), problems


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the trust file is empty"),
        ("log: [unclosed\n", "invalid YAML"),
        ("- a\n- b\n", "a trust file is a mapping"),
        ("log: {origin: a}\nlog: {origin: b}\n", "duplicate key 'log'"),
        ("? [a, b]\n: c\n", "keys must be plain text"),
    ],
)
def test_malformed_yaml_is_reported_not_raised(text: str, message: str) -> None:
    problems = _problems(text)
    assert any(message in m for _, m in problems), problems


def test_missing_file_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(TrustFileError, match="no trust file"):
        load_trust(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"log: \xff\n")
    with pytest.raises(TrustFileError, match="not UTF-8"):
        load_trust(bad)


@pytest.mark.parametrize(
    ("data", "what", "where"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "byte 0x89 is not UTF-8", "1:1"),
        (b"log: \xff\n", "byte 0xff is not UTF-8", "1:6"),
        (b"\x00\x01\x02\x03abc", "the character #x0000 is not allowed in YAML", "1:1"),
        (b"log: x\n\x07bell\n", "the character #x0007 is not allowed in YAML", "2:1"),
    ],
)
def test_a_binary_file_is_not_a_yaml_text_file(tmp_path: Path, data: bytes, what: str,
                                              where: str) -> None:
    bad = tmp_path / "trust.bin"
    bad.write_bytes(data)
    with pytest.raises(TrustFileError) as info:
        load_trust(bad)
    text = str(info.value)
    assert text.startswith(f"trust file {bad} is not a YAML text file: {what}")
    assert "<unicode string>" not in text and "\n" not in text
    assert info.value.problems == [(f"{bad}:{where}", what)]
    assert info.value.exit_code == 4


def test_python_construction_is_checked_too() -> None:
    with pytest.raises(TrustFileError, match="impossible"):
        TrustFile.model_validate({
            "log": {"origin": "o", "key": LOG.vkey},
            "witnesses": {"witness.example/w1": CosignatureVerifier.from_key(W1)},
            "witness_quorum": 2,
            "org_roots": {"acme": [ROOT.vkey]},
        })
