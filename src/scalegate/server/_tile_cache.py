"""Full tiles and bundles kept in memory: they never change, so they are read (and a
bundle compressed) once."""

from __future__ import annotations

import gzip
import threading
from collections import OrderedDict

from scalegate.ledger import Tile

__all__ = ["TileCache"]


class TileCache:
    """A least-recently-used map of full tiles to their bytes, at most ``max_bytes`` big."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._bytes = 0
        self._tiles: OrderedDict[tuple[Tile, bool], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tile: Tile, gzipped: bool = False) -> bytes | None:
        """The cached bytes of ``tile`` (gzip-compressed if asked), if any."""
        with self._lock:
            body = self._tiles.get((tile, gzipped))
            if body is not None:
                self._tiles.move_to_end((tile, gzipped))
            return body

    def put(self, tile: Tile, body: bytes) -> None:
        """Keep a full tile, and an entry bundle also compressed (partial tiles are not
        kept: the edge moves)."""
        if not tile.full or len(body) > self.max_bytes:
            return
        forms = [((tile, False), body)]
        if tile.entries:
            forms.append(((tile, True), gzip.compress(body, 6)))
        with self._lock:
            for key, data in forms:
                if key in self._tiles:
                    continue
                self._tiles[key] = data
                self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, old = self._tiles.popitem(last=False)
                self._bytes -= len(old)
