"""RFC 3161 time-stamps on checkpoints, from a time-stamping authority the tests run on
127.0.0.1 (:mod:`tsa`): requested over the note as the log signed it, stored in the
ledger (also in ledgers made before the table existed), verified against the TSA's CA;
and `scalegate ledger timestamp` through the real console script."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ledger_writer import make_ledger
from tsa import TestCA, TestTSA

from scalegate.audit.witness import Witness, witness_ledger
from scalegate.errors import LedgerError
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.note import parse_note
from scalegate.ledger.timestamp import (
    TimestampInvalid,
    request_timestamp,
    signed_checkpoint,
    stored_timestamps,
    verify_timestamp,
)

SCALEGATE = str(Path(sys.executable).with_name("scalegate"))
WHEN = datetime(2026, 5, 1, 12, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path):
    db, _, log_key = make_ledger(tmp_path)
    led = Ledger.open(db, log_key=log_key)
    led.checkpoint()
    yield led
    led.close()


def test_a_token_over_the_latest_checkpoint_is_stored_and_verifies(ledger: Ledger) -> None:
    with TestTSA(now=lambda: WHEN) as tsa:
        row, info, new = request_timestamp(ledger, tsa.url, ca_certs=[tsa.ca.cert])
    assert new and row.size == ledger.size == 1 and row.tsa == tsa.url
    assert info.gen_time == WHEN and info.existed_by == WHEN + timedelta(seconds=1)
    assert info.signer == "CN=scalegate test TSA"
    (stored,) = stored_timestamps(ledger.store)
    assert stored == row
    message = signed_checkpoint(ledger.latest_checkpoint() or "", ledger.log_vkey)
    assert verify_timestamp(stored.response, message, [tsa.ca.cert]) == info
    with pytest.raises(TimestampInvalid, match="imprint is not the checkpoint's"):
        verify_timestamp(stored.response, message + b"x", [tsa.ca.cert])
    with pytest.raises(TimestampInvalid, match="does not chain"):
        verify_timestamp(stored.response, message, [TestCA().cert])


def test_the_stamped_message_is_the_note_as_the_log_signed_it(ledger: Ledger,
                                                              tmp_path: Path) -> None:
    """Witnesses add cosignature lines to the stored note later; the token still covers it."""
    before = ledger.latest_checkpoint() or ""
    message = signed_checkpoint(before, ledger.log_vkey)
    text, sigs = parse_note(before)
    assert message == (text + "\n" + sigs[0].line()).encode()
    witness = Witness(tmp_path / "w.json", SigningKey.generate("witness.example/w"),
                      {ledger.origin: ledger.log_vkey})
    after = witness_ledger(ledger, witness)
    assert after != before and signed_checkpoint(after, ledger.log_vkey) == message
    with TestTSA() as tsa:
        _, info, _ = request_timestamp(ledger, tsa.url, ca_certs=[tsa.ca.cert])
        seen = tsa.last_imprint
    assert seen == hashlib.sha256(message).digest() and info.serial > 0


def test_a_token_of_the_same_authority_over_the_same_checkpoint_is_kept(ledger: Ledger) -> None:
    with TestTSA(now=lambda: WHEN) as tsa:
        first, _, new = request_timestamp(ledger, tsa.url)
        tsa.now = lambda: WHEN + timedelta(days=1)
        again, info, renewed = request_timestamp(ledger, tsa.url)
    assert new and not renewed and again == first and info.gen_time == WHEN
    assert len(stored_timestamps(ledger.store)) == 1


def test_a_ledger_older_than_the_table_gets_it_on_first_use(ledger: Ledger) -> None:
    path = ledger.path
    ledger.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE timestamps")
    with Ledger.open(path) as led:
        assert stored_timestamps(led.store) == []
        with TestTSA() as tsa:
            request_timestamp(led, tsa.url, ca_certs=[tsa.ca.cert])
        assert len(stored_timestamps(led.store)) == 1


def test_a_token_that_does_not_verify_is_not_stored(ledger: Ledger) -> None:
    with TestTSA() as tsa:
        with pytest.raises(TimestampInvalid, match="does not chain"):
            request_timestamp(ledger, tsa.url, ca_certs=[TestCA().cert])
        tsa.wrong_imprint = True
        with pytest.raises(TimestampInvalid, match="imprint"):
            request_timestamp(ledger, tsa.url)
    assert stored_timestamps(ledger.store) == []


def test_no_checkpoint_and_no_authority_are_said_plainly(tmp_path: Path) -> None:
    db, _, log_key = make_ledger(tmp_path, checkpoint=False)
    with Ledger.open(db) as led:
        with pytest.raises(LedgerError, match="no checkpoint to time-stamp") as exc:
            request_timestamp(led, "http://127.0.0.1:9/tsa")
        assert "scalegate ledger checkpoint" in str(exc.value)
    with Ledger.open(db, log_key=log_key) as led:
        led.checkpoint()
        with pytest.raises(LedgerError, match="cannot reach the time-stamping authority"):
            request_timestamp(led, "http://127.0.0.1:9/tsa", timeout=5)
        with pytest.raises(LedgerError, match="not an http"):
            request_timestamp(led, "ftp://tsa.example/")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCALEGATE, *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ), timeout=120)


def test_the_command_line(ledger: Ledger, tmp_path: Path) -> None:
    path = ledger.path
    ledger.close()
    with TestTSA(now=lambda: WHEN) as tsa:
        ca = tsa.ca.write(tmp_path / "tsa-root.pem")
        res = _run("ledger", "timestamp", "--ledger", path, "--tsa", tsa.url, "--ca-cert",
                   str(ca), cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert "checkpoint of size 1 existed by 2026-05-01T12:00:01Z" in res.stdout
        assert "verified against --ca-cert" in res.stdout
        other = TestCA().write(tmp_path / "other.pem")
        bad = _run("ledger", "timestamp", "--ledger", path, "--tsa", tsa.url, "--ca-cert",
                   str(other), cwd=tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "does not chain to the trusted authority" in bad.stderr + bad.stdout
    with Ledger.open(path) as led:
        assert len(stored_timestamps(led.store)) == 1
    gone = _run("ledger", "timestamp", "--ledger", path, "--tsa", "http://127.0.0.1:9/",
                cwd=tmp_path)
    assert gone.returncode == 1 and "cannot reach" in gone.stderr + gone.stdout
    assert "Traceback" not in gone.stderr
