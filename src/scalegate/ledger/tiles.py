"""C2SP ``tlog-tiles``: the log as static resources (https://c2sp.org/tlog-tiles).

A log of ``size`` entries is served as its checkpoint (``/checkpoint``), hash tiles
(``/tile/<L>/<N>[.p/<W>]``) and entry bundles (``/tile/entries/<N>[.p/<W>]``):

- tile ``N`` at level ``L`` lists up to 256 consecutive Merkle Tree Hashes at tree height
  ``8 L``, starting at hash ``256 N``: at level 0 the leaf hashes, above that each hash
  is the root of a full tile below. A full tile is 256 hashes (8,192 bytes) and never
  changes; the rightmost tile of a level is partial (``.p/<W>``, ``1 <= W <= 255``) and
  holds the first ``W`` of its hashes;
- ``N`` is written in 3-digit path elements, all but the last prefixed with ``x``
  (``1234067`` → ``x001/x234/067``);
- an entry bundle lists the entries of the matching level-0 tile, each as a big-endian
  uint16 length and the entry's bytes (here: the canonical DSSE envelope), so an entry
  is at most :data:`MAX_ENTRY_BYTES` long (the log refuses longer ones when appended).

This module is the format only: paths, which tiles a tree of a given size has, and the
bundle encoding. The ledger serves tiles from its store (:meth:`Ledger.tile`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from scalegate.errors import ProofError

__all__ = [
    "HASH_BYTES",
    "MAX_ENTRY_BYTES",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "bundle",
    "parse_bundle",
    "parse_tile_path",
    "tiles_of",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # hashes in a full tile
HASH_BYTES = 32
MAX_ENTRY_BYTES = 0xFFFF  # an entry bundle's uint16 length prefix

_N = r"(?:x[0-9]{3}/)*[0-9]{3}"
_PATH = re.compile(
    rf"tile/(?P<level>0|[1-9][0-9]?|entries)/(?P<n>{_N})(?:\.p/(?P<w>[1-9][0-9]{{0,2}}))?")


@dataclass(frozen=True, order=True)
class Tile:
    """One tile: ``level`` (``-1`` for the entry bundle), ``index`` and ``width``
    (256 for a full tile)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    @property
    def entries(self) -> bool:
        """An entry bundle rather than a hash tile."""
        return self.level < 0

    @property
    def full(self) -> bool:
        """A full (immutable) tile."""
        return self.width == TILE_WIDTH

    @property
    def start(self) -> int:
        """The index of the first hash (at this tile's tree height) the tile lists."""
        return self.index * TILE_WIDTH

    @property
    def height(self) -> int:
        """The tree height of the hashes it lists (``8 * level``; 0 for entries)."""
        return TILE_HEIGHT * max(self.level, 0)

    def path(self) -> str:
        """The tile's path under the log's prefix, e.g. ``tile/0/x001/234`` or
        ``tile/entries/005.p/17``."""
        digits = f"{self.index:d}"
        digits = "0" * (-len(digits) % 3) + digits
        parts = [digits[i:i + 3] for i in range(0, len(digits), 3)]
        n = "/".join([*("x" + p for p in parts[:-1]), parts[-1]])
        level = "entries" if self.entries else str(self.level)
        return f"tile/{level}/{n}" + ("" if self.full else f".p/{self.width}")


def parse_tile_path(path: str) -> Tile:
    """The tile a path names (``tile/...``, no leading slash); raises ``ValueError`` for
    anything the spec does not allow (leading zeroes, a width of 0 or over 255, ...)."""
    m = _PATH.fullmatch(path)
    if m is None:
        raise ValueError(f"{path[:120]!r} is not a tile path (tile/<L>/<N>[.p/<W>] or "
                         "tile/entries/<N>[.p/<W>], N in 3-digit elements)")
    raw = m["level"]
    level = -1 if raw == "entries" else int(raw)
    if level > 63:
        raise ValueError(f"tile level {level} is beyond 63")
    index = int(m["n"].replace("x", "").replace("/", ""))
    width = int(m["w"]) if m["w"] else TILE_WIDTH
    if m["w"] and width >= TILE_WIDTH:
        raise ValueError(f"a partial tile's width is 1 to 255, not {width}")
    tile = Tile(level, index, width)
    if tile.path() != path:  # e.g. x000/123: one tile, one path
        raise ValueError(f"{path[:120]!r} is not the tile path's canonical form "
                         f"({tile.path()})")
    return tile


def hashes_at(size: int, level: int) -> int:
    """How many hashes tiles at ``level`` list in a tree of ``size`` entries."""
    return size >> (TILE_HEIGHT * level)


def tiles_of(size: int) -> Iterator[Tile]:
    """Every tile (and entry bundle) a tree of ``size`` entries has: the full ones and
    each level's partial right edge, bundles alongside level 0."""
    level = 0
    while (count := hashes_at(size, level)) > 0:
        for n in range(count // TILE_WIDTH):
            yield Tile(level, n)
            if level == 0:
                yield Tile(-1, n)
        if count % TILE_WIDTH:
            yield Tile(level, count // TILE_WIDTH, count % TILE_WIDTH)
            if level == 0:
                yield Tile(-1, count // TILE_WIDTH, count % TILE_WIDTH)
        level += 1


def bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length and its bytes."""
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY_BYTES:
            raise ValueError(f"an entry of {len(e):,} bytes does not fit an entry bundle "
                             f"(at most {MAX_ENTRY_BYTES:,})")
        out += len(e).to_bytes(2, "big") + e
    return bytes(out)


def parse_bundle(data: bytes, width: int) -> list[bytes]:
    """The ``width`` entries of a bundle; :class:`ProofError` if it is not exactly that."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ProofError("the entry bundle ends inside a length prefix.")
        n = int.from_bytes(data[pos:pos + 2], "big")
        if pos + 2 + n > len(data):
            raise ProofError(f"the entry bundle's entry {len(out)} is cut short.")
        out.append(bytes(data[pos + 2:pos + 2 + n]))
        pos += 2 + n
    if len(out) != width:
        raise ProofError(f"the entry bundle holds {len(out)} entries, not {width}.")
    return out
