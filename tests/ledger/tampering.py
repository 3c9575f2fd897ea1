"""What someone who can write a ledger's SQLite file (but holds no key) can do to it:
delete entries and rebuild the tree so that every stored hash agrees again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from scalegate.ledger import merkle


def delete_entries(db: Path, indices: list[int], *, checkpoints: bool = True) -> None:
    """Delete the entries at ``indices`` (and, by default, every checkpoint), close the gaps
    by renumbering the entries after them, and rebuild the tree from what is left."""
    con = sqlite3.connect(db)
    with con:
        for i in indices:
            con.execute("DELETE FROM entries WHERE idx = ?", (i,))
        if checkpoints:
            con.execute("DELETE FROM checkpoints")
        rows = con.execute("SELECT idx FROM entries ORDER BY idx").fetchall()
        for new, (old,) in enumerate(rows):
            if new != old:
                con.execute("UPDATE entries SET idx = ? WHERE idx = ?", (new, old))
    con.close()
    rebuild_tree(db)


def rebuild_tree(db: Path) -> None:
    """Recompute every interior node from the entries' leaf hashes."""
    con = sqlite3.connect(db)
    with con:
        leaves = [bytes(h) for (h,) in con.execute("SELECT leaf_hash FROM entries ORDER BY idx")]
        con.execute("DELETE FROM nodes")
        compact = merkle.CompactRange()
        nodes: list[tuple[int, int, bytes]] = []
        for h in leaves:
            nodes.extend(compact.append(h)[1:])
        con.executemany("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
    con.close()
