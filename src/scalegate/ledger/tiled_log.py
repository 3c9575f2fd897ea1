"""Reading a C2SP ``tlog-tiles`` log, trusting only its verifier key.

:func:`read_tiled_log` fetches the checkpoint and verifies the log's signature on it
(its origin too), fetches every tile and entry bundle the checkpoint's tree needs (in
parallel), and checks all of it against the signed root: each entry hashes to its
leaf in the level-0 tile, each full tile hashes to its entry in the tile above, and the
tree the leaves make has the checkpoint's root. Anything else is a
:class:`~scalegate.errors.ProofError` naming the resource.

Resources come from an HTTP(S) prefix (``https://log.example/``) or a directory written
by ``scalegate ledger publish-tiles``.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from scalegate.errors import LedgerError, NoteError, ProofError, TileNotFound
from scalegate.ledger import merkle
from scalegate.ledger.checkpoint import Checkpoint, open_checkpoint
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.tiles import (
    HASH_BYTES,
    MAX_ENTRY_BYTES,
    TILE_WIDTH,
    Tile,
    bundle,
    parse_bundle,
    tiles_of,
)

__all__ = ["TiledLog", "fetch_tile", "read_tiled_log", "tile_fetcher"]

Fetch = Callable[[str], bytes]  # a resource path under the prefix -> its bytes
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TiledLog:
    """A tiled log as read and verified: its checkpoint (note and parsed) and entries."""

    checkpoint: Checkpoint
    note: str
    entries: list[bytes]
    tiles_fetched: int


def tile_fetcher(location: str) -> Fetch:
    """A function fetching resources under ``location`` (a URL prefix or a directory).

    No resource is read beyond what it can hold (:func:`max_bytes`); gzip-compressed
    bundles (which the spec lets logs send unasked) are decompressed within that bound.
    """
    if location.startswith(("http://", "https://")):
        prefix = location if location.endswith("/") else location + "/"

        def fetch_url(path: str) -> bytes:
            try:
                return _http_get(prefix + path, max_bytes(path))
            except TileNotFound:
                raise
            except (http.client.HTTPException, ValueError, OSError) as exc:
                if isinstance(exc, urllib.error.HTTPError) and exc.code == 404:
                    raise TileNotFound(f"{prefix}{path} is not there (404).") from None
                if isinstance(exc, urllib.error.HTTPError):
                    raise LedgerError(f"{prefix}{path}: HTTP {exc.code} {exc.reason}.") from None
                raise LedgerError(f"cannot fetch {prefix}{path}: {exc or type(exc).__name__}.",
                                  hint="Check the address and that the log is up.") from None

        return fetch_url
    root = Path(location)
    if not root.is_dir():
        raise LedgerError(f"{location} is neither an http(s):// address nor a directory of "
                          "tiles.", hint="Give the log's URL prefix, or the directory "
                          "`scalegate ledger publish-tiles` wrote.")

    def fetch_file(path: str) -> bytes:
        target = root / path
        if not target.is_file():
            raise TileNotFound(f"{target} is not there.")
        if target.stat().st_size > max_bytes(path):
            raise ProofError(f"{target} is larger than {path} can be.")
        return target.read_bytes()

    return fetch_file


def max_bytes(path: str) -> int:
    """The most a resource can hold: a hash tile 8,192 bytes, a bundle 256 entries of at
    most 65,535 bytes, a checkpoint (with its cosignatures) a few KB."""
    if path.startswith("tile/entries/"):
        return TILE_WIDTH * (MAX_ENTRY_BYTES + 2)
    if path.startswith("tile/"):
        return TILE_WIDTH * HASH_BYTES
    return 1 << 16


def _http_get(url: str, limit: int) -> bytes:
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip, identity",
                                               "User-Agent": "scalegate"})
    with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp:
        body = resp.read(limit + 1)
        if resp.headers.get("Content-Encoding", "identity") == "gzip":
            inflate = zlib.decompressobj(wbits=31)
            body = inflate.decompress(body, limit + 1)
    if len(body) > limit:
        raise ProofError(f"{url} is larger than it can be ({limit:,} bytes at most).")
    return body


def read_tiled_log(
    location: str | Fetch, log_key: VerifierKey, *, origin: str | None = None,
    workers: int = 8,
) -> TiledLog:
    """Fetch and verify the whole log at ``location`` (see the module docstring).

    ``origin`` defaults to the key's name (a log's key is named after its origin).
    """
    fetch = tile_fetcher(location) if isinstance(location, str) else location
    try:
        note = fetch("checkpoint").decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("the log's checkpoint is not UTF-8 text.") from None
    cp, _ = open_checkpoint(note, log_key, origin=origin or log_key.name)
    tiles = list(tiles_of(cp.size))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        data = dict(zip(tiles, pool.map(lambda t: fetch_tile(fetch, t), tiles), strict=True))
    entries = _check(cp, data)
    return TiledLog(cp, note, entries, len(tiles))


def fetch_tile(fetch: Fetch, tile: Tile) -> bytes:
    """A tile's bytes; a partial tile the log has since replaced by its full tile (the spec
    lets it delete the partial one) is read as the full tile's prefix."""
    try:
        return fetch(tile.path())
    except TileNotFound:
        if tile.full:
            raise
    full = fetch(Tile(tile.level, tile.index).path())
    if tile.entries:
        return bundle(parse_bundle(full, TILE_WIDTH)[:tile.width])
    return full[:tile.width * HASH_BYTES]


def _check(cp: Checkpoint, data: dict[Tile, bytes]) -> list[bytes]:
    """The entries, once every tile agrees with the others and with the signed root."""
    hashes: dict[Tile, list[bytes]] = {}
    for tile, body in data.items():
        if tile.entries:
            continue
        if len(body) != tile.width * HASH_BYTES:
            raise ProofError(f"{tile.path()} is {len(body)} bytes, not {tile.width} hashes.")
        hashes[tile] = [body[i:i + HASH_BYTES] for i in range(0, len(body), HASH_BYTES)]
    at = {(t.level, t.index): h for t, h in hashes.items()}
    for tile, listed in hashes.items():  # a full tile hashes to its entry one level up
        if not tile.full:
            continue
        parent = at.get((tile.level + 1, tile.index // TILE_WIDTH), [])
        slot = tile.index % TILE_WIDTH
        if slot >= len(parent) or merkle.root(listed) != parent[slot]:
            raise ProofError(f"{tile.path()} does not hash to its entry in the tile above.")
    leaves = [h for t in sorted(hashes) if t.level == 0 for h in hashes[t]]
    if merkle.root(leaves) != cp.root_hash:
        raise ProofError(f"the tiles do not make the checkpoint's root (size {cp.size}).")
    entries: list[bytes] = []
    for tile in sorted((t for t in data if t.entries), key=lambda t: t.index):
        entries.extend(parse_bundle(data[tile], tile.width))
    if len(entries) != len(leaves):
        raise ProofError(f"the entry bundles hold {len(entries)} entries, the tiles "
                         f"{len(leaves)} leaves.")
    for i, (entry, leaf) in enumerate(zip(entries, leaves, strict=True)):
        if merkle.leaf_hash(entry) != leaf:
            raise ProofError(f"entry {i} does not hash to its leaf in the level-0 tile.")
    return entries
