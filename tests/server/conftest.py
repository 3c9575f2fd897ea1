"""A real ledger with enough entries for full and partial tiles at two levels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scalegate.ledger import ComputePredicate, KeyPredicate, Ledger, SigningKey, sign_statement

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ORIGIN = "log.example.org/tiles"


@dataclass
class Lab:
    path: Path
    ledger: Ledger
    log_key: SigningKey
    trainer: SigningKey

    def fill(self, n: int) -> None:
        """Append compute statements until the log holds ``n`` entries, then checkpoint."""
        envs = [sign_statement(ComputePredicate(
            run_id="run-1", step=i, tokens=1e3 * i, flop_by_phase={"pretraining": 1e15 * i},
            effective_flop=1e15 * i, method="6ND", at=T0), self.trainer)
            for i in range(self.ledger.size, n)]
        for a in range(0, len(envs), 200):
            self.ledger.append_many(envs[a:a + 200])
        self.ledger.checkpoint()


def make_lab(tmp: Path, n: int) -> Lab:
    log_key = SigningKey.generate(ORIGIN)
    key_file = tmp / "log.key"
    log_key.save(key_file)
    root, trainer = SigningKey.generate("acme/root"), SigningKey.generate("acme/trainer")
    led = Ledger.create(tmp / "lab.db", ORIGIN, key_file, [root.vkey],
                        now=lambda: T0 + timedelta(days=1))
    led.append(sign_statement(KeyPredicate(vkey=trainer.vkey.text(), org="acme",
                                           roles=["trainer"], valid_from=T0), root))
    lab = Lab(tmp / "lab.db", led, log_key, trainer)
    lab.fill(n)
    return lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """600 entries: two full level-0 tiles, a partial one of 88, a partial level-1 tile of 2."""
    lab = make_lab(tmp_path_factory.mktemp("tiles"), 600)
    yield lab
    lab.ledger.close()
