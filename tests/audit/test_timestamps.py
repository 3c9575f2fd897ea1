"""Time-stamps as a second source of outside time: RFC 3161 tokens over checkpoints, from a
time-stamping authority run on 127.0.0.1 by the tests (``tests/ledger/tsa.py``), verified
by the auditor against the authorities its trust file names.

A token shows that the entries below its checkpoint existed by its time: it can make a
deadline met by outside time, never show an entry late (an authority proves existence,
not absence). Tokens that claim a trusted authority but do not verify are
``timestamp-invalid``; tokens from authorities the trust file does not name are ignored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import Encoding
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

from ledger.tsa import TestCA, TestTSA
from scalegate.audit import EXIT_OK, EXIT_VIOLATIONS, TrustFile, parse_trust, render_html
from scalegate.audit.runcheck import LedgerAudit, audit_ledger
from scalegate.errors import TrustFileError
from scalegate.ledger.timestamp import (
    StoredTimestamp,
    request_timestamp,
    signed_checkpoint,
    store_timestamp,
    stored_timestamps,
)

from .runworld import World, new_world

SCALEGATE = str(Path(sys.executable).with_name("scalegate"))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory):
    w = new_world(tmp_path_factory.mktemp("running"))
    w.train(lambda d: d.verdict == "alert")
    yield w
    w.close()


@pytest.fixture
def world(running: World, tmp_path: Path):
    w = running.copy(tmp_path)
    yield w
    w.close()


def crossing_deadline(w: World) -> datetime:
    """When the 1e13 FLOP notification is due (14 days after the decision that crossed it)."""
    w.witness()
    (run,) = audit_ledger(w.ws.ledger_path, w.trust(), use_state=False, workers=1,
                          now=w.clock.t).runs
    first = next(d for d in run.replay.decisions if d.effective_flop >= 1e13)
    return first.at + timedelta(days=14)


def trusting(w: World, *cas: TestCA, name: str = "tsa.test") -> TrustFile:
    data: dict[str, Any] = w.trust().model_dump(mode="json")
    data["timestamp_authorities"] = [{"name": f"{name}{i or ''}", "ca": ca.pem()}
                                     for i, ca in enumerate(cas)]
    return TrustFile.model_validate(data)


def audit(w: World, trust: TrustFile, now: datetime) -> LedgerAudit:
    return audit_ledger(w.ws.ledger_path, trust, use_state=False, workers=1, now=now)


def stamp(w: World, tsa: TestTSA) -> int:
    """The log signs a checkpoint of its current size and has ``tsa`` stamp it."""
    w.ledger.checkpoint()
    row, _, _ = request_timestamp(w.ledger, tsa.url)
    return row.size


def kinds(a: LedgerAudit) -> set[str]:
    return {v.kind for v in a.report.violations}


# --- what a token proves ------------------------------------------------------------------------


def test_a_token_makes_a_deadline_met_by_outside_time(world: World) -> None:
    """Without the token, the notice was in time on the log operator's word only; with a
    trusted authority's token over a checkpoint holding it, stamped before the deadline,
    it is in time by outside time."""
    deadline = crossing_deadline(world)
    n = world.notify("demo-notify", deadline - timedelta(days=1))
    with TestTSA(now=lambda: deadline - timedelta(hours=12)) as tsa:
        size = stamp(world, tsa)
    assert size > n.index
    world.clock.jump(deadline + timedelta(days=1) - world.clock.t)
    world.witness()  # first cosigned after the deadline
    now = deadline + timedelta(days=2)

    on_word = audit(world, world.trust(), now)
    assert on_word.report.exit_code == EXIT_OK
    (said,) = on_word.report.operator_word
    assert said.refs[-1] == n
    assert on_word.report.timestamps == []
    note = next(c for c in on_word.report.checks if c.name.startswith("time-stamps"))
    assert "ignored: the trust file names no time-stamping authority" in note.detail

    met = audit(world, trusting(world, tsa.ca), now)
    assert met.report.exit_code == EXIT_OK, [v.message for v in met.report.violations]
    assert met.report.operator_word == []
    (t,) = met.report.timestamps
    assert (t.size, t.authority, t.tsa) == (size, "tsa.test", tsa.url)
    assert t.existed_by == deadline - timedelta(hours=12) + timedelta(seconds=1)  # accuracy

    data = met.to_json_data()
    assert data["timestamps"][0]["size"] == size and data["operator_word"] == []
    html = render_html(met)
    assert "Time-stamps from trusted authorities (1)" in html and "tsa.test" in html


def test_a_token_cannot_show_a_backdated_notice_in_time(world: World) -> None:
    """The operator's clock is set back: the notice, logged days after its deadline, claims
    to have been sent before it. The authority stamps (by its own clock) only after the
    deadline, so its existed-by bound cannot make the notice timely: the deadline stays
    met on the operator's word alone, said apart — a token proves existence, never absence,
    so catching the lie needs a witness (as in test_dishonest)."""
    deadline = crossing_deadline(world)
    world.more_compute(1)
    late = deadline + timedelta(days=2)
    with TestTSA(now=lambda: late) as tsa:
        stamp(world, tsa)
        assert world.clock.t < deadline  # the operator's clock
        n = world.notify("demo-notify", deadline - timedelta(hours=1))
        tsa.now = lambda: late + timedelta(hours=1)
        size = stamp(world, tsa)
    assert size > n.index
    world.witness(at=deadline + timedelta(days=3))
    a = audit(world, trusting(world, tsa.ca), deadline + timedelta(days=8))
    assert len(a.report.timestamps) == 2
    assert "backdated" not in kinds(a)  # an upper bound cannot show a claimed time early
    (said,) = a.report.operator_word
    assert said.refs[-1] == n and "no witnessed checkpoint shows" in said.message


def test_a_token_whose_imprint_is_not_its_checkpoint_is_invalid(world: World) -> None:
    """One genuine token, stored again as if it stamped a later checkpoint; and a token
    over something else than the checkpoint it is stored for."""
    with TestTSA() as tsa:
        first = stamp(world, tsa)
        world.more_compute(2)
        world.ledger.checkpoint()
        (row,) = stored_timestamps(world.ledger.store)
        later = world.ledger.size
        store_timestamp(world.ledger.store, StoredTimestamp(later, "https://reused.example/",
                                                            row.response, row.requested_at))
        world.more_compute(1)
        world.ledger.checkpoint()
        message = signed_checkpoint(world.ledger.latest_checkpoint() or "",
                                    world.ledger.log_vkey)
        tsa.wrong_imprint = True  # it stamps something else than it was asked to
        stamp_of_other = tsa.respond(TimestampRequestBuilder().data(message).hash_algorithm(
            HashAlgorithm.SHA256).build().as_bytes())
        store_timestamp(world.ledger.store, StoredTimestamp(
            world.ledger.size, tsa.url, stamp_of_other, row.requested_at))
    a = audit(world, trusting(world, tsa.ca), world.clock.t)
    bad = [v for v in a.report.violations if v.kind == "timestamp-invalid"]
    assert a.report.exit_code == EXIT_VIOLATIONS and kinds(a) == {"timestamp-invalid"}
    assert sorted(v.checkpoint_size for v in bad) == [later, world.ledger.size]
    assert all("message imprint is not the checkpoint's" in v.message for v in bad)
    assert [t.size for t in a.report.timestamps] == [first]  # the genuine one still counts


def test_a_token_signed_under_an_untrusted_ca_is_invalid(world: World) -> None:
    """A lookalike CA (the trusted root's name, another key) issues the authority's
    certificate: the token claims the trusted authority and does not chain to it."""
    trusted, lookalike = TestCA(), TestCA()  # same subject name, different keys
    assert trusted.cert.subject == lookalike.cert.subject
    with TestTSA(lookalike) as rogue:
        size = stamp(world, rogue)
    a = audit(world, trusting(world, trusted), world.clock.t)
    (v,) = [v for v in a.report.violations if v.kind == "timestamp-invalid"]
    assert v.checkpoint_size == size and "claims to be by tsa.test" in v.message
    assert "does not chain to the trusted authority" in v.message
    assert a.report.timestamps == []


def test_a_pinned_authority_certificate_refuses_another_of_the_same_ca(world: World) -> None:
    ca = TestCA()
    with TestTSA(ca) as tsa, TestTSA(ca, name="another TSA of the same CA") as other:
        stamp(world, tsa)
        world.more_compute(1)
        stamp(world, other)
        pem = tsa.cert.public_bytes(Encoding.PEM).decode()
    world.witness()
    data = trusting(world, ca).model_dump(mode="json")
    data["timestamp_authorities"][0]["certificate"] = pem
    a = audit(world, TrustFile.model_validate(data), world.clock.t)
    assert a.report.exit_code == EXIT_OK and len(a.report.timestamps) == 1
    check = next(c for c in a.report.checks if c.name.startswith("time-stamps"))
    assert "1 of 2 time-stamp tokens verified" in check.detail
    assert "ignored, as from authorities the trust file does not name: 1 by " \
        "CN=scalegate test TSA root" in check.detail


def test_tokens_of_authorities_not_in_the_trust_file_are_ignored_with_a_note(
        world: World) -> None:
    with TestTSA(TestCA("someone else's root")) as stranger, TestTSA() as known:
        stamp(world, stranger)
        world.more_compute(1)
        stamp(world, known)
    world.witness()
    a = audit(world, trusting(world, known.ca), world.clock.t)
    assert a.report.exit_code == EXIT_OK
    assert [t.authority for t in a.report.timestamps] == ["tsa.test"]
    check = next(c for c in a.report.checks if c.name.startswith("time-stamps"))
    assert check.ok and "1 by CN=someone else's root" in check.detail


# --- the trust file and the command line ----------------------------------------------------------


def test_authorities_in_a_trust_file_with_paths_relative_to_it(world: World,
                                                                tmp_path: Path) -> None:
    ca = TestCA()
    (tmp_path / "pki").mkdir()
    ca.write(tmp_path / "pki" / "root.pem")
    base = yaml.safe_load(world.trust_file().read_text())
    text = yaml.safe_dump({**base, "timestamp_authorities": [
        {"name": "by-path", "ca": "pki/root.pem"}, {"name": "inline", "ca": TestCA().pem()}]})
    trust = parse_trust(text, source="t.yaml", base=tmp_path)
    assert [a.name for a in trust.timestamp_authorities] == ["by-path", "inline"]
    assert trust.timestamp_authorities[0].ca == [ca.cert]
    assert parse_trust(trust.to_yaml()).timestamp_authorities == trust.timestamp_authorities

    broken = yaml.safe_dump({**base, "timestamp_authorities": [
        {"name": "a", "ca": "missing.pem"}, {"name": "a", "ca": "not a certificate\n"}]})
    with pytest.raises(TrustFileError) as exc:
        parse_trust(broken, source="t.yaml", base=tmp_path)
    problems = dict(exc.value.problems)
    where = [w for w in problems if "timestamp_authorities.0.ca" in w]
    assert where and "cannot read PEM file" in problems[where[0]]
    assert "missing.pem" in problems[where[0]]
    assert any("timestamp_authorities.1.ca" in w for w in problems)


def test_an_authority_needs_a_root(world: World) -> None:
    ca = TestCA()
    _, leaf = ca.issue_tsa()
    data = world.trust().model_dump(mode="json")
    pem = leaf.public_bytes(Encoding.PEM).decode()
    data["timestamp_authorities"] = [{"name": "x", "ca": pem}]
    with pytest.raises(TrustFileError, match="no root certificate"):
        parse_trust(yaml.safe_dump(data))


def test_scalegate_verify_counts_a_token(world: World, tmp_path: Path) -> None:
    deadline = crossing_deadline(world)
    world.notify("demo-notify", deadline - timedelta(days=1))
    with TestTSA(now=lambda: deadline - timedelta(hours=1)) as tsa:
        world.ledger.checkpoint()
        world.ledger.close()
        ca = tsa.ca.write(tmp_path / "tsa-root.pem")
        res = subprocess.run([SCALEGATE, "ledger", "timestamp", "--ledger",
                              str(world.ws.ledger_path), "--tsa", tsa.url, "--ca-cert", str(ca)],
                             capture_output=True, text=True, env=dict(os.environ), timeout=120)
        assert res.returncode == 0, res.stderr
    from scalegate.ledger.log import Ledger

    world.ws.ledger = Ledger.open(world.ws.ledger_path, now=world.clock)
    world.clock.jump(deadline + timedelta(days=1) - world.clock.t)
    world.witness()
    trust = world.trust_file()
    data = yaml.safe_load(trust.read_text())
    data["timestamp_authorities"] = [{"name": "local-tsa", "ca": "tsa-root.pem"}]
    trust.write_text(yaml.safe_dump(data))
    assert trust.parent == ca.parent
    out = subprocess.run([SCALEGATE, "verify", "--ledger", str(world.ws.ledger_path),
                          "--trust", str(trust), "--no-state", "--json", "--at",
                          (deadline + timedelta(days=2)).isoformat()],
                         capture_output=True, text=True, env=dict(os.environ), timeout=300)
    report = json.loads(out.stdout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    assert [t["authority"] for t in report["timestamps"]] == ["local-tsa"]
    assert report["operator_word"] == []
    assert datetime.fromisoformat(report["timestamps"][0]["existed_by"]) < deadline
