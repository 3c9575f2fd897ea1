"""DSSE v1 envelopes: the spec's PAE test vector, signing, verification, strict parsing."""

from __future__ import annotations

import base64
import json
import re

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as hst

from scalegate.errors import EnvelopeError, SignatureError
from scalegate.ledger.envelope import (
    PAYLOAD_TYPE,
    Envelope,
    Signature,
    add_signature,
    pae,
    sign_envelope,
    verify_envelope,
    verify_envelope_keys,
)
from scalegate.ledger.keys import SigningKey

# secure-systems-lab/dsse protocol.md, "Test Vectors".
SPEC_TYPE = "http://example.com/HelloWorld"
SPEC_BODY = b"hello world"
SPEC_PAE = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
SPEC_X = 46950820868899156662930047687818585632848591499744589407958293238635476079160
SPEC_Y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
SPEC_ENVELOPE = (
    b'{"payload": "aGVsbG8gd29ybGQ=",\n "payloadType": "http://example.com/HelloWorld",\n'
    b' "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfU'
    b'iHqJPcIAriEGAHTVeCUjW2JIZA=="}]}'
)

STATEMENT = json.dumps(
    {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "run/demo-1", "digest": {"sha256": "ab" * 32}}],
        "predicateType": "urn:scalegate:compute:v1",
        "predicate": {"run_id": "demo-1", "flop": 1.5e21},
    },
    sort_keys=True,
    separators=(",", ":"),
).encode()


def test_pae_matches_spec_vector() -> None:
    assert pae(SPEC_TYPE, SPEC_BODY) == SPEC_PAE


def test_spec_signature_verifies_over_our_pae() -> None:
    """The spec's ECDSA P-256 signature verifies over the bytes pae() builds (and no others)."""
    public = ec.EllipticCurvePublicNumbers(SPEC_X, SPEC_Y, ec.SECP256R1()).public_key()
    env = Envelope.from_bytes(SPEC_ENVELOPE, payload_type=SPEC_TYPE)
    assert env.payload_bytes() == SPEC_BODY
    raw = env.signatures[0].sig_bytes()
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, env.pae(), ec.ECDSA(hashes.SHA256()))
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        public.verify(
            der,
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world!",
            ec.ECDSA(hashes.SHA256()),
        )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("é", b"") == b"DSSEv1 2 \xc3\xa9 0 "
    assert pae(PAYLOAD_TYPE, b"\x00" * 10).startswith(b"DSSEv1 28 application/vnd.in-toto+json 10 ")


def test_sign_and_verify_round_trip() -> None:
    key = SigningKey.generate("example-lab/trainer")
    env = sign_envelope(STATEMENT, key)
    assert env.payloadType == PAYLOAD_TYPE
    assert env.signatures[0].keyid == key.vkey.keyid
    assert key.vkey.verify(pae(PAYLOAD_TYPE, STATEMENT), env.signatures[0].sig_bytes())
    data = env.to_bytes()
    assert (
        data
        == json.dumps(
            json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    )
    again = Envelope.from_bytes(data, canonical=True)
    assert again == env and again.payload_bytes() == STATEMENT
    assert verify_envelope(again, {key.vkey.keyid: key.vkey}) == key.vkey


def test_tampering_is_detected_and_names_the_keyid() -> None:
    key = SigningKey.generate("example-lab/trainer")
    trusted = {key.vkey.keyid: key.vkey}
    env = sign_envelope(STATEMENT, key)
    forged = env.model_copy(
        update={"payload": base64.b64encode(STATEMENT.replace(b"demo-1", b"demo-2")).decode()}
    )
    with pytest.raises(SignatureError, match=r"example-lab/trainer\+[0-9a-f]{8} does not verify"):
        verify_envelope(forged, trusted)
    retyped = env.model_copy(update={"payloadType": "application/json"})
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope(retyped, trusted)


def test_unknown_or_impostor_key_rejected() -> None:
    key = SigningKey.generate("example-lab/trainer")
    impostor = SigningKey.generate("example-lab/trainer")  # same name, other key
    env = sign_envelope(STATEMENT, impostor)
    with pytest.raises(SignatureError, match=f"not trusted here: {re.escape(impostor.vkey.keyid)}"):
        verify_envelope(env, {key.vkey.keyid: key.vkey})
    # a trust map that points a keyid at another key is a configuration error, not a pass
    with pytest.raises(SignatureError, match="maps keyid"):
        verify_envelope(env, {impostor.vkey.keyid: key.vkey})
    # a signature claiming a trusted keyid but made by another key
    lying = env.model_copy(
        update={"signatures": [Signature(keyid=key.vkey.keyid, sig=env.signatures[0].sig)]}
    )
    with pytest.raises(SignatureError, match=f"{re.escape(key.vkey.keyid)} does not verify"):
        verify_envelope(lying, {key.vkey.keyid: key.vkey})


def test_multiple_signatures() -> None:
    a = SigningKey.generate("lab-a/officer")
    b = SigningKey.generate("lab-b/officer")
    stranger = SigningKey.generate("lab-c/officer")
    env = add_signature(add_signature(sign_envelope(STATEMENT, a), stranger), b)
    assert [s.keyid for s in env.signatures] == [a.vkey.keyid, stranger.vkey.keyid, b.vkey.keyid]
    trusted = {k.vkey.keyid: k.vkey for k in (a, b)}
    assert verify_envelope_keys(env, trusted) == [a.vkey, b.vkey]
    assert verify_envelope(env, {b.vkey.keyid: b.vkey}) == b.vkey
    # re-signing replaces, never duplicates
    assert len(add_signature(env, a).signatures) == 3
    # one bad signature from a trusted key fails the whole envelope
    bad_sig = Signature(keyid=b.vkey.keyid, sig=base64.b64encode(bytes(64)).decode())
    broken = env.model_copy(update={"signatures": [*env.signatures[:2], bad_sig]})
    with pytest.raises(SignatureError, match=re.escape(b.vkey.keyid)):
        verify_envelope_keys(broken, trusted)


def test_url_safe_base64_accepted() -> None:
    key = SigningKey.generate("a/b")
    payload = b"\xfb\xff" * 20  # encodes with '+' and '/' in standard base64
    env = sign_envelope(payload, key)
    obj = json.loads(env.to_bytes())
    obj["payload"] = obj["payload"].replace("+", "-").replace("/", "_")
    obj["signatures"][0]["sig"] = obj["signatures"][0]["sig"].replace("+", "-").replace("/", "_")
    parsed = Envelope.from_bytes(json.dumps(obj).encode())
    assert parsed.payload_bytes() == payload
    assert verify_envelope(parsed, {key.vkey.keyid: key.vkey}) == key.vkey


def _good() -> dict:
    return json.loads(sign_envelope(STATEMENT, SigningKey.generate("a/b")).to_bytes())


def _with(**changes: object) -> bytes:
    obj = _good()
    for k, v in changes.items():
        if v is None:
            del obj[k]
        else:
            obj[k] = v
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (_with(payload=None), "payload: Field required"),
        (_with(payloadType=None), "payloadType: Field required"),
        (_with(signatures=None), "signatures: Field required"),
        (_with(payload="not base64!"), "payload is not valid base64"),
        (_with(payload=""), "empty payload"),
        (_with(payload=12), "payload: Input should be a valid string"),
        (_with(payloadType="application/json"), "expected 'application/vnd.in-toto\\+json'"),
        (_with(signatures=[]), "no signatures"),
        (_with(signatures=[{"keyid": "a/b+00000000"}]), "signatures.0.sig: Field required"),
        (_with(signatures=[{"keyid": "a/b+00000000", "sig": "%%%"}]), "not valid base64"),
        (_with(signatures=[{"keyid": "a/b+00000000", "sig": ""}]), "signature 0 is empty"),
        (_with(extra="x"), "extra: Extra inputs are not permitted"),
        (
            b'{"payload":"eA==","payload":"eQ==","payloadType":"x","signatures":[]}',
            "duplicate JSON key 'payload'",
        ),
    ],
)
def test_malformed_envelopes_rejected(data: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_bytes(data)


def test_canonical_form_required_when_asked() -> None:
    pretty = json.dumps(_good(), indent=2).encode()
    assert Envelope.from_bytes(pretty).to_bytes() != pretty
    with pytest.raises(EnvelopeError, match="not in canonical form"):
        Envelope.from_bytes(pretty, canonical=True)



# --- canonical bytes are spelled out by hand for speed: they must equal json.dumps's ---------

_TEXT = hst.text(alphabet=hst.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(payload=_TEXT, ptype=_TEXT,
       sigs=hst.lists(hst.tuples(_TEXT, _TEXT), min_size=0, max_size=3))
def test_to_bytes_equals_sorted_compact_json(payload, ptype, sigs):
    env = Envelope.model_construct(
        payload=payload, payloadType=ptype,
        signatures=[Signature.model_construct(keyid=k, sig=s) for k, s in sigs])
    want = json.dumps(env.model_dump(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
    assert env.to_bytes() == want
