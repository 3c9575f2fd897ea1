"""The ledger on a real PostgreSQL server: create/open by URL, appends (and refused batches),
checkpoints, proofs, receipts, verification, concurrent writer processes, a writer killed
with SIGKILL, the auditor and the CLI (a throwaway server, see ``conftest_pg.py``)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest_pg import PostgresServer
from ledger_writer import check_survivors, kill_mid_batch, run_concurrent_writers
from sqlalchemy.engine import make_url

from scalegate.audit.logcheck import audit_log
from scalegate.audit.trust import TrustFile
from scalegate.audit.witness import Witness, witness_ledger
from scalegate.errors import AppendConflict, AppendRefused, StoreError
from scalegate.ledger import LedgerReader, merkle
from scalegate.ledger._tables import EntryRow, format_time
from scalegate.ledger.checkpoint import open_checkpoint
from scalegate.ledger.cosignature import CosignatureVerifier
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import (
    ComputePredicate,
    KeyPredicate,
    PolicyRef,
    RunPredicate,
    sign_statement,
)
from scalegate.ledger.tlog_proof import verify_receipt

ORIGIN = "example.org/pg-log"
SCALEGATE = str(Path(sys.executable).with_name("scalegate"))




@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return pg_server.new_database()


def test_without_postgres_the_tests_skip_but_fail_where_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import conftest_pg

    monkeypatch.setattr(conftest_pg, "find_bindir", lambda: None)
    monkeypatch.delenv(conftest_pg.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"binaries .* were not found"):
        conftest_pg.start_server()
    monkeypatch.setenv(conftest_pg.REQUIRE_ENV, "1")  # as .ci/run sets it
    with pytest.raises(pytest.fail.Exception, match="is set, so this is a failure"):
        conftest_pg.start_server()


class Keys:
    def __init__(self) -> None:
        self.log = SigningKey.generate(ORIGIN)
        self.root = SigningKey.generate("acme/root")
        self.trainer = SigningKey.generate("acme/trainer")
        self.rso = SigningKey.generate("acme/rso")


def _register(key: SigningKey, root: SigningKey, roles: list[str]) -> bytes:
    return sign_statement(KeyPredicate(vkey=key.vkey.text(), org="acme", roles=roles,
                                       valid_from=datetime.now(UTC) - timedelta(days=1)),
                          root).to_bytes()


def _compute(key: SigningKey, run_id: str, step: int) -> bytes:
    return sign_statement(ComputePredicate(
        run_id=run_id, step=step, tokens=1e3 * step, flop_by_phase={"pretraining": 1e15 * step},
        effective_flop=1e15 * step, method="6ND", at=datetime.now(UTC)), key).to_bytes()


def _new_ledger(url: str, keys: Keys) -> Ledger:
    led = Ledger.create(url, ORIGIN, keys.log, [keys.root.vkey])
    led.append(_register(keys.trainer, keys.root, ["trainer"]))
    return led


def test_create_append_checkpoint_proofs_receipt_verify(pg_url: str) -> None:
    keys = Keys()
    with _new_ledger(pg_url, keys) as led:
        assert led.path == pg_url and led.size == 1
        datas = [_compute(keys.trainer, "run-1", s) for s in range(37)]
        done = led.append_many(datas)
        assert [d.index for d in done] == list(range(1, 38))
        assert led.append(_compute(keys.trainer, "run-1", 37)).index == 38
        first_note = led.checkpoint()
        more = led.append_many([_compute(keys.trainer, "run-1", 38 + s) for s in range(5)])
        assert [d.index for d in more] == list(range(39, 44))

    with Ledger.open(pg_url, log_key=keys.log) as led:  # everything survives a reopen
        n = led.size
        assert n == 44
        entries = led.entries()
        assert [e.data for e in entries[1:38]] == datas  # bytes round-trip exactly (bytea)
        assert [e.statement.predicate.step for e in led.entries(run_id="run-1")] == list(range(43))
        assert [e.index for e in led.entries(kind="key")] == [0]
        leaves = [e.leaf_hash for e in entries]
        assert leaves == [merkle.leaf_hash(e.data) for e in entries]
        root = merkle.root(leaves)
        assert led.root() == root and led.root(39) == merkle.root(leaves[:39])

        cp, _ = open_checkpoint(led.checkpoint(), keys.log.vkey, origin=ORIGIN)
        assert (cp.size, cp.root_hash) == (n, root)
        old, _ = open_checkpoint(first_note, keys.log.vkey)
        assert old.size == 39 and led.checkpoints()[0] == (39, first_note)

        for i in (0, 1, 17, 31, 32, 38, n - 1):
            merkle.verify_inclusion(i, n, leaves[i], led.inclusion_proof(i), root)
            if i < 39:
                merkle.verify_inclusion(i, 39, leaves[i], led.inclusion_proof(i, 39),
                                        old.root_hash)
        for size1 in (1, 2, 7, 16, 32, 39, n):
            merkle.verify_consistency(size1, n, led.consistency_proof(size1), merkle.root(
                leaves[:size1]), root)
        merkle.verify_consistency(39, n, led.consistency_proof(39, n), old.root_hash, root)

        receipt = led.receipt(20)
        verified = verify_receipt(receipt, entries[20].data, keys.log.vkey, origin=ORIGIN)
        assert verified.index == 20

        report = led.verify()
        assert report.ok, report.problems
        assert report.size == n and report.root == root
        full = led.verify(full=True, workers=2)
        assert full.ok, full.problems


def test_a_refused_batch_writes_nothing(pg_url: str) -> None:
    keys = Keys()
    stranger = SigningKey.generate("acme/stranger")  # never registered
    with _new_ledger(pg_url, keys) as led:
        led.append_many([_compute(keys.trainer, "r", s) for s in range(3)])
        before = (led.size, led.root())
        with led.store.reader() as conn:
            nodes_before = led.store.node_counts(conn)
        batch = [_compute(keys.trainer, "r", 3), _compute(keys.trainer, "r", 4),
                 _compute(stranger, "r", 5), _compute(keys.trainer, "r", 6)]
        with pytest.raises(AppendRefused, match="envelope 2 of the batch"):
            led.append_many(batch)
        # A batch that registers a key and then uses it is one transaction too: refused as a
        # whole (the third envelope is unsigned by anyone known), the key is not kept.
        with pytest.raises(AppendRefused):
            led.append_many([_register(keys.rso, keys.root, ["rso"]),
                             _compute(keys.rso, "r", 3), _compute(stranger, "r", 4)])
        assert (led.size, led.root()) == before
        with led.store.reader() as conn:
            assert led.store.node_counts(conn) == nodes_before
            assert [k.keyid for k in led.store.load_keys(conn)] == [keys.trainer.vkey.keyid]
        # A batch built for another log size is refused whole too (compare-and-swap).
        with pytest.raises(AppendConflict):
            led.append_many([_compute(keys.trainer, "r", 3)], at_index=before[0] - 1)
        assert (led.size, led.root()) == before
        # The log goes on at the next index, as if nothing had been tried.
        assert led.append_many([_compute(keys.trainer, "r", 3)], at_index=before[0])[0].index \
            == before[0]
        report = led.verify()
        assert report.ok, report.problems


def test_a_reader_sees_one_snapshot_while_others_append(pg_url: str) -> None:
    keys = Keys()
    with _new_ledger(pg_url, keys) as led, Ledger.open(pg_url) as other:
        led.append_many([_compute(keys.trainer, "r", s) for s in range(4)])
        with led.store.reader() as conn:
            n = led.store.size_in(conn)
            counts = led.store.node_counts(conn)
            other.append_many([_compute(keys.trainer, "r", 4 + s) for s in range(4)])
            # Same transaction, after another process committed: still the old log.
            assert led.store.size_in(conn) == n == 5
            assert led.store.node_counts(conn) == counts
        assert led.size == 9


def test_writers_sequence_and_sync_whatever_the_database_defaults(
    pg_server: PostgresServer, pg_url: str
) -> None:
    """A database defaulting to REPEATABLE READ and synchronous_commit=off: a writer that
    waited for the lock still sees the entry committed meanwhile, and commits durably."""
    import psycopg

    admin = psycopg.connect(host=str(pg_server.dir), port=pg_server.port, user="postgres",
                            dbname="postgres", autocommit=True)
    db = make_url(pg_url).database
    admin.execute(f"ALTER DATABASE {db} SET default_transaction_isolation TO 'repeatable read'")
    admin.execute(f"ALTER DATABASE {db} SET synchronous_commit TO off")
    keys = Keys()
    got: list[object] = []
    with _new_ledger(pg_url, keys) as led, Ledger.open(pg_url) as other:
        with led.store.writer() as w:
            assert w.conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
            assert w.conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1min"  # not forever
            waiting = threading.Thread(target=lambda: got.append(_try(
                other.append_many, [_compute(keys.trainer, "r", s) for s in (1, 2)])))
            waiting.start()  # it blocks on the sequencer lock, its transaction begun
            deadline = time.monotonic() + 20
            while not admin.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                    "AND NOT granted").fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "the second writer never waited"
                time.sleep(0.02)
            data = _compute(keys.trainer, "r", 0)
            leaf = merkle.leaf_hash(data)
            nodes = led.store.compact_range(w.conn, w.size).append(leaf)[1:]
            w.add([EntryRow(w.size, leaf, data, "compute", "r", keys.trainer.vkey.keyid,
                            format_time(datetime.now(UTC)))], nodes)
        waiting.join(60)
        (result,) = got
        assert not isinstance(result, Exception), result
        assert [r.index for r in result] == [2, 3]  # type: ignore[attr-defined]
        assert [e.statement.predicate.step for e in led.entries(run_id="r")] == [0, 1, 2]
        report = led.verify()
        assert report.ok, report.problems
    admin.close()


def _try(fn: Callable[..., object], *args: object) -> object:
    try:
        return fn(*args)
    except Exception as exc:
        return exc


def test_create_refuses_a_ledger_and_open_refuses_a_non_ledger(
    pg_server: PostgresServer, pg_url: str
) -> None:
    keys = Keys()
    with pytest.raises(StoreError, match="not a scalegate ledger"):
        Ledger.open(pg_url)  # an empty database
    _new_ledger(pg_url, keys).close()
    with pytest.raises(StoreError, match="already holds one"):
        Ledger.create(pg_url, ORIGIN, keys.log, [keys.root.vkey])
    with pytest.raises(StoreError, match="cannot"):
        Ledger.open(pg_server.url("no_such_database"))
    with Ledger.open(pg_url) as led:
        assert led.size == 1


def test_a_password_in_the_url_is_not_shown(pg_url: str) -> None:
    keys = Keys()
    _new_ledger(pg_url, keys).close()
    secret = pg_url.replace("postgres@", "postgres:s3cr3t-pw@")  # trust auth ignores it
    with Ledger.open(secret) as led:
        assert "s3cr3t" not in led.path and "***" in led.path
        assert led.verify().ok
        assert "s3cr3t" not in led.verify(workers=2).path  # helpers open their own connections
    with LedgerReader.open(secret) as reader:
        assert "s3cr3t" not in reader.where and reader.size() == 1


WRITERS, BATCHES, BATCH = 4, 5, 20


def _writer_ledger(url: str, tmp: Path) -> tuple[Path, SigningKey]:
    keys = Keys()
    key_file = tmp / "trainer.key"
    keys.trainer.save(key_file)
    _new_ledger(url, keys).close()
    return key_file, keys.log


@pytest.mark.slow
def test_concurrent_writer_processes_get_distinct_gap_free_indices(
    pg_url: str, tmp_path: Path
) -> None:
    key_file, _ = _writer_ledger(pg_url, tmp_path)
    run_concurrent_writers(pg_url, key_file, WRITERS, BATCHES, BATCH, timeout=120)


KILL_BATCH = 96


@pytest.mark.slow
def test_sigkill_mid_batch_loses_no_acknowledged_entry(pg_url: str, tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    key_file, log_key = _writer_ledger(pg_url, tmp_path)
    for rnd in range(3):
        run_id = f"run-{rnd}"
        done = kill_mid_batch(pg_url, key_file, run_id, KILL_BATCH, rng.uniform(0.0, 0.8), seed)

        # The server rolls back the dead client's transaction and frees the sequencer lock.
        with Ledger.open(pg_url, log_key=log_key) as led:
            leaves = check_survivors(led, log_key, run_id, done, KILL_BATCH, seed)
            # And the next writer appends right after the survivors.
            trainer = SigningKey.load(key_file)
            assert led.append(_compute(trainer, "after", 0)).index == len(leaves)


# --- the auditor and the CLI on a PostgreSQL URL ---------------------------------------------


def _witnessed(url: str, tmp: Path) -> TrustFile:
    """A ledger with a run and computes, its checkpoint cosigned by two witnesses; its trust."""
    keys = Keys()
    witnesses = [SigningKey.generate(f"witness.example/w{i}") for i in (1, 2)]
    with _new_ledger(url, keys) as led:
        led.append(sign_statement(RunPredicate(
            run_id="run-1", org="acme", model="tiny",
            policy=PolicyRef(id="demo", version="1", digest="0" * 64),
            started_at=datetime.now(UTC)), keys.trainer))
        led.append_many([_compute(keys.trainer, "run-1", s) for s in range(1, 25)])
        led.checkpoint()
        for i, w in enumerate(witnesses):
            witness_ledger(led, Witness(tmp / f"witness{i}.json", w, {ORIGIN: keys.log.vkey}))
    return TrustFile.model_validate({
        "log": {"origin": ORIGIN, "key": keys.log.vkey.text()},
        "witnesses": {w.name: CosignatureVerifier.from_key(w).text() for w in witnesses},
        "witness_quorum": 2,
        "org_roots": {"acme": [keys.root.vkey.text()]},
        "roles": {},
    })


def test_the_auditor_reads_a_postgres_ledger(pg_url: str, tmp_path: Path) -> None:
    trust = _witnessed(pg_url, tmp_path)
    rep = audit_log(pg_url, trust, use_state=False)
    assert rep.ok and rep.exit_code == 0, rep.to_json_data()
    assert all(c.ok for c in rep.checks), rep.checks
    with Ledger.open(pg_url) as led:
        n = led.size
        assert rep.size == n == 26 and rep.root_hash == led.root().hex()
    assert rep.checkpoint is not None and rep.checkpoint.size == n
    assert rep.checkpoint.cosigned_by == ["witness.example/w1", "witness.example/w2"]
    assert rep.counts["entries"] == n and rep.counts["signatures"] == n

    # A row changed behind the ledger's back is found by the audit over PostgreSQL.
    with Ledger.open(pg_url) as led, led.store.writer() as w:
        w.conn.exec_driver_sql("UPDATE entries SET run_id = 'run-2' WHERE idx = 5")
    bad = audit_log(pg_url, trust, use_state=False)
    assert not bad.ok and bad.exit_code != 0, bad.to_json_data()


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCALEGATE, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=120)


def _trust_file(url: str, tmp: Path) -> Path:
    path = tmp / "trust.yaml"
    path.write_text(_witnessed(url, tmp).to_yaml(), encoding="utf-8")
    return path


def test_cli_audit_of_a_postgres_ledger(pg_url: str, tmp_path: Path) -> None:
    trust_file = _trust_file(pg_url, tmp_path)
    for how, env in ((["--ledger", pg_url], None), ([], {"SCALEGATE_LEDGER": pg_url})):
        res = _cli("verify", "--trust", str(trust_file), "--no-state", "--no-replay", "--json",
                   *how, cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert '"ok": true' in res.stdout


def test_cli_ledger_verify_of_a_postgres_ledger(pg_url: str, tmp_path: Path) -> None:
    _writer_ledger(pg_url, tmp_path)  # signs a checkpoint on closing (the counter, here too)
    for how, env in ((["--ledger", pg_url], None), ([], {"SCALEGATE_LEDGER": pg_url})):
        res = _cli("ledger", "verify", "--json", *how, cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert '"ok": true' in res.stdout and '"size": 1' in res.stdout
        assert '"checkpoints_issued": 1' in res.stdout
    assert list(tmp_path.iterdir()) == [tmp_path / "trainer.key"]  # no SQLite file was made
