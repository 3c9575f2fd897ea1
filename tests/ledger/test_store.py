"""The SQLite store: creating, opening damaged files, O(log n) reads, atomic batches."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from scalegate.errors import StoreError
from scalegate.ledger import merkle
from scalegate.ledger._store import LedgerStore
from scalegate.ledger._tables import EntryRow
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import ComputePredicate, KeyPredicate, sign_statement

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _ledger(path: Path, n: int) -> tuple[Ledger, SigningKey]:
    root, trainer = SigningKey.generate("acme/root"), SigningKey.generate("acme/trainer")
    led = Ledger.create(path, "example.org/log", SigningKey.generate("example.org/log"),
                        [root.vkey], now=lambda: T0 + timedelta(hours=1))
    led.append(sign_statement(KeyPredicate(vkey=trainer.vkey.text(), org="acme",
                                           roles=["trainer"], valid_from=T0), root))
    envs = [sign_statement(ComputePredicate(run_id="r", step=i, tokens=1.0, effective_flop=1.0,
                                            flop_by_phase={"pretraining": 1.0}, method="6ND",
                                            at=T0), trainer) for i in range(n - 1)]
    for a in range(0, len(envs), 256):
        led.append_many(envs[a : a + 256])
    return led, trainer


def test_create_refuses_an_existing_file(tmp_path: Path) -> None:
    p = tmp_path / "x.db"
    p.write_bytes(b"something")
    with pytest.raises(StoreError, match="already exists"):
        LedgerStore.create(p, {"origin": "o"})
    assert p.read_bytes() == b"something"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", "not an SQLite database"),
        (b"hello, I am not a database" * 10, "not an SQLite database"),
    ],
)
def test_open_refuses_missing_empty_and_foreign_files(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    p = tmp_path / "x.db"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(StoreError, match=message):
        LedgerStore.open(p)
    # Nothing was created or written.
    assert (p.read_bytes() == content) if content is not None else not p.exists()
    assert not Path(f"{p}-wal").exists()


def test_open_refuses_an_sqlite_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    p = tmp_path / "other.db"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a scalegate ledger"):
        LedgerStore.open(p)


def test_open_refuses_a_truncated_ledger(tmp_path: Path) -> None:
    p = tmp_path / "lab.db"
    led, _ = _ledger(p, 600)
    led.close()  # the last connection checkpoints the WAL into the main file
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="truncated"):
        Ledger.open(p)
    assert p.stat().st_size == len(data) // 2


def test_a_writer_killed_while_checkpointing_the_wal_leaves_a_ledger_that_opens(
        tmp_path: Path) -> None:
    # A WAL checkpoint writes page 1 (the header, with the grown page count) before the pages
    # that grow the file; a writer killed in between leaves a main file shorter than its
    # header says, and a WAL that still holds it all. Found by benchmarks/bench_sigkill.py
    # (after ~900 kills): the ledger was refused as truncated.
    import shutil

    p = tmp_path / "lab.db"
    led, trainer = _ledger(p, 50)
    led.close()  # checkpointed: the main file holds everything so far
    hold = sqlite3.connect(p)  # a second connection keeps the WAL from being checkpointed
    hold.execute("SELECT count(*) FROM sqlite_master").fetchall()
    with Ledger.open(p) as led:
        led.append_many([sign_statement(ComputePredicate(
            run_id="r2", step=i, tokens=1.0, effective_flop=1.0,
            flop_by_phase={"pretraining": 1.0}, method="6ND", at=T0), trainer)
            for i in range(300)])
    crash = tmp_path / "crash"
    crash.mkdir()
    shutil.copy(p, crash / "lab.db")
    shutil.copy(f"{p}-wal", crash / "lab.db-wal")
    hold.close()
    wal = (crash / "lab.db-wal").read_bytes()
    size = int.from_bytes(wal[8:12], "big")
    page_one = max(at + 24 for at in range(32, len(wal), 24 + size)
                   if int.from_bytes(wal[at:at + 4], "big") == 1)
    db = bytearray((crash / "lab.db").read_bytes())
    db[:size] = wal[page_one:page_one + size]  # the checkpoint wrote page 1, then was killed
    (crash / "lab.db").write_bytes(bytes(db))
    assert int.from_bytes(db[28:32], "big") * size > len(db)  # the header says more
    with Ledger.open(crash / "lab.db") as led:
        assert led.size == 350
        assert led.verify().ok


@pytest.mark.parametrize("page", [2, 5, -3])
def test_garbage_inside_a_ledger_is_refused_or_reported(tmp_path: Path, page: int) -> None:
    p = tmp_path / "lab.db"
    led, _ = _ledger(p, 300)
    led.close()
    data = bytearray(p.read_bytes())
    at = (page if page > 0 else len(data) // 4096 + page) * 4096
    data[at : at + 4096] = b"\xa5" * 4096  # overwrite one B-tree page
    p.write_bytes(bytes(data))
    try:
        damaged = Ledger.open(p)
    except StoreError as exc:
        assert "damaged" in str(exc) or "malformed" in str(exc)
        return
    try:
        report = damaged.verify()
    except StoreError as exc:
        assert "damaged" in str(exc) or "malformed" in str(exc)
        return
    finally:
        damaged.close()
    assert not report.ok and report.problems


def test_interior_nodes_are_stored_per_level(tmp_path: Path) -> None:
    led, _ = _ledger(tmp_path / "lab.db", 600)
    with led.store.reader() as conn:
        counts = led.store.node_counts(conn)
        assert counts == {lvl: 600 >> lvl for lvl in range(1, 10)}
        leaves = [e.leaf_hash for e in led.entries()]
        # Node (level, idx) is the hash of leaves [idx << level, (idx + 1) << level).
        for lvl, idx in [(1, 0), (3, 17), (9, 0), (5, 17)]:
            (got,) = led.store.nodes_at(conn, lvl, idx, idx + 1)
            assert got[1] == merkle.root(leaves[idx << lvl : (idx + 1) << lvl])


def _trace(led: Ledger) -> list[str]:
    """Every SQL statement SQLite runs from now on (parameters expanded)."""
    seen: list[str] = []

    @event.listens_for(led.store.engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.set_trace_callback(seen.append)

    led.store.engine.dispose()  # new connections carry the callback
    led.size  # noqa: B018 - open one
    seen.clear()
    return seen


def test_proofs_read_few_rows_through_indexes(tmp_path: Path) -> None:
    led, _ = _ledger(tmp_path / "lab.db", 1100)
    statements = _trace(led)
    proof = led.inclusion_proof(734, 1099)
    cproof = led.consistency_proof(377, 1099)
    reads = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert len(reads) == 4, statements  # size + hashes, for each proof
    assert len(proof) <= 11 and len(cproof) <= 2 * 11
    # Every statement a proof runs is answered from an index, never a table scan.
    con = sqlite3.connect(tmp_path / "lab.db")
    for sql in reads:
        plan = con.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        details = " ".join(str(row[-1]) for row in plan)
        assert "SCAN entries" not in details and "SCAN nodes" not in details, details
        assert "SCAN n " not in details + " ", details
    con.close()


def test_proof_work_does_not_grow_with_the_log(tmp_path: Path) -> None:
    """SQLite VM steps for a proof at 4x the size stay nearly flat (O(log n), not O(n))."""
    led, trainer = _ledger(tmp_path / "lab.db", 256)
    ticks = [0]

    def tick() -> int:
        ticks[0] += 1
        return 0

    @event.listens_for(led.store.engine, "connect")
    def _instrument(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.set_progress_handler(tick, 1)

    led.store.engine.dispose()  # new connections carry the handler

    def steps(index: int, size: int) -> int:
        led.size  # noqa: B018 - warm the pool
        ticks[0] = 0
        led.inclusion_proof(index, size)
        return ticks[0]

    small = steps(100, 256)
    envs = [sign_statement(ComputePredicate(run_id="r", step=256 + i, tokens=1.0,
                                            effective_flop=1.0,
                                            flop_by_phase={"pretraining": 1.0}, method="6ND",
                                            at=T0), trainer) for i in range(768)]
    led.append_many(envs)
    large = steps(100, 1024)
    assert small > 0
    assert large < 2 * small, (small, large)


def test_writer_rolls_back_everything_on_error(tmp_path: Path) -> None:
    led, _ = _ledger(tmp_path / "lab.db", 10)
    before = (led.size, led.root())
    row = led.entries(3, 4)[0]
    with pytest.raises(RuntimeError), led.store.writer() as w:
        w.add([EntryRow(w.size, row.leaf_hash, row.data, row.kind, row.run_id, row.signer,
                        "2026-01-01T00:00:00.000000Z")], [])
        raise RuntimeError("crash between insert and commit")
    assert (led.size, led.root()) == before


def test_writer_refuses_a_batch_that_does_not_continue_the_log(tmp_path: Path) -> None:
    led, _ = _ledger(tmp_path / "lab.db", 10)
    row = led.entries(3, 4)[0]
    with pytest.raises(StoreError, match="internal"), led.store.writer() as w:
        w.add([EntryRow(w.size + 1, row.leaf_hash, row.data, row.kind, None, row.signer,
                        "2026-01-01T00:00:00.000000Z")], [])
    assert led.size == 10


def test_sqlite_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    led, _ = _ledger(tmp_path / "lab.db", 3)
    with led.store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


def test_a_path_with_url_syntax_in_it_is_a_path(tmp_path: Path) -> None:
    # '#', '%20', '?' and spaces mean something in a URL; in a file name they are letters.
    odd = tmp_path / "lab #1 %20 é ?x=1"
    odd.mkdir()
    led, _ = _ledger(odd / "my ledger.db", 40)
    assert sorted(p.name for p in odd.iterdir() if p.suffix == ".db") == ["my ledger.db"]
    assert led.verify(workers=2).ok  # helper processes reopen it by the same path
    led.close()
    with Ledger.open(odd / "my ledger.db") as again:
        assert again.size == 40
