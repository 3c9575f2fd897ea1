"""The hot paths of a public log, answered before the framework's routing: ``GET
/checkpoint``, ``GET /tile/...`` (from memory, else read in a thread), and ``POST /add`` (handed to
the same function the documented route calls). Everything else (a tile not yet read, a
bad path or query, every other route) goes on to the application, which answers the
same way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from scalegate.errors import TileNotFound
from scalegate.ledger import Tile, parse_tile_path
from scalegate.server._publisher import Publisher
from scalegate.server._tile_cache import TileCache

__all__ = ["CHECKPOINT_MAX_AGE_S", "FastReads", "checkpoint_headers", "tile_headers"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

CHECKPOINT_MAX_AGE_S = 2
_IMMUTABLE = "public, max-age=31536000, immutable"
_PARTIAL = "public, max-age=3600"


def tile_headers(tile: Tile, gzipped: bool) -> dict[str, str]:
    """The headers of a tile's answer (``Content-Type`` included)."""
    headers = {"Content-Type": "application/octet-stream",
               "Cache-Control": _IMMUTABLE if tile.full else _PARTIAL}
    if tile.entries:
        headers["Vary"] = "Accept-Encoding"
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return headers


def checkpoint_headers() -> dict[str, str]:
    """The headers of the checkpoint's answer."""
    return {"Content-Type": "text/plain; charset=utf-8",
            "Cache-Control": f"public, max-age={CHECKPOINT_MAX_AGE_S}"}


def accepts_gzip(tile: Tile, accept_encoding: str) -> bool:
    """Whether a tile goes out compressed: entry bundles, to clients that accept gzip."""
    return tile.entries and "gzip" in accept_encoding


class FastReads:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *,
                 cache: TileCache, publisher: Publisher,
                 submit: Callable[[Request, bool], Awaitable[Response]],
                 read: Callable[[Tile], bytes]) -> None:
        self.app = app
        self.cache = cache
        self.read = read
        self.publisher = publisher
        self.submit = submit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/add" \
                and scope["query_string"] in (b"", b"wait=proof"):
            response = await self.submit(Request(scope, receive), bool(scope["query_string"]))
            await response(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path == "/checkpoint" and self.publisher.published is not None:
                await _answer(send, self.publisher.published.encode(), checkpoint_headers())
                return
            if path.startswith("/tile/") and not scope["query_string"]:
                body, headers = await self._tile(path[1:], scope)
                if body is not None:
                    await _answer(send, body, headers)
                    return
        await self.app(scope, receive, send)

    async def _tile(self, path: str, scope: Scope) -> tuple[bytes | None, dict[str, str]]:
        """A tile's answer: from the cache, else read (in a thread); ``None`` for a bad
        path or a tile the log does not have (the application answers those)."""
        try:
            tile = parse_tile_path(path)
        except ValueError:
            return None, {}
        accept = next((v.decode("latin-1") for k, v in scope["headers"]
                       if k == b"accept-encoding"), "")
        gzipped = accepts_gzip(tile, accept)
        body = self.cache.get(tile, gzipped)
        if body is None:
            try:
                raw = await asyncio.to_thread(self.read, tile)
            except TileNotFound:
                return None, {}
            body = await asyncio.to_thread(self.cache.put, tile, raw, gzipped)
        return body, tile_headers(tile, gzipped)


async def _answer(send: Send, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"access-control-allow-origin", b"*"))  # any page may verify the log
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": raw})
    await send({"type": "http.response.body", "body": body})
