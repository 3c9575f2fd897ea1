"""Statement kinds: every kind round-trips; malformed or unknown statements are refused clearly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from fuzz.lab import EXAMPLES  # one example statement of every kind, shared with the fuzzer
from scalegate.errors import StatementError
from scalegate.ledger.statements import (
    PREDICATES,
    ApprovalPredicate,
    ComputePredicate,
    DecisionPredicate,
    Obligation,
    PausePredicate,
    Reason,
    Ref,
    make_statement,
    parse_statement,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
H = "ab" * 32
REF = Ref(index=1, leaf_hash=H)


def test_every_kind_has_an_example() -> None:
    assert set(EXAMPLES) == set(PREDICATES)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_round_trip(kind: str) -> None:
    predicate = PREDICATES[kind].model_validate(EXAMPLES[kind])
    statement = make_statement(predicate)
    assert statement.predicateType == f"urn:scalegate:{kind}:v1"
    payload = statement.to_payload()
    again = parse_statement(payload)
    assert again == statement
    assert again.kind == kind
    assert again.to_payload() == payload  # canonical
    data = json.loads(payload)
    assert data["_type"] == "https://in-toto.io/Statement/v1"
    assert data["subject"][0]["digest"]["sha256"]


def test_times_are_utc_and_naive_times_are_refused() -> None:
    local = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    p = ApprovalPredicate(run_id="r", pause=REF, role="rso", rationale="x", at=local)
    assert p.at == T0 and p.at.tzinfo == UTC
    assert '"at":"2026-01-02T03:04:05Z"' in make_statement(p).to_payload().decode()
    with pytest.raises(ValueError, match="UTC offset"):
        ApprovalPredicate(run_id="r", pause=REF, role="rso", rationale="x", at=datetime(2026, 1, 1))


def _payload(**changes: object) -> bytes:
    statement = make_statement(PREDICATES["pause"].model_validate(EXAMPLES["pause"]))
    data = json.loads(statement.to_payload())
    for key, value in changes.items():
        if key.startswith("p_"):
            data["predicate"][key[2:]] = value
        else:
            data[key] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (_payload(_type="https://in-toto.io/Statement/v0.1"), "_type"),
        (_payload(predicateType="urn:scalegate:paws:v1"), "unknown predicateType"),
        (_payload(predicateType="urn:scalegate:pause:v2"), "unknown predicateType"),
        (_payload(subject=[]), "subject"),
        (_payload(p_step=-1), "predicate.step"),
        (_payload(p_surprise=1), "predicate.surprise"),
        (_payload(p_at="2026-01-01T00:00:00"), "UTC offset"),
        (_payload(p_decision={"index": 1, "leaf_hash": "xyz"}), "leaf_hash"),
    ],
)
def test_malformed_statements_are_refused(payload: bytes, message: str) -> None:
    with pytest.raises(StatementError, match=message):
        parse_statement(payload)


def test_unknown_phase_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown phase"):
        ComputePredicate(
            run_id="r", step=1, tokens=1, flop_by_phase={"pre-training": 1.0},
            effective_flop=1, method="x", at=T0,
        )


def test_decision_carries_reasons_and_obligations() -> None:
    d = DecisionPredicate.model_validate(EXAMPLES["decision"])
    assert isinstance(d.reasons[0], Reason) and isinstance(d.obligations[0], Obligation)
    assert d.reasons[0].refs == [REF]


def test_pause_subject_names_the_run() -> None:
    s = make_statement(PausePredicate.model_validate(EXAMPLES["pause"]))
    assert s.subject[0].name == "run/r1"
    assert s.run_id == "r1"


def test_json_values_are_read_as_json_reads_them() -> None:
    # The fast reader (orjson) is used only where it agrees with json: huge integers and
    # NaN go to json, which reads them as Python always has. A lone surrogate both refuse
    # (it is not text: no statement scalegate writes holds one, and one read could not be
    # written or shown again).
    import json

    from scalegate.ledger.statements import json_value

    for text in (b'{"step": 123456789012345678901234567890}', b'{"x": NaN}',
                 b'{"a": [1, 2.5, "\\u00e9", null, true]}',
                 b'{"a": 1, "a": 2}', b'{"n": 18446744073709551615}'):
        assert json_value(text) == json.loads(text) or text == b'{"x": NaN}'
    for text in (b'{"s": "\\ud800"}', b'{"s": "\xed\xa0\x80"}'):
        with pytest.raises(json.JSONDecodeError, match="lone surrogate"):
            json_value(text)
    big = json_value(b'{"step": 123456789012345678901234567890}')["step"]
    assert type(big) is int and big == 123456789012345678901234567890
    with pytest.raises(json.JSONDecodeError):
        json_value(b'{"a": 1,}')
