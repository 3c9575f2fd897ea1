"""Two `scalegate serve` processes on one PostgreSQL database both accept submissions and
never fork the tree: the store's lock sequences their batches (a real PostgreSQL server,
started by the test suite as the store's own tests do)."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scalegate.ledger import (
    ComputePredicate,
    KeyPredicate,
    Ledger,
    SigningKey,
    read_tiled_log,
    sign_statement,
)

from .serving import post, serving

sys.path.insert(0, str(Path(__file__).parents[1] / "ledger"))
from conftest_pg import PostgresServer

T0 = datetime(2026, 1, 1, tzinfo=UTC)




def test_two_servers_on_one_database_never_fork_the_tree(pg_server: PostgresServer,
                                                         tmp_path: Path) -> None:
    url = pg_server.new_database()
    log_key = SigningKey.generate("pg.example.org/log")
    log_key.save(tmp_path / "log.key")
    root, trainer = SigningKey.generate("acme/root"), SigningKey.generate("acme/trainer")
    with Ledger.create(url, log_key.name, tmp_path / "log.key", [root.vkey],
                       now=lambda: T0 + timedelta(days=1)) as led:
        led.append(sign_statement(KeyPredicate(vkey=trainer.vkey.text(), org="acme",
                                               roles=["trainer"], valid_from=T0), root))
    envs = [sign_statement(ComputePredicate(
        run_id=f"run-{i % 4}", step=i, tokens=1.0, flop_by_phase={"pretraining": 1.0},
        effective_flop=1.0, method="6ND", at=datetime.now(UTC)), trainer).to_bytes()
        for i in range(400)]
    with ExitStack() as stack:
        servers = [stack.enter_context(serving(url))[0] for _ in range(2)]
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda ie: post(servers[ie[0] % 2] + "add", ie[1]),
                                    enumerate(envs)))
        assert all(a[0] == 200 for a in answers), [a for a in answers if a[0] != 200][:2]
        indices = [json.loads(a[2])["index"] for a in answers]
        assert sorted(indices) == list(range(1, 401))  # one sequence, no index twice
        with Ledger.open(url) as led:
            for env, i in zip(envs, indices, strict=True):
                assert led.entry(i).data == env
            assert led.verify(workers=1).ok
            led.checkpoint()
        short, long = sorted((read_tiled_log(s, log_key.vkey).entries for s in servers),
                             key=len)
        assert long[:len(short)] == short  # each server shows the one tree, maybe shorter
