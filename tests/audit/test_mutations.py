"""Issue 7 §2: random tampering with a real ledger file is always caught by the audit.

A ledger of 173 entries is built with real keys, real signatures, three witnessed
checkpoints and an auditor that has accepted its latest checkpoint. Each mutation is
applied with :mod:`sqlite3` to a fresh copy of the file: bytes flipped, rows deleted,
reordered, retyped and truncated, in the entries (data, leaf hashes, derived columns),
the interior nodes and the checkpoints; plus forged entries, with and without a
consistently rebuilt stored tree. Every mutated copy must make the audit
fail: violations found, or could not verify.

Not mutated, by design: ``meta`` and ``keys`` (the auditor does not read them as
truth), ``appended_at`` (not covered by the tree; only its order and its agreement
with witness times can be checked), and the deletion of an *older* checkpoint row
(harmless: the tree and the newer checkpoints still commit to everything).
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scalegate.audit.logcheck import audit_log
from scalegate.ledger import merkle
from scalegate.ledger.statements import ComputePredicate, sign_statement

from .conftest import T0, Lab, make_lab

N_MUTATIONS = 504  # 24 per family
Mutation = Callable[[sqlite3.Connection, random.Random], str]


def _flip(b: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(b))
    return b[:i] + bytes([b[i] ^ rng.randrange(1, 256)]) + b[i + 1 :]


def _idx(con: sqlite3.Connection, rng: random.Random) -> int:
    n = con.execute("SELECT max(idx) FROM entries").fetchone()[0] + 1
    return rng.randrange(n)


def _node(con: sqlite3.Connection, rng: random.Random) -> tuple[int, int, bytes]:
    rows = con.execute("SELECT level, idx, hash FROM nodes").fetchall()
    return rows[rng.randrange(len(rows))]


def data_flip(con: sqlite3.Connection, rng: random.Random) -> str:
    i = _idx(con, rng)
    (data,) = con.execute("SELECT data FROM entries WHERE idx = ?", (i,)).fetchone()
    con.execute("UPDATE entries SET data = ? WHERE idx = ?", (_flip(data, rng), i))
    return f"flip a byte of entry {i}'s data"


def data_truncate(con: sqlite3.Connection, rng: random.Random) -> str:
    i = _idx(con, rng)
    (data,) = con.execute("SELECT data FROM entries WHERE idx = ?", (i,)).fetchone()
    k = rng.randrange(len(data))
    con.execute("UPDATE entries SET data = ? WHERE idx = ?", (data[:k], i))
    return f"truncate entry {i}'s data to {k} bytes"


def leaf_flip(con: sqlite3.Connection, rng: random.Random) -> str:
    i = _idx(con, rng)
    (h,) = con.execute("SELECT leaf_hash FROM entries WHERE idx = ?", (i,)).fetchone()
    con.execute("UPDATE entries SET leaf_hash = ? WHERE idx = ?", (_flip(h, rng), i))
    return f"flip a byte of entry {i}'s leaf hash"


def leaf_truncate(con: sqlite3.Connection, rng: random.Random) -> str:
    i = _idx(con, rng)
    k = rng.randrange(32)
    con.execute("UPDATE entries SET leaf_hash = substr(leaf_hash, 1, ?) WHERE idx = ?", (k, i))
    return f"truncate entry {i}'s leaf hash to {k} bytes"


def entry_delete(con: sqlite3.Connection, rng: random.Random) -> str:
    i = _idx(con, rng)
    con.execute("DELETE FROM entries WHERE idx = ?", (i,))
    return f"delete entry {i}"


def entries_swap(con: sqlite3.Connection, rng: random.Random) -> str:
    i = _idx(con, rng)
    j = _idx(con, rng)
    while j == i:
        j = _idx(con, rng)
    a = con.execute("SELECT data, leaf_hash FROM entries WHERE idx = ?", (i,)).fetchone()
    b = con.execute("SELECT data, leaf_hash FROM entries WHERE idx = ?", (j,)).fetchone()
    con.execute("UPDATE entries SET data = ?, leaf_hash = ? WHERE idx = ?", (*b, i))
    con.execute("UPDATE entries SET data = ?, leaf_hash = ? WHERE idx = ?", (*a, j))
    return f"swap entries {i} and {j} (data and leaf hash)"


def tail_truncate(con: sqlite3.Connection, rng: random.Random) -> str:
    k = _idx(con, rng)
    con.execute("DELETE FROM entries WHERE idx >= ?", (k,))
    return f"truncate the log to {k} entries"


def column_change(con: sqlite3.Connection, rng: random.Random) -> str:
    i = _idx(con, rng)
    col, value = rng.choice([("kind", "eval"), ("run_id", "run-other"),
                             ("signer", "acme/mallory+00000000")])
    con.execute(f"UPDATE entries SET {col} = ? WHERE idx = ?", (value, i))
    return f"set entry {i}'s {col} column to {value!r}"


def node_flip(con: sqlite3.Connection, rng: random.Random) -> str:
    level, i, h = _node(con, rng)
    con.execute("UPDATE nodes SET hash = ? WHERE level = ? AND idx = ?", (_flip(h, rng), level, i))
    return f"flip a byte of node ({level}, {i})"


def node_truncate(con: sqlite3.Connection, rng: random.Random) -> str:
    level, i, h = _node(con, rng)
    k = rng.randrange(32)
    con.execute("UPDATE nodes SET hash = ? WHERE level = ? AND idx = ?", (h[:k], level, i))
    return f"truncate node ({level}, {i}) to {k} bytes"


def node_delete(con: sqlite3.Connection, rng: random.Random) -> str:
    level, i, _ = _node(con, rng)
    con.execute("DELETE FROM nodes WHERE level = ? AND idx = ?", (level, i))
    return f"delete node ({level}, {i})"


def nodes_swap(con: sqlite3.Connection, rng: random.Random) -> str:
    level, i, h = _node(con, rng)
    others = con.execute("SELECT idx, hash FROM nodes WHERE level = ? AND idx != ?",
                         (level, i)).fetchall()
    if not others:
        return node_flip(con, rng)
    j, g = others[rng.randrange(len(others))]
    con.execute("UPDATE nodes SET hash = ? WHERE level = ? AND idx = ?", (g, level, i))
    con.execute("UPDATE nodes SET hash = ? WHERE level = ? AND idx = ?", (h, level, j))
    return f"swap nodes ({level}, {i}) and ({level}, {j})"


def node_retype(con: sqlite3.Connection, rng: random.Random) -> str:
    level, i, _ = _node(con, rng)
    con.execute("UPDATE nodes SET idx = 'x' || idx WHERE level = ? AND idx = ?", (level, i))
    return f"turn node ({level}, {i})'s index into text"


def node_insert(con: sqlite3.Connection, rng: random.Random) -> str:
    level = rng.randrange(1, 12)
    i = rng.randrange(1000, 100000)
    con.execute("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)",
                (level, i, rng.randbytes(32)))
    return f"insert an extra node ({level}, {i})"


def _checkpoint(con: sqlite3.Connection, rng: random.Random) -> tuple[int, bytes, str]:
    rows = con.execute("SELECT size, root_hash, note FROM checkpoints").fetchall()
    return rows[rng.randrange(len(rows))]


def note_flip(con: sqlite3.Connection, rng: random.Random) -> str:
    size, _, note = _checkpoint(con, rng)
    raw = _flip(note.encode(), rng)
    con.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (raw, size))
    return f"flip a byte of the checkpoint note of size {size}"


def note_truncate(con: sqlite3.Connection, rng: random.Random) -> str:
    size, _, note = _checkpoint(con, rng)
    k = rng.randrange(len(note))
    con.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (note[:k], size))
    return f"truncate the checkpoint note of size {size} to {k} characters"


def checkpoint_root_flip(con: sqlite3.Connection, rng: random.Random) -> str:
    size, root, _ = _checkpoint(con, rng)
    con.execute("UPDATE checkpoints SET root_hash = ? WHERE size = ?", (_flip(root, rng), size))
    return f"flip a byte of the stored root of checkpoint {size}"


def checkpoint_resize(con: sqlite3.Connection, rng: random.Random) -> str:
    size, _, _ = _checkpoint(con, rng)
    new = size + rng.randrange(1000, 2000)
    con.execute("UPDATE checkpoints SET size = ? WHERE size = ?", (new, size))
    return f"move checkpoint {size} to size {new}"


def latest_checkpoint_delete(con: sqlite3.Connection, rng: random.Random) -> str:
    con.execute("DELETE FROM checkpoints WHERE size = (SELECT max(size) FROM checkpoints)")
    return "delete the latest checkpoint"


class _Forger:
    """Replaces an entry by another validly signed statement (the trainer's key leaked)."""

    def __init__(self, lab: Lab) -> None:
        self.key = lab.trainer

    def envelope(self, rng: random.Random) -> bytes:
        step = rng.randrange(10_000, 20_000)
        return sign_statement(ComputePredicate(
            run_id="run-1", step=step, tokens=1.0, flop_by_phase={"pretraining": 1e15},
            effective_flop=1e15, method="6ND", at=T0), self.key).to_bytes()

    def forge(self, con: sqlite3.Connection, rng: random.Random) -> str:
        i = _idx(con, rng)
        data = self.envelope(rng)
        con.execute("UPDATE entries SET data = ?, leaf_hash = ? WHERE idx = ?",
                    (data, merkle.leaf_hash(data), i))
        return f"replace entry {i} by a validly signed forgery (leaf hash fixed)"

    def rewrite(self, con: sqlite3.Connection, rng: random.Random) -> str:
        desc = self.forge(con, rng)
        leaves = [h for (h,) in con.execute("SELECT leaf_hash FROM entries ORDER BY idx")]
        con.execute("DELETE FROM nodes")
        compact = merkle.CompactRange()
        for h in leaves:
            con.executemany("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)",
                            compact.append(h)[1:])
        return desc + " and every stored node rebuilt to match"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lab, Path, Path]:
    directory = tmp_path_factory.mktemp("mutations")
    lab = make_lab(directory, computes=50)  # 173 entries, 3 witnessed checkpoints
    lab.checkpoint()
    lab.compute(60)
    lab.pause_and_approve()
    lab.checkpoint()
    lab.compute(55)
    lab.checkpoint()
    clean = lab.copy("clean.db")
    state = directory / "auditor.json"
    report = audit_log(clean, lab.trust(), state_path=state)
    assert report.ok, report.to_json_data()
    lab.ledger.close()
    return lab, clean, state


def test_every_random_mutation_is_detected(base: tuple[Lab, Path, Path], tmp_path: Path) -> None:
    lab, clean, state = base
    forger = _Forger(lab)
    mutations: list[Mutation] = [
        data_flip, data_truncate, leaf_flip, leaf_truncate, entry_delete, entries_swap,
        tail_truncate, column_change, node_flip, node_truncate, node_delete, nodes_swap,
        node_insert, node_retype, note_flip, note_truncate, checkpoint_root_flip,
        checkpoint_resize, latest_checkpoint_delete, forger.forge, forger.rewrite,
    ]
    trust = lab.trust()
    rng = random.Random(7)
    missed: list[str] = []
    kinds: dict[str, int] = {}
    start = time.perf_counter()
    for k in range(N_MUTATIONS):
        mutate = mutations[k % len(mutations)]
        copy, copy_state = tmp_path / "m.db", tmp_path / "m.json"
        shutil.copyfile(clean, copy)
        shutil.copyfile(state, copy_state)
        con = sqlite3.connect(copy)
        what = mutate(con, rng)
        con.commit()
        con.close()
        report = audit_log(copy, trust, state_path=copy_state, workers=1)
        if report.exit_code == 0:
            missed.append(what)
        for kind in report.violation_counts:
            kinds[kind] = kinds.get(kind, 0) + 1
        if report.could_not_verify and not report.violation_counts:
            kinds["(could not verify)"] = kinds.get("(could not verify)", 0) + 1
    elapsed = time.perf_counter() - start
    assert not missed, missed
    print(f"{N_MUTATIONS} mutations, all detected in {elapsed:.1f} s: {sorted(kinds.items())}")
    # Every family of finding was exercised.
    for kind in ("leaf-hash", "tree-node", "tree-root", "entry-missing", "log-truncated",
                 "index-mismatch", "checkpoint-invalid", "stale-checkpoint"):
        assert kinds.get(kind), (kind, kinds)
