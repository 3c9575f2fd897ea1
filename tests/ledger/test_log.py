"""The ledger API: appends, roots and proofs against the in-memory reference, checkpoints,
receipts, reading, reopening, the log key, and `verify` finding tampering."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scalegate.errors import IndexOutOfRange, KeyMaterialError, LedgerError, ProofError
from scalegate.ledger import merkle
from scalegate.ledger.checkpoint import open_checkpoint
from scalegate.ledger.envelope import Envelope
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import (
    ComputePredicate,
    KeyPredicate,
    KeyRevocationPredicate,
    sign_statement,
)
from scalegate.ledger.tlog_proof import LeafHash, verify_receipt

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ORIGIN = "example.org/scalegate-test"


@dataclass
class World:
    path: Path
    ledger: Ledger
    log_key: SigningKey
    root: SigningKey
    trainer: SigningKey

    def compute(self, step: int, run_id: str = "run-1", key: SigningKey | None = None) -> Envelope:
        pred = ComputePredicate(run_id=run_id, step=step, tokens=1e3 * step,
                                flop_by_phase={"pretraining": 1e15 * step},
                                effective_flop=1e15 * step, method="6ND", at=T0)
        return sign_statement(pred, key or self.trainer)


@pytest.fixture
def world(tmp_path: Path) -> World:
    log_key = SigningKey.generate(ORIGIN)
    key_file = tmp_path / "log.key"
    log_key.save(key_file)
    root, trainer = SigningKey.generate("acme/root"), SigningKey.generate("acme/trainer")
    path = tmp_path / "lab.db"
    led = Ledger.create(path, ORIGIN, key_file, [root.vkey], now=lambda: T0 + timedelta(days=1))
    led.append(sign_statement(KeyPredicate(vkey=trainer.vkey.text(), org="acme",
                                           roles=["trainer"], valid_from=T0), root))
    yield World(path, led, log_key, root, trainer)
    led.close()


def _fill(w: World, n: int) -> list[bytes]:
    """Append until the log has ``n`` entries; return all leaf hashes."""
    envs = [w.compute(i) for i in range(w.ledger.size, n)]
    for a in range(0, len(envs), 37):  # odd batch sizes exercise the compact range
        w.ledger.append_many(envs[a : a + 37])
    return [e.leaf_hash for e in w.ledger.entries()]


def test_append_returns_index_and_rfc6962_leaf_hash(world: World) -> None:
    env = world.compute(1)
    index, leaf = world.ledger.append(env)
    assert index == 1
    assert leaf == merkle.leaf_hash(env.to_bytes())
    stored = world.ledger.entry(1)
    assert stored.data == env.to_bytes() and stored.leaf_hash == leaf
    assert (stored.kind, stored.run_id, stored.signer) == ("compute", "run-1",
                                                          world.trainer.vkey.keyid)
    assert stored.appended_at == T0 + timedelta(days=1)
    assert stored.statement.predicate.step == 1


def test_append_accepts_envelope_bytes_in_any_json_layout(world: World) -> None:
    env = world.compute(2)
    pretty = Envelope.from_bytes(env.to_bytes()).model_dump_json(indent=2).encode()
    _, leaf = world.ledger.append(pretty)
    assert leaf == merkle.leaf_hash(env.to_bytes())  # stored canonically


def test_append_at_index_is_a_compare_and_swap(world: World) -> None:
    from scalegate.errors import AppendConflict

    a, b = world.compute(1), world.compute(2)
    with pytest.raises(AppendConflict, match="now holds 1 entries") as info:
        world.ledger.append_many([a, b], at_index=5)
    assert info.value.size == 1 and world.ledger.size == 1  # nothing written
    assert [r.index for r in world.ledger.append_many([a, b], at_index=1)] == [1, 2]
    # Another writer got in first: the stale batch is refused as a whole.
    other = Ledger.open(world.path, now=lambda: T0 + timedelta(days=1))
    other.append(world.compute(3))
    other.close()
    with pytest.raises(AppendConflict):
        world.ledger.append_many([world.compute(4)], at_index=3)
    assert world.ledger.size == 4


def test_roots_and_proofs_match_the_reference_tree(world: World) -> None:
    leaves = _fill(world, 70)
    led = world.ledger
    for size in range(0, 71):
        assert led.root(size) == merkle.root(leaves[:size])
    for size in [*range(1, 34), 63, 64, 65, 70]:
        root = merkle.root(leaves[:size])
        for index in range(size):
            proof = led.inclusion_proof(index, size)
            assert proof == merkle.inclusion_proof(index, leaves[:size])
            merkle.verify_inclusion(index, size, leaves[index], proof, root)
    for size2 in [1, 2, 3, 5, 8, 13, 16, 17, 31, 32, 33, 64, 70]:
        for size1 in range(1, size2 + 1):
            proof = led.consistency_proof(size1, size2)
            assert proof == merkle.consistency_proof(size1, leaves[:size2])
            merkle.verify_consistency(size1, size2, proof, led.root(size1), led.root(size2))


def test_proofs_stay_right_across_a_reopen_and_a_second_writer(world: World) -> None:
    _fill(world, 45)
    # a second handle (same clock) appends behind the first one's cache
    other = Ledger.open(world.path, now=lambda: T0 + timedelta(days=1))
    other.append_many([world.compute(1000 + i) for i in range(19)])
    other.close()
    world.ledger.append(world.compute(2000))  # the first handle must notice it is stale
    leaves = [e.leaf_hash for e in world.ledger.entries()]
    assert len(leaves) == 65
    assert world.ledger.root() == merkle.root(leaves)
    assert world.ledger.verify().ok


def test_out_of_range_requests_are_refused_clearly(world: World) -> None:
    _fill(world, 5)
    led = world.ledger
    with pytest.raises(IndexOutOfRange, match="the log has 5 entries"):
        led.entry(5)
    with pytest.raises(IndexOutOfRange, match=r"entries 0\.\.2"):
        led.inclusion_proof(3, 3)
    with pytest.raises(IndexOutOfRange, match="outside the log"):
        led.inclusion_proof(0, 6)
    with pytest.raises(IndexOutOfRange, match="between 0 and the second"):
        led.consistency_proof(4, 3)
    with pytest.raises(IndexOutOfRange):
        led.entry(-1)
    with pytest.raises(IndexOutOfRange, match="cannot prove entry 9"):
        led.receipt(9)
    with pytest.raises(IndexOutOfRange):
        led.entries(2, 9)


def test_entries_filter_by_kind_and_run(world: World) -> None:
    world.ledger.append_many([world.compute(i, run_id="a" if i % 2 else "b") for i in range(6)])
    assert [e.index for e in world.ledger.entries(kind="key")] == [0]
    assert [e.index for e in world.ledger.entries(run_id="a")] == [2, 4, 6]
    assert [e.index for e in world.ledger.entries(1, kind="compute", limit=2)] == [1, 2]
    assert [e.index for e in world.ledger.iter_entries(batch=2)] == list(range(7))


def test_checkpoint_is_a_signed_c2sp_note_issued_once_per_size(world: World) -> None:
    led = world.ledger
    note = led.checkpoint()
    cp, _ = open_checkpoint(note, world.log_key.vkey, origin=ORIGIN)
    assert (cp.size, cp.root_hash) == (1, led.root())
    assert led.checkpoint() == note and led.checkpoints() == [(1, note)]
    leaves = _fill(world, 9)
    note2 = led.checkpoint()
    cp2, _ = open_checkpoint(note2, world.log_key.vkey, origin=ORIGIN)
    assert (cp2.size, cp2.root_hash) == (9, merkle.root(leaves))
    assert led.latest_checkpoint() == note2
    proof = led.consistency_proof(cp.size, cp2.size)
    merkle.verify_consistency(cp.size, cp2.size, proof, cp.root_hash, cp2.root_hash)


def test_empty_ledger_checkpoint_has_the_empty_root(tmp_path: Path) -> None:
    log_key = SigningKey.generate(ORIGIN)
    led = Ledger.create(tmp_path / "e.db", ORIGIN, log_key, [SigningKey.generate("x/root").vkey])
    cp, _ = open_checkpoint(led.checkpoint(), log_key.vkey, origin=ORIGIN)
    assert cp.size == 0 and cp.root_hash == merkle.EMPTY_ROOT == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert led.verify().ok
    led.close()


def test_receipt_is_an_offline_tlog_proof(world: World) -> None:
    _fill(world, 12)
    entry = world.ledger.entry(7)
    receipt = world.ledger.receipt(7)
    assert receipt.startswith("c2sp.org/tlog-proof@v1\nindex 7\n")
    got = verify_receipt(receipt, entry.data, world.log_key.vkey, origin=ORIGIN)
    assert got.index == 7 and got.checkpoint.size == 12
    verify_receipt(receipt, LeafHash(entry.leaf_hash), world.log_key.vkey)
    with pytest.raises(ProofError):
        verify_receipt(receipt, world.ledger.entry(8).data, world.log_key.vkey)


def test_log_key_is_found_from_the_recorded_path_or_refused(world: World, tmp_path: Path) -> None:
    world.ledger.close()
    reopened = Ledger.open(world.path)  # no key passed: the recorded key file is used
    open_checkpoint(reopened.checkpoint(), world.log_key.vkey)
    reopened.close()
    with pytest.raises(KeyMaterialError, match="not this ledger's log key"):
        Ledger.open(world.path, log_key=SigningKey.generate(ORIGIN))
    # A ledger created from an in-memory key records no path: signing needs the key.
    bare = Ledger.create(tmp_path / "bare.db", ORIGIN, SigningKey.generate(ORIGIN),
                         [world.root.vkey])
    bare.close()
    bare = Ledger.open(tmp_path / "bare.db")
    with pytest.raises(LedgerError, match="no log key file recorded"):
        bare.checkpoint()
    bare.close()


def test_create_refuses_bad_origin_and_no_roots(tmp_path: Path) -> None:
    key = SigningKey.generate(ORIGIN)
    with pytest.raises(LedgerError, match="origin"):
        Ledger.create(tmp_path / "a.db", "two\nlines", key, [key.vkey])
    with pytest.raises(LedgerError, match="at least one organisation root"):
        Ledger.create(tmp_path / "b.db", ORIGIN, key, [])
    assert not (tmp_path / "a.db").exists() and not (tmp_path / "b.db").exists()


# --- verify -------------------------------------------------------------------------------


def _tamper(path: Path, sql: str) -> None:
    con = sqlite3.connect(path)
    con.execute(sql)
    con.commit()
    con.close()


def test_verify_passes_on_an_honest_ledger(world: World) -> None:
    _fill(world, 40)
    world.ledger.checkpoint()
    report = world.ledger.verify()
    assert report.ok, report.problems
    assert (report.size, report.entries_checked, report.signatures_checked) == (40, 40, 40)
    assert report.nodes_checked == sum(40 >> lvl for lvl in range(1, 7))
    assert report.checkpoints_checked == 1 and report.latest_checkpoint == 40
    assert report.root == merkle.root([e.leaf_hash for e in world.ledger.entries()])


def test_verify_reports_progress_up_to_the_whole_log(world: World) -> None:
    _fill(world, 30)
    for workers in (1, 2):
        seen: list[tuple[int, int]] = []
        assert world.ledger.verify(workers=workers, progress=lambda d, t, s=seen: s.append(
            (d, t))).ok
        done = [d for d, _ in seen]
        assert done == sorted(done) and seen[-1] == (world.ledger.size, world.ledger.size)


def test_verify_in_helper_processes_agrees(world: World) -> None:
    _fill(world, 40)
    world.ledger.append(sign_statement(KeyRevocationPredicate(
        vkey=world.trainer.vkey.text(), reason="rotated", revoked_at=T0 + timedelta(days=2)),
        world.root))
    one, two = world.ledger.verify(workers=1), world.ledger.verify(workers=2)
    assert one.ok and two.ok
    assert (one.root, one.signatures_checked, one.keys) == (two.root, two.signatures_checked,
                                                            two.keys)


@pytest.mark.parametrize(
    ("sql", "expect"),
    [
        ("UPDATE entries SET data = replace(data, 'a', 'b') WHERE idx = 7",
         "stored leaf hash is not the hash of its data"),
        ("UPDATE entries SET leaf_hash = zeroblob(32) WHERE idx = 3",
         "stored leaf hash is not the hash of its data"),
        ("UPDATE nodes SET hash = zeroblob(32) WHERE level = 2 AND idx = 3",
         "tree node (level 2, index 3) is not the hash"),
        ("DELETE FROM nodes WHERE level = 1 AND idx = 5",
         "tree node (level 1, index 5) is missing"),
        ("UPDATE entries SET kind = 'eval' WHERE idx = 4", "indexed kind/run"),
        ("UPDATE entries SET signer = 'acme/root+00000000' WHERE idx = 4", "recorded signer"),
        ("UPDATE keys SET roles = '[\"ciso\"]'", "keys table"),
        ("UPDATE checkpoints SET note = replace(note, '21', '22')", "checkpoint for size 21"),
    ],
)
def test_verify_finds_tampering(world: World, sql: str, expect: str) -> None:
    _fill(world, 21)
    world.ledger.checkpoint()
    _tamper(world.path, sql)
    report = world.ledger.verify()
    assert not report.ok
    assert any(expect in p for p in report.problems), report.problems
    # Helper processes read the chunks themselves; they find exactly the same.
    assert world.ledger.verify(workers=2).problems == report.problems


def test_verify_finds_a_swapped_envelope_with_a_valid_signature(world: World) -> None:
    """Replacing an entry by another validly signed one breaks the tree, not the signature."""
    _fill(world, 10)
    world.ledger.checkpoint()
    forged = world.compute(999).to_bytes()
    leaf = merkle.leaf_hash(forged)
    con = sqlite3.connect(world.path)
    con.execute("UPDATE entries SET data = ?, leaf_hash = ? WHERE idx = 6", (forged, leaf))
    con.commit()
    con.close()
    report = world.ledger.verify()
    assert not report.ok
    assert any("tree node (level 1, index 3)" in p for p in report.problems), report.problems
