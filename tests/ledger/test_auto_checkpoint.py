"""A ledger holding the log key signs a checkpoint when it closes after appending, and on
the cadence it was given (entries, time); a writer without the key appends as before."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scalegate.errors import LedgerError
from scalegate.ledger.checkpoint import open_checkpoint
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import ComputePredicate, KeyPredicate, sign_statement

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ORIGIN = "example.org/auto-checkpoint"


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(days=1)

    def __call__(self) -> datetime:
        return self.now


class Lab:
    def __init__(self, tmp: Path, **cadence: object) -> None:
        self.log_key = SigningKey.generate(ORIGIN)
        self.key_file = tmp / "log.key"
        self.log_key.save(self.key_file)
        self.root, self.trainer = SigningKey.generate("acme/root"), SigningKey.generate("acme/t")
        self.path, self.clock = tmp / "lab.db", Clock()
        with Ledger.create(self.path, ORIGIN, self.key_file, [self.root.vkey], now=self.clock,
                           **cadence) as led:  # type: ignore[arg-type]
            led.append(sign_statement(KeyPredicate(vkey=self.trainer.vkey.text(), org="acme",
                                                   roles=["trainer"], valid_from=T0), self.root))

    def compute(self, step: int) -> bytes:
        pred = ComputePredicate(run_id="r", step=step, tokens=float(step),
                                flop_by_phase={"pretraining": 1e9 * step},
                                effective_flop=1e9 * step, method="6ND", at=T0)
        return sign_statement(pred, self.trainer).to_bytes()

    def sizes(self) -> list[int]:
        with Ledger.open(self.path) as led:
            return [size for size, _ in led.checkpoints()]


def test_closing_after_appending_signs_a_checkpoint_of_the_whole_log(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    assert lab.sizes() == [1]  # create + the first append, then closed
    with Ledger.open(lab.path) as led:  # the recorded key file
        led.append_many([lab.compute(1), lab.compute(2)])
        assert [s for s, _ in led.checkpoints()] == [1], "signed on close, not per append"
    assert lab.sizes() == [1, 3]
    with Ledger.open(lab.path) as led:
        note = led.latest_checkpoint()
        assert note is not None
        cp, _ = open_checkpoint(note, lab.log_key.vkey, origin=ORIGIN)
        assert cp.size == 3 and cp.root_hash == led.root()


def test_closing_without_appending_signs_nothing(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    with Ledger.open(lab.path) as led:
        led.append(lab.compute(1))
    with Ledger.open(lab.path) as led:  # read only
        assert led.size == 3 - 1
    assert lab.sizes() == [1, 2]


def test_a_writer_without_the_log_key_appends_and_signs_nothing(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.key_file.unlink()  # the trainer's machine: the operator's key is elsewhere
    with Ledger.open(lab.path) as led:
        led.append(lab.compute(1))
    assert lab.sizes() == [1]
    with Ledger.open(lab.path, log_key=lab.log_key) as led:  # the operator, key given
        led.append(lab.compute(2))
    assert lab.sizes() == [1, 3]
    with Ledger.open(lab.path, checkpoint_on_close=False, log_key=lab.log_key) as led:
        led.append(lab.compute(3))
    assert lab.sizes() == [1, 3]


def test_leaving_on_an_error_still_signs_and_keeps_the_error(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    with pytest.raises(RuntimeError, match="training crashed"), Ledger.open(lab.path) as led:
        led.append(lab.compute(1))
        raise RuntimeError("training crashed")
    assert lab.sizes() == [1, 2]


def test_every_n_entries(tmp_path: Path) -> None:
    lab = Lab(tmp_path, checkpoint_every=3)
    with Ledger.open(lab.path) as led:  # the cadence recorded at creation
        assert led.checkpoint_every == 3
        for step in range(1, 8):
            led.append(lab.compute(step))
        assert [s for s, _ in led.checkpoints()] == [1, 4, 7]
        led.append(lab.compute(8))
    assert lab.sizes() == [1, 4, 7, 9]
    with Ledger.open(lab.path, checkpoint_every=100) as led:  # overridden when opened
        led.append_many([lab.compute(9), lab.compute(10), lab.compute(11)])
        assert [s for s, _ in led.checkpoints()] == [1, 4, 7, 9]


def test_every_interval(tmp_path: Path) -> None:
    lab = Lab(tmp_path, checkpoint_interval=timedelta(minutes=10))
    with Ledger.open(lab.path, now=lab.clock) as led:
        assert led.checkpoint_interval == timedelta(minutes=10)
        led.append(lab.compute(1))  # the last checkpoint (size 1) is brand new
        lab.clock.now += timedelta(minutes=5)
        led.append(lab.compute(2))
        assert [s for s, _ in led.checkpoints()] == [1]
        lab.clock.now += timedelta(minutes=6)
        led.append(lab.compute(3))  # 11 minutes since size 1: due
        assert [s for s, _ in led.checkpoints()] == [1, 4]
        led.append(lab.compute(4))
        assert [s for s, _ in led.checkpoints()] == [1, 4]


def test_a_bad_cadence_is_refused(tmp_path: Path) -> None:
    key = SigningKey.generate(ORIGIN)
    root = SigningKey.generate("acme/root")
    with pytest.raises(LedgerError, match="at least 1"):
        Ledger.create(tmp_path / "a.db", ORIGIN, key, [root.vkey], checkpoint_every=0)
    with pytest.raises(LedgerError, match="positive"):
        Ledger.create(tmp_path / "b.db", ORIGIN, key, [root.vkey],
                      checkpoint_interval=timedelta(0))
    assert not (tmp_path / "a.db").exists() and not (tmp_path / "b.db").exists()


def test_the_cli_records_the_cadence(tmp_path: Path) -> None:
    scalegate = str(Path(sys.executable).with_name("scalegate"))
    key = SigningKey.generate(ORIGIN)
    key.save(tmp_path / "log.key")
    root = SigningKey.generate("acme/root")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([scalegate, *args], capture_output=True, text=True, cwd=tmp_path,
                              env=dict(os.environ), timeout=120)

    ok = run("ledger", "init", "lab.db", "--origin", ORIGIN, "--log-key", "log.key",
             "--org-root", root.vkey.text(), "--checkpoint-every", "5",
             "--checkpoint-interval", "10min")
    assert ok.returncode == 0, ok.stderr
    with Ledger.open(tmp_path / "lab.db") as led:
        assert led.checkpoint_every == 5 and led.checkpoint_interval == timedelta(minutes=10)
    bad = run("ledger", "init", "other.db", "--origin", ORIGIN, "--log-key", "log.key",
              "--org-root", root.vkey.text(), "--checkpoint-interval", "10 parsecs")
    assert bad.returncode != 0 and "is not a duration" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "other.db").exists()
