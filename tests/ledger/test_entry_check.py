"""The per-entry half of the whole-log check (`ledger verify`, `scalegate verify`): its fast
decoder agrees with `Envelope.from_bytes`, anything unusual goes to the full decoder, which
names the problem, and every signature is checked against the keys named for its keyid."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from scalegate.ledger._entry_check import check_entries, set_candidates
from scalegate.ledger.envelope import Envelope, Signature, add_signature
from scalegate.ledger.envelope import read_canonical as _fast_envelope
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.statements import ComputePredicate, KeyPredicate, sign_statement

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROOT = SigningKey.generate("acme/root")
TRAINER = SigningKey.generate("acme/trainer")


def _env(step: int = 1, key: SigningKey = TRAINER) -> Envelope:
    return sign_statement(ComputePredicate(run_id="r", step=step, tokens=1.0, effective_flop=1.0,
                                           flop_by_phase={"pretraining": 1.0}, method="6ND",
                                           at=T0), key)


@pytest.fixture(autouse=True)
def _keys() -> None:
    set_candidates({k.vkey.keyid: (k.vkey.public,) for k in (ROOT, TRAINER)})


def test_fast_decoder_agrees_with_the_full_one() -> None:
    for env in [_env(i) for i in range(20)] + [add_signature(_env(5), ROOT)]:
        data = env.to_bytes()
        fast = _fast_envelope(data)
        assert fast is not None
        assert fast == (env.payloadType, env.payload_bytes(),
                        [(s.keyid, s.sig_bytes()) for s in env.signatures])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: json.dumps(json.loads(d), indent=1).encode(),  # not canonical
        lambda d: d.replace(b'"keyid":"acme/trainer', b'"keyid":"acme/\\"trainer'),  # escape
        lambda d: d[:-1],
        lambda d: d.replace(b'"payload":"', b'"payload":"==='),
        lambda d: b" " + d,
    ],
)
def test_anything_unusual_falls_back_to_the_full_decoder(mangle) -> None:  # type: ignore[no-untyped-def]
    assert _fast_envelope(mangle(_env().to_bytes())) is None


_SAMPLE = _env(7).to_bytes()
# Bytes that matter to the form: quotes, escapes, base64 padding and alphabets, spaces.
_TWEAKS = hst.sampled_from([b'"', b"\\", b"\\u0041", b"=", b"==", b"-", b"_", b"+", b"/",
                            b" ", b"A", b"\xc3\xa9", b"{", b"}", b",", b":", b"[", b"]", b""])


@settings(max_examples=400, deadline=None)
@given(hst.lists(hst.tuples(hst.integers(0, len(_SAMPLE)), hst.integers(0, 3), _TWEAKS),
                 max_size=3))
def test_fast_decoder_never_accepts_what_the_full_one_would_not(edits) -> None:  # type: ignore[no-untyped-def]
    data = _SAMPLE
    for at, cut, insert in edits:
        data = data[:at] + insert + data[at + cut:]
    fast = _fast_envelope(data)
    if fast is None:
        return  # the full decoder decides
    env = Envelope.from_bytes(data, canonical=True)  # must not raise
    assert fast == (env.payloadType, env.payload_bytes(),
                    [(s.keyid, s.sig_bytes()) for s in env.signatures])


def test_check_entries_reports_each_problem_by_index() -> None:
    good = _env(1).to_bytes()
    other = _env(2)
    wrong_sig = _env(3).model_copy(update={"signatures": other.signatures}).to_bytes()
    pretty = json.dumps(json.loads(good), indent=2).encode()
    stranger = _env(4, SigningKey.generate("acme/x")).to_bytes()
    key_by_trainer = sign_statement(KeyPredicate(vkey=TRAINER.vkey.text(), org="acme",
                                                 valid_from=T0), TRAINER).to_bytes()
    url_safe = Envelope.from_bytes(good)
    url_safe = url_safe.model_copy(update={"signatures": [Signature(
        keyid=TRAINER.vkey.keyid,
        sig=base64.urlsafe_b64encode(url_safe.signatures[0].sig_bytes()).decode())]})
    rows = [(10, good), (11, wrong_sig), (12, pretty), (14, stranger), (15, key_by_trainer),
            (16, b"{"), (17, url_safe.to_bytes())]
    out = {v.index: v for v in check_entries(rows, False)}
    trainer = (TRAINER.vkey.keyid, TRAINER.vkey.public)
    assert (out[10].problem, out[10].verified, out[10].failed) == (None, [trainer], [])
    assert out[10].kind == "compute" and out[10].run_id == "r" and out[10].clean
    assert out[11].problem is None and out[11].failed == [trainer] and not out[11].clean
    assert out[12].problem_kind == "envelope-malformed" and "not in canonical form" in \
        (out[12].problem or "")
    assert (out[14].verified, out[14].failed) == ([], [])  # no key named for its keyid
    assert out[15].kind == "key" and out[15].verified == [trainer]  # who may sign: in order
    assert "not valid JSON" in (out[16].problem or "")
    assert out[17].verified == [trainer]  # URL-safe base64 is valid DSSE


def test_full_mode_validates_every_predicate() -> None:
    env = _env()
    body = json.loads(env.payload_bytes())
    body["predicate"]["step"] = -5
    from scalegate.ledger.envelope import sign_envelope
    from scalegate.ledger.statements import canonical_json

    bad = sign_envelope(canonical_json(body), TRAINER).to_bytes()
    light = check_entries([(0, bad)], False)[0]
    full = check_entries([(0, bad)], True)[0]
    assert light.problem is None
    assert full.problem_kind == "statement-malformed" and "predicate.step" in (full.problem or "")
