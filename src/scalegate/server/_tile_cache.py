"""Full tiles and bundles kept in memory: they never change, so they are read (and a
bundle compressed, for clients that accept gzip) once."""

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

    def put(self, tile: Tile, body: bytes, gzipped: bool = False) -> bytes:
        """The form of ``tile`` a client asked for (``body`` gzip-compressed if asked),
        kept if the tile is full (partial tiles are not kept: the edge moves). Only the
        form asked for is made and kept: most clients ask for one."""
        data = _gzip(body) if gzipped else body
        if not tile.full or len(data) > self.max_bytes:
            return data
        key = (tile, gzipped)
        with self._lock:
            if key not in self._tiles:
                self._tiles[key] = data
                self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, old = self._tiles.popitem(last=False)
                self._bytes -= len(old)
        return data


def _gzip(body: bytes) -> bytes:
    # Level 1: entry bundles (JSON, base64) shrink ~4x at a fraction of level 6's time.
    return gzip.compress(body, 1, mtime=0)
