"""DSSE envelopes, the statements inside them, and ``Ledger.append`` of arbitrary bytes: valid
ones round-trip; mutated and random ones parse or raise the project's own error; and the log
admits a statement once, whatever bytes carry it."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from scalegate.errors import AppendRefused, EnvelopeError, StatementError
from scalegate.ledger.envelope import (
    PAYLOAD_TYPE,
    Envelope,
    Signature,
    read_canonical,
    sign_envelope,
    statement_digest,
)
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import PREDICATES, parse_statement

from .lab import EXAMPLES, Lab, example_statement
from .mutations import (
    fuzz_settings,
    mutants,
    nested_json,
    only_own_errors,
)

B64 = st.binary(min_size=1, max_size=80).map(lambda b: base64.b64encode(b).decode())
KEYID = st.text(max_size=40)
ENVELOPES = st.builds(
    Envelope,
    payload=B64,
    payloadType=st.just(PAYLOAD_TYPE),
    signatures=st.lists(st.builds(Signature, keyid=KEYID, sig=B64), min_size=1, max_size=3),
)


@fuzz_settings(100)
@given(ENVELOPES)
def test_envelope_round_trips(env: Envelope) -> None:
    data = env.to_bytes()
    assert Envelope.from_bytes(data, canonical=True) == env
    assert Envelope.from_bytes(json.dumps(json.loads(data), indent=2).encode()) == env
    fast = read_canonical(data)
    want = (PAYLOAD_TYPE, env.payload_bytes(), [(s.keyid, s.sig_bytes()) for s in env.signatures])
    assert fast is None or fast == want  # (None: keyids that need a JSON escape)
    assert statement_digest(data) == hashlib.sha256(env.payload_bytes()).digest()


@pytest.mark.parametrize("kind", sorted(PREDICATES))
def test_every_kind_round_trips(kind: str) -> None:
    statement = example_statement(kind)
    assert parse_statement(statement.to_payload()) == statement


def _envelope_seeds(lab: Lab) -> list[bytes]:
    pretty = json.dumps(json.loads(lab.entries[2]), indent=1).encode()
    return [*lab.entries, pretty, *(e.to_bytes() for e in lab.fresh(3))]


def _stray_bits(b64: str) -> str:
    """The same bytes with the unused low bits of the last base64 digit set (if any)."""
    if not b64.endswith("="):
        return b64
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    pad = len(b64) - len(b64.rstrip("="))
    last = alphabet.index(b64[-pad - 1])
    return b64[: -pad - 1] + alphabet[last | (0b1111 if pad == 2 else 0b11)] + "=" * pad


@st.composite
def variants(draw: Any, seeds: list[bytes]) -> bytes:
    """An envelope re-spelled as a replayer would: reordered, re-indented, escaped, base64
    with stray bits or the URL-safe alphabet, an extra or repeated signature."""
    obj = json.loads(draw(st.sampled_from(seeds)))
    for how in draw(st.lists(st.sampled_from(["bogus", "repeat", "stray", "urlsafe", "order"]),
                             max_size=3)):
        sigs = obj["signatures"]
        if how == "bogus":
            sigs.insert(draw(st.integers(0, len(sigs))), {
                "keyid": draw(st.sampled_from(["", "acme/x+00000000", sigs[0]["keyid"]])),
                "sig": base64.b64encode(draw(st.binary(min_size=1, max_size=64))).decode()})
        elif how == "repeat":
            sigs.append(dict(sigs[0]))
        elif how == "stray":
            obj["payload"] = _stray_bits(obj["payload"])
        elif how == "urlsafe":
            obj["payload"] = obj["payload"].replace("+", "-").replace("/", "_")
        else:
            obj = dict(reversed(list(obj.items())))
    indent = draw(st.sampled_from([None, 0, 2]))
    return json.dumps(obj, indent=indent, ensure_ascii=draw(st.booleans())).encode()


@fuzz_settings(300)
@given(data=st.data())
def test_mutated_envelopes_parse_or_refuse(lab: Lab, data: st.DataObject) -> None:
    seeds = _envelope_seeds(lab)
    raw = data.draw(variants(seeds) | mutants(seeds, deep=True))
    env = only_own_errors(Envelope.from_bytes, raw)
    fast = read_canonical(raw)  # never raises: None means "not canonical, ask from_bytes"
    if fast is not None:
        env = Envelope.from_bytes(raw, canonical=True)
        assert fast == (env.payloadType, env.payload_bytes(),
                        [(s.keyid, s.sig_bytes()) for s in env.signatures])
    digest = statement_digest(raw)
    if env is not None:
        assert Envelope.from_bytes(env.to_bytes(), canonical=True) == env
        assert digest == hashlib.sha256(env.payload_bytes()).digest()
        statement = only_own_errors(parse_statement, env.payload_bytes())
        if statement is not None:
            assert parse_statement(statement.to_payload()) == statement


# --- statements: a value anywhere replaced by what a parser should not trip on ------------------

ODD_VALUES: list[Any] = [
    None, True, -1, 0, 2**63, 2**64, 10**400, -0.0, 1e308, 1.7976931348623157e308, 5e-324,
    "", "é😀", "\u2028", "\x00", "\ud800", "2026-13-45T99:99:99Z", "2026-03-01T00:00:00",
    "2026-03-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59", "urn:scalegate:key:v1",
    "ab" * 32, [], {}, [[[[[]]]]], {"a": {"b": {"c": {}}}}, ["x"] * 50,
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*path, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*path, i)))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    return [_replace(v, rest, new) if i == head else v for i, v in enumerate(value)]


STATEMENT_SEEDS = [json.loads(example_statement(k).to_payload()) for k in sorted(EXAMPLES)]


@st.composite
def odd_statements(draw: Any) -> bytes:
    doc = draw(st.sampled_from(STATEMENT_SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        how = draw(st.sampled_from(["value", "drop", "add"]))
        if how == "value" or not path:
            doc = _replace(doc, path, draw(st.sampled_from(ODD_VALUES) | st.text(max_size=20)
                                           | st.floats() | st.integers()))
        elif how == "drop":
            parent = _get(doc, path[:-1])
            if isinstance(parent, dict):
                doc = _replace(doc, path[:-1], {k: v for k, v in parent.items() if k != path[-1]})
        else:
            parent = _get(doc, path[:-1])
            if isinstance(parent, dict):
                doc = _replace(doc, path[:-1], {**parent, draw(st.text(max_size=8)): 1})
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


@fuzz_settings(300)
@given(odd_statements() | mutants([json.dumps(s).encode() for s in STATEMENT_SEEDS],
                                  deep=True))
def test_odd_statements_parse_or_refuse(payload: bytes) -> None:
    statement = only_own_errors(parse_statement, payload)
    event("parsed" if statement is not None else "refused")
    if statement is not None:  # what parses re-encodes to itself
        assert parse_statement(statement.to_payload()) == statement


# --- appending arbitrary bytes --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ledger(lab: Lab) -> Any:
    with lab.open() as led:
        yield led


@fuzz_settings(150)
@given(data=st.data())
def test_appending_arbitrary_bytes_admits_each_statement_once(
        lab: Lab, ledger: Ledger, data: st.DataObject) -> None:
    seeds = _envelope_seeds(lab)
    raw = data.draw(variants(seeds) | mutants(seeds, deep=True))
    before = ledger.size
    try:
        result = ledger.append(raw)
    except AppendRefused as exc:  # (a DuplicateStatement among them)
        assert str(exc)
        event("refused")
        assert ledger.size == before
        return
    event("appended")
    assert result.index == before
    stored = ledger.entry(result.index)
    assert stored.data == Envelope.from_bytes(raw).to_bytes()  # kept in canonical form
    payloads = [hashlib.sha256(e.envelope.payload_bytes()).digest() for e in ledger.entries()]
    assert len(set(payloads)) == len(payloads)  # the log admits a statement once


def test_appended_copies_are_refused(lab: Lab, ledger: Ledger) -> None:
    # The test above must be able to fail: every statement in the log, re-sent, is refused.
    for e in ledger.entries():
        with pytest.raises(AppendRefused):
            ledger.append(e.data)
    assert ledger.verify().ok


# --- nesting thousands deep --------------------------------------------------------------------

DEEP = [nested_json(2_000), nested_json(100_000), b'{"payload":' + nested_json(5_000) + b"}"]


@pytest.mark.parametrize("data", DEEP, ids=["2k", "100k", "in-a-field"])
def test_nesting_thousands_deep_is_refused(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        Envelope.from_bytes(data)
    with pytest.raises(StatementError):
        parse_statement(data)
    assert statement_digest(data) is None


@pytest.mark.parametrize("data", DEEP, ids=["2k", "100k", "in-a-field"])
def test_appending_nesting_thousands_deep_is_refused(ledger: Ledger, data: bytes) -> None:
    with pytest.raises(AppendRefused, match=r"nested too deeply|nests deeper"):
        ledger.append(data)



@pytest.mark.parametrize("spelling", [b"o\\ud800k", b"o\xed\xa0\x80k", b"o\\udc00k"],
                         ids=["escaped", "encoded", "low-half"])
def test_a_statement_holding_a_lone_surrogate_is_refused(spelling: bytes) -> None:
    # json.loads accepts half a UTF-16 pair (escaped, or encoded in bytes that are then not
    # UTF-8); the statement parsed, and failed when written or shown again. Found by the
    # statement mutations above.
    payload = example_statement("approval").to_payload().replace(b'"ok"', b'"' + spelling + b'"')
    with pytest.raises(StatementError, match="lone surrogate"):
        parse_statement(payload)
    pair = example_statement("approval").to_payload().replace(b'"ok"', b'"\\ud83d\\ude00"')
    assert parse_statement(pair).predicate.rationale == "😀"  # a whole pair is text


def test_a_number_of_thousands_of_digits_is_refused(lab: Lab, ledger: Ledger) -> None:
    # Python reads at most 4300 digits into an int and raises a plain ValueError beyond:
    # `ledger append` of such an envelope crashed. Found by the append test above.
    statement = example_statement("compute", run_id="long", step=7).to_payload()
    payload = statement.replace(b'"step":7', b'"step":' + b"7" * 5000)
    raw = b'{"payload":"' + base64.b64encode(payload) + b'","payloadType":"' + \
        PAYLOAD_TYPE.encode() + b'","signatures":[{"keyid":"k","sig":"AAAA"}],"x":' + \
        b"1" * 5000 + b"}"
    with pytest.raises(EnvelopeError, match="more than 4300 digits"):
        Envelope.from_bytes(raw)
    with pytest.raises(StatementError, match="more than 4300 digits"):
        parse_statement(payload)
    with pytest.raises(AppendRefused, match="more than 4300 digits"):
        ledger.append(raw)
    with pytest.raises(AppendRefused, match="more than 4300 digits"):
        ledger.append(sign_envelope(payload, lab.trainer))
