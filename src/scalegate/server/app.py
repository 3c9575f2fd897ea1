"""The read side of a public log: C2SP ``tlog-tiles`` over HTTP (FastAPI).

- ``GET /checkpoint`` — the latest checkpoint the log issued, with its witness
  cosignatures (``text/plain``; cached for a few seconds);
- ``GET /tile/<L>/<N>[.p/<W>]``, ``GET /tile/entries/<N>[.p/<W>]`` — hash tiles and
  entry bundles (``application/octet-stream``; a tile's bytes never change, so full
  tiles are cached for a year as ``immutable``, partial ones for an hour);
- ``GET /log.vkey`` — the log's verifier key; ``GET /`` — what the log is, how to verify it.

Errors are RFC 9457 ``application/problem+json`` (400 for a path no tile has, 404 for a
tile the log does not have yet): never a 5xx for what a client sends.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware

from scalegate.errors import TileNotFound
from scalegate.ledger import Ledger, parse_tile_path
from scalegate.server._pages import index_page, vkey_text

__all__ = ["create_app"]

CHECKPOINT_MAX_AGE_S = 2
_IMMUTABLE = "public, max-age=31536000, immutable"
_PARTIAL = "public, max-age=3600"


def problem(status: int, title: str, detail: str) -> JSONResponse:
    """An RFC 9457 problem document."""
    return JSONResponse({"type": "about:blank", "title": title, "status": status,
                         "detail": detail}, status_code=status,
                        media_type="application/problem+json")


def create_app(ledger: str | os.PathLike[str] | Ledger) -> FastAPI:
    """The ASGI application serving ``ledger`` (a path, a database URL or an open ledger)."""
    led = ledger if isinstance(ledger, Ledger) else Ledger.open(os.fspath(ledger))
    app = FastAPI(title=f"{led.origin} — scalegate transparency log",
                  description="A C2SP tlog-tiles log of signed responsible-scaling statements.",
                  version="1", docs_url=None, redoc_url=None)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.state.ledger = led
    _routes(app, led)
    _errors(app)
    return app


def _routes(app: FastAPI, led: Ledger) -> None:
    @app.get("/", response_class=HTMLResponse, summary="What this log is and how to verify it")
    def index() -> HTMLResponse:
        return HTMLResponse(index_page(led, led.size),
                            headers={"Cache-Control": f"max-age={CHECKPOINT_MAX_AGE_S}"})

    @app.get("/log.vkey", response_class=PlainTextResponse, summary="The log's verifier key")
    def vkey() -> PlainTextResponse:
        return PlainTextResponse(vkey_text(led), headers={"Cache-Control": "max-age=3600"})

    @app.get("/checkpoint", response_class=PlainTextResponse,
             summary="The latest checkpoint (C2SP tlog-checkpoint, with cosignatures)",
             responses={404: {"description": "The log has issued no checkpoint yet"}})
    def checkpoint() -> Response:
        note = led.latest_checkpoint()
        if note is None:
            return problem(404, "No checkpoint", "the log has issued no checkpoint yet.")
        return PlainTextResponse(note, headers={
            "Cache-Control": f"public, max-age={CHECKPOINT_MAX_AGE_S}"})

    @app.get("/tile/{path:path}", summary="A hash tile or entry bundle (C2SP tlog-tiles)",
             response_class=Response,
             responses={200: {"content": {"application/octet-stream": {}}},
                        400: {"description": "Not a tile path"},
                        404: {"description": "The log does not have this tile yet"}})
    def tile(path: str) -> Response:
        try:
            t = parse_tile_path("tile/" + path)
        except ValueError as exc:
            return problem(400, "Not a tile path", str(exc))
        try:
            body = led.tile(t)
        except TileNotFound as exc:
            return problem(404, "No such tile", exc.message)
        return Response(body, media_type="application/octet-stream",
                        headers={"Cache-Control": _IMMUTABLE if t.full else _PARTIAL})


def _errors(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail: Any = exc.errors()
        return problem(400, "Bad request", str(detail)[:500])
