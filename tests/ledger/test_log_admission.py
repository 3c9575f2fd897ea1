"""Who may write: roots register keys of their own org; only registered, valid, unrevoked keys
sign anything else; every refusal names why and writes nothing."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scalegate.errors import AppendRefused, StoreError
from scalegate.ledger.envelope import Envelope, Signature, sign_envelope
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import (
    ComputePredicate,
    KeyPredicate,
    KeyRevocationPredicate,
    canonical_json,
    make_statement,
    sign_statement,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


class Lab:
    """A ledger with two organisations' roots and an adjustable clock."""

    def __init__(self, tmp: Path) -> None:
        self.clock = Clock(T0 + timedelta(days=1))
        self.acme_root = SigningKey.generate("acme/root")
        self.other_root = SigningKey.generate("other/root")
        self.trainer = SigningKey.generate("acme/trainer")
        self.ledger = Ledger.create(tmp / "lab.db", "example.org/log",
                                    SigningKey.generate("example.org/log"),
                                    [self.acme_root.vkey, self.other_root.vkey], now=self.clock)

    def register(self, key: SigningKey, *, root: SigningKey | None = None, org: str = "acme",
                 roles: tuple[str, ...] = ("trainer",), valid_from: datetime = T0,
                 valid_until: datetime | None = None) -> Envelope:
        return sign_statement(KeyPredicate(vkey=key.vkey.text(), org=org, roles=list(roles),
                                           valid_from=valid_from, valid_until=valid_until),
                              root or self.acme_root)

    def revoke(self, key: SigningKey, root: SigningKey | None = None,
               at: datetime = T0) -> Envelope:
        return sign_statement(KeyRevocationPredicate(vkey=key.vkey.text(), reason="lost laptop",
                                                     revoked_at=at), root or self.acme_root)

    def compute(self, key: SigningKey | None = None, step: int = 1) -> Envelope:
        return sign_statement(ComputePredicate(run_id="r", step=step, tokens=1.0,
                                               flop_by_phase={"pretraining": 1.0},
                                               effective_flop=1.0, method="6ND", at=T0),
                              key or self.trainer)

    def state(self) -> tuple[int, bytes, int]:
        return self.ledger.size, self.ledger.root(), len(self.ledger.registry())


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    yield lab
    lab.ledger.close()


def refused(lab: Lab, envelopes: list[Envelope | bytes], match: str) -> AppendRefused:
    before = lab.state()
    with pytest.raises(AppendRefused, match=match) as info:
        lab.ledger.append_many(envelopes)
    assert "Nothing was appended" in str(info.value)
    assert lab.state() == before
    return info.value


def test_root_registers_a_key_which_may_then_sign(lab: Lab) -> None:
    assert lab.ledger.append(lab.register(lab.trainer)).index == 0
    assert lab.ledger.append(lab.compute()).index == 1
    reg = lab.ledger.registry().get(lab.trainer.vkey.keyid)
    assert reg is not None and reg.roles == ("trainer",) and reg.registered_by == (
        lab.acme_root.vkey.keyid)


def test_a_batch_may_register_a_key_and_use_it(lab: Lab) -> None:
    done = lab.ledger.append_many([lab.register(lab.trainer), lab.compute(), lab.compute(step=2)])
    assert [d.index for d in done] == [0, 1, 2]


def test_unregistered_key_is_refused(lab: Lab) -> None:
    refused(lab, [lab.compute()], "not a registered key")


def test_root_may_not_sign_ordinary_statements(lab: Lab) -> None:
    refused(lab, [lab.compute(lab.acme_root)], "organisation root signs only key statements")


def test_key_statement_by_a_non_root_is_refused(lab: Lab) -> None:
    lab.ledger.append(lab.register(lab.trainer))
    sneaky = SigningKey.generate("acme/sneaky")
    refused(lab, [lab.register(sneaky, root=lab.trainer)], "not an organisation root")


def test_a_root_manages_only_its_own_org(lab: Lab) -> None:
    refused(lab, [lab.register(lab.trainer, root=lab.other_root)],
            "a root may only manage its own organisation")
    other_key = SigningKey.generate("other/trainer")
    refused(lab, [lab.register(other_key, org="other")],
            "a root may only manage its own organisation")


def test_key_name_must_belong_to_the_org(lab: Lab) -> None:
    refused(lab, [lab.register(SigningKey.generate("other/ceo"))], "must be 'acme' or start")


def test_validity_window_must_be_positive(lab: Lab) -> None:
    refused(lab, [lab.register(lab.trainer, valid_until=T0)], "not after valid_from")


def test_expired_and_not_yet_valid_keys_are_refused(lab: Lab) -> None:
    lab.ledger.append(lab.register(lab.trainer, valid_from=T0 + timedelta(days=2),
                                   valid_until=T0 + timedelta(days=3)))
    refused(lab, [lab.compute()], "not valid before 2026-01-03")
    lab.clock.t = T0 + timedelta(days=2, hours=1)
    lab.ledger.append(lab.compute())
    lab.clock.t = T0 + timedelta(days=3)
    refused(lab, [lab.compute()], "expired at 2026-01-04")


def test_revoked_key_is_refused_and_cannot_come_back(lab: Lab) -> None:
    lab.ledger.append(lab.register(lab.trainer))
    lab.ledger.append(lab.compute())
    lab.ledger.append(lab.revoke(lab.trainer, at=T0 + timedelta(days=1)))
    err = refused(lab, [lab.compute()], "revoked from 2026-01-02")
    assert "lost laptop" in str(err)
    refused(lab, [lab.revoke(lab.trainer)], "already revoked")
    refused(lab, [lab.register(lab.trainer)], "cannot be registered again")


def test_scheduled_revocation_takes_effect_at_its_time(lab: Lab) -> None:
    lab.ledger.append(lab.register(lab.trainer))
    lab.ledger.append(lab.revoke(lab.trainer, at=T0 + timedelta(days=5)))
    lab.ledger.append(lab.compute())
    lab.clock.t = T0 + timedelta(days=5)
    refused(lab, [lab.compute()], "revoked")


def test_revocations_need_the_keys_own_root(lab: Lab) -> None:
    lab.ledger.append(lab.register(lab.trainer))
    refused(lab, [lab.revoke(lab.trainer, root=lab.other_root)], "only manage its own")
    refused(lab, [lab.revoke(SigningKey.generate("acme/ghost"))], "is not registered")


def test_re_registration_replaces_roles(lab: Lab) -> None:
    lab.ledger.append(lab.register(lab.trainer))
    lab.ledger.append(lab.register(lab.trainer, roles=("trainer", "rso")))
    assert lab.ledger.registry().get(lab.trainer.vkey.keyid).roles == ("trainer", "rso")


def test_a_bad_signature_is_refused(lab: Lab) -> None:
    lab.ledger.append(lab.register(lab.trainer))
    good = lab.compute()
    other = lab.compute(step=2)
    forged = good.model_copy(update={"payload": other.payload})  # signature over another payload
    refused(lab, [forged], "does not verify")
    impostor = SigningKey.generate("acme/trainer")  # same name, other key: other key id
    refused(lab, [lab.compute(impostor)], "not a registered key")


def test_one_bad_envelope_refuses_the_whole_batch(lab: Lab) -> None:
    lab.ledger.append(lab.register(lab.trainer))
    err = refused(lab, [lab.compute(step=1), lab.compute(step=2),
                        lab.compute(SigningKey.generate("acme/x"))], "envelope 2 of the batch")
    assert "compute statement" in str(err)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda b: b[: len(b) // 2], "not valid JSON"),
        (lambda b: b"[1, 2]", "must be a JSON object"),
        (lambda b: b.replace(b'"payload":"', b'"payload":"!!'), "not valid base64"),
        (lambda b: b.replace(b'"sig":"', b'"sig":"%'), "not valid base64"),
        (lambda b: b.replace(b"application/vnd.in-toto+json", b"text/plain"), "payloadType"),
        (lambda b: json.dumps({**json.loads(b), "signatures": []}).encode(), "no signatures"),
        (lambda b: b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_envelopes_are_refused(lab: Lab, mangle, match: str) -> None:  # type: ignore[no-untyped-def]
    lab.ledger.append(lab.register(lab.trainer))
    refused(lab, [mangle(lab.compute().to_bytes())], match)


def test_payload_must_be_a_known_statement(lab: Lab) -> None:
    lab.ledger.append(lab.register(lab.trainer))
    st = make_statement(ComputePredicate(run_id="r", step=1, tokens=1.0,
                                         flop_by_phase={"pretraining": 1.0}, effective_flop=1.0,
                                         method="6ND", at=T0)).model_dump(mode="json",
                                                                          by_alias=True)
    unknown = {**st, "predicateType": "urn:scalegate:bogus:v1"}
    refused(lab, [sign_envelope(canonical_json(unknown), lab.trainer)], "unknown predicateType")
    not_json = sign_envelope(b"definitely not json", lab.trainer)
    refused(lab, [not_json], "not JSON")
    bad_field = {**st, "predicate": {**st["predicate"], "step": -1}}
    refused(lab, [sign_envelope(canonical_json(bad_field), lab.trainer)], "predicate.step")


def test_signature_by_an_unknown_key_alongside_a_valid_one_is_refused(lab: Lab) -> None:
    """A bogus extra signature would make a second entry of the same statement."""
    lab.ledger.append(lab.register(lab.trainer))
    env = lab.compute()
    extra = Signature(keyid="someone/else+00000000", sig=base64.b64encode(b"x" * 64).decode())
    both = env.model_copy(update={"signatures": [extra, *env.signatures]})
    refused(lab, [both], "someone/else\\+00000000, a key this ledger does not know")
    twice = env.model_copy(update={"signatures": [*env.signatures, *env.signatures]})
    refused(lab, [twice], "two signatures name the same key")
    assert lab.ledger.append(env).index == 1


def test_a_statement_is_admitted_once_whatever_its_envelope(lab: Lab) -> None:
    lab.ledger.append(lab.register(lab.trainer))
    env = lab.compute()
    lab.ledger.append(env)
    info = refused(lab, [env], "already logged \\(entry 1\\)")
    assert info.index == 1  # type: ignore[attr-defined]
    # The same payload signed again (Ed25519 is deterministic) or with padding bits set.
    refused(lab, [lab.compute()], "already logged")
    sig = env.signatures[0].sig
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    # The last character before "==" holds 2 bits of the signature and 4 stray bits.
    flipped = sig[:-3] + alphabet[alphabet.index(sig[-3]) ^ 1] + sig[-2:]
    assert base64.b64decode(flipped) == base64.b64decode(sig)
    odd = env.model_copy(update={"signatures": [Signature(keyid=env.signatures[0].keyid,
                                                          sig=flipped)]})
    refused(lab, [odd.to_bytes()], "not canonical base64")
    # Twice in one batch: the second copy names its place in the batch.
    fresh = lab.compute(step=2)
    refused(lab, [fresh, fresh], "position 1 of the batch")
    assert lab.ledger.size == 2


def test_duplicates_survive_reopening_and_an_old_ledger_gets_its_index(tmp_path: Path) -> None:
    """A ledger made before the statement index existed gets it on open, duplicates kept."""
    lab = Lab(tmp_path)
    lab.ledger.append(lab.register(lab.trainer))
    env = lab.compute()
    lab.ledger.append(env)
    lab.ledger.close()
    with sqlite3.connect(tmp_path / "lab.db") as db:
        db.execute("DROP TABLE statements")
    again = Ledger.open(tmp_path / "lab.db", now=lab.clock)
    with pytest.raises(AppendRefused, match="already logged"):
        again.append(env)
    again.close()


def test_an_envelope_nested_thousands_deep_is_refused_clearly(lab: Lab) -> None:
    deep = b'{"payload":' * 5000 + b"1" + b"}" * 5000
    refused(lab, [deep], "refused the envelope")


def test_refusals_leave_a_ledger_that_verifies(lab: Lab) -> None:
    lab.ledger.append(lab.register(lab.trainer))
    with pytest.raises(AppendRefused):
        lab.ledger.append_many([lab.compute(), lab.compute(lab.acme_root)])
    lab.ledger.append(lab.compute())
    report = lab.ledger.verify()
    assert report.ok, report.problems
    assert report.size == 2


def test_verify_refolds_standing_at_each_entrys_time(tmp_path: Path) -> None:
    """verify re-decides each signer's standing in log order at the entry's append time."""
    lab = Lab(tmp_path)
    lab.ledger.append(lab.register(lab.trainer))
    lab.ledger.append(lab.revoke(lab.trainer, at=T0 + timedelta(days=5)))  # scheduled
    lab.ledger.append(lab.compute())  # day 1: still allowed
    assert lab.ledger.verify().ok
    lab.ledger.close()
    con = sqlite3.connect(tmp_path / "lab.db")
    con.execute("UPDATE entries SET appended_at = '2026-01-07T00:00:00.000000Z' WHERE idx = 2")
    con.commit()
    con.close()
    reopened = Ledger.open(tmp_path / "lab.db")
    report = reopened.verify()
    reopened.close()
    assert not report.ok
    assert any(p.startswith("entry 2 (compute)") and "revoked" in p for p in report.problems)


def test_who_may_sign_is_read_from_the_signed_entries_not_the_keys_cache(lab: Lab) -> None:
    """Editing the ``keys`` table (a cache) does not bring a revoked key back."""
    lab.ledger.append(lab.register(lab.trainer))
    lab.ledger.append(lab.revoke(lab.trainer, at=T0 + timedelta(hours=1)))
    path = Path(lab.ledger.path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE keys SET revoked_at = NULL, revoked_index = NULL")
        db.execute("UPDATE keys SET roles = '[\"trainer\", \"rso\"]'")
    for ledger in (lab.ledger, Ledger.open(path, now=lab.clock)):  # cached and fresh
        reg = ledger.registry().get(lab.trainer.vkey.keyid)
        assert reg is not None and reg.revoked_index == 1 and reg.roles == ("trainer",)
        with pytest.raises(AppendRefused, match="revoked"):
            ledger.append(lab.compute())
    assert lab.ledger.size == 2


def test_an_edited_key_statement_stops_decisions_clearly(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.ledger.append(lab.register(lab.trainer))
    lab.ledger.close()
    path = tmp_path / "lab.db"
    with sqlite3.connect(path) as db:
        (data,) = db.execute("SELECT data FROM entries WHERE idx = 0").fetchone()
        env = json.loads(data)
        env["signatures"][0]["sig"] = base64.b64encode(b"\0" * 64).decode()
        db.execute("UPDATE entries SET data = ? WHERE idx = 0",
                   (json.dumps(env, sort_keys=True, separators=(",", ":")).encode(),))
    with Ledger.open(path, now=lab.clock) as led, pytest.raises(
            StoreError, match="key statements do not verify: entry 0"):
        led.registry()
