"""The read side of a public log: C2SP ``tlog-tiles`` over HTTP (FastAPI).

- ``GET /checkpoint`` — the latest checkpoint the log issued, with its witness
  cosignatures (``text/plain``; cached for a few seconds);
- ``GET /tile/<L>/<N>[.p/<W>]``, ``GET /tile/entries/<N>[.p/<W>]`` — hash tiles and
  entry bundles (``application/octet-stream``; a tile's bytes never change, so full
  tiles are cached for a year as ``immutable``, partial ones for an hour);
- ``GET /log.vkey`` — the log's verifier key; ``GET /`` — what the log is, how to verify it;
- ``POST /add`` — submit one DSSE envelope (``application/json``); admitted exactly as
  ``ledger append`` admits it, sequenced with other submissions in one durable batch
  (:mod:`~scalegate.server._sequencer`); the answer is its index and leaf hash, and with
  ``?wait=proof`` also its C2SP ``tlog-proof`` receipt.

Errors are RFC 9457 ``application/problem+json``: 400 (not a tile path; a malformed
envelope or statement; a bad signature), 403 (a signer the log does not admit), 404 (a
tile the log does not have yet), 409 (a statement already logged), 413 (an entry over
65,535 bytes), 415 (not JSON), 429 (a signer over the rate limit): never a 5xx for what
a client sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from scalegate.errors import (
    AppendRefused,
    DuplicateStatement,
    KeyNotAuthorized,
    ScalegateError,
    TileNotFound,
)
from scalegate.ledger import MAX_ENTRY_BYTES, Ledger, format_receipt, parse_tile_path
from scalegate.server._fast_reads import (
    CHECKPOINT_MAX_AGE_S,
    FastReads,
    accepts_gzip,
    checkpoint_headers,
    tile_headers,
)
from scalegate.server._pages import index_page, org_roots_text, vkey_text
from scalegate.server._publisher import Publisher, WitnessPolicy
from scalegate.server._sequencer import (
    Outcome,
    RateLimit,
    Sequencer,
    WriterProcess,
    append_batch,
)
from scalegate.server._tile_cache import TileCache

__all__ = ["create_app"]

_PROOF_WAIT_S = 30.0


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem document (``extra``: its extension members)."""
    return JSONResponse({"type": "about:blank", "title": title, "status": status,
                         "detail": detail, **extra}, status_code=status,
                        media_type="application/problem+json")


#: How long a client may take to send a request body.
BODY_TIMEOUT_S = 10.0


class TooLarge(Exception):
    """A request body over the limit."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (:class:`TooLarge`) beyond ``limit`` bytes and
    (``TimeoutError``) when it takes longer than :data:`BODY_TIMEOUT_S` to arrive."""
    body = bytearray()
    async with asyncio.timeout(BODY_TIMEOUT_S):
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise TooLarge
    return bytes(body)


class _LogApp(FastAPI):
    """The log's application: its hot paths first (:class:`FastReads`), then FastAPI."""

    fast: FastReads | None = None

    async def framework(self, scope: Any, receive: Any, send: Any) -> None:
        """FastAPI itself, with its middleware."""
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.fast is None:
            await self.framework(scope, receive, send)
        else:
            await self.fast(scope, receive, send)


def create_app(
    ledger: str | os.PathLike[str] | Ledger,
    *,
    log_key: str | os.PathLike[str] | None = None,
    checkpoint_interval: timedelta = timedelta(seconds=1),
    rate_limit: tuple[float, float] | None = None,
    witnesses: WitnessPolicy | None = None,
    writer_process: bool = True,
) -> FastAPI:
    """The ASGI application serving ``ledger`` (a path, a database URL or an open ledger).

    ``log_key`` (default: the file the ledger recorded) signs a checkpoint every
    ``checkpoint_interval`` while the log grows; with ``witnesses``, a checkpoint is
    published once their policy is met (:mod:`~scalegate.server._publisher`).
    ``rate_limit`` is ``(per second, burst)`` per signer (default: none). Submissions
    are appended by a process of its own unless ``writer_process`` is false (then by a
    thread of this one).
    """
    led = ledger if isinstance(ledger, Ledger) else Ledger.open(
        os.fspath(ledger), log_key=pathlib.Path(log_key) if log_key else None)
    writer: list[WriterProcess] = []  # started with the server

    async def append(items: list[bytes]) -> list[Outcome]:
        if writer:
            return await writer[0](items)
        return await asyncio.to_thread(append_batch, led, items)

    sequencer = Sequencer(append)
    publisher = Publisher(led, witnesses, interval_s=checkpoint_interval.total_seconds(),
                          can_sign=led.can_sign)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if writer_process:
            writer.append(await asyncio.to_thread(WriterProcess, led.store.location))
        sequencer.start()
        publishing = asyncio.get_running_loop().create_task(publisher.run())
        yield
        await sequencer.stop()
        if writer:
            await asyncio.to_thread(writer.pop().close)
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing
        publisher.close()
        if not isinstance(ledger, Ledger):  # opened here: closing signs a last checkpoint
            await asyncio.to_thread(led.close)

    app = _LogApp(title=f"{led.origin} — scalegate transparency log",
                  description="A C2SP tlog-tiles log of signed responsible-scaling statements.",
                  version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.ledger = led
    app.state.sequencer = sequencer
    app.state.publisher = publisher
    cache = TileCache()
    # Outside the framework's own middleware (its error handling and telemetry cost more
    # than answering a cached tile does); everything else falls through to it.
    app.fast = FastReads(app.framework, cache=cache, publisher=publisher,
                         submit=lambda request, wait: app.state.submission(request, wait),
                         read=led.tile)
    # The log is public: any page (a registry's "verify" button) may read it from a
    # browser. Reads only: submissions are not made from other sites' pages.
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET"])
    _routes(app, led, publisher, cache)
    _submissions(app, led, sequencer, publisher,
                 RateLimit(*rate_limit) if rate_limit else None)
    _errors(app)
    return app


def _routes(app: FastAPI, led: Ledger, publisher: Publisher, cache: TileCache) -> None:
    @app.get("/", response_class=HTMLResponse, summary="What this log is and how to verify it")
    def index() -> HTMLResponse:
        return HTMLResponse(index_page(led, led.size),
                            headers={"Cache-Control": f"max-age={CHECKPOINT_MAX_AGE_S}"})

    @app.get("/log.vkey", response_class=PlainTextResponse, summary="The log's verifier key")
    def vkey() -> PlainTextResponse:
        return PlainTextResponse(vkey_text(led), headers={"Cache-Control": "max-age=3600"})

    @app.get("/org-roots", response_class=PlainTextResponse,
             summary="The organisation root keys that admit the log's signers")
    def org_roots() -> PlainTextResponse:
        return PlainTextResponse(org_roots_text(led), headers={"Cache-Control": "max-age=3600"})

    @app.get("/checkpoint", response_class=PlainTextResponse,
             summary="The latest checkpoint (C2SP tlog-checkpoint, with cosignatures)",
             responses={404: {"description": "The log has issued no checkpoint yet"}})
    def checkpoint() -> Response:
        note = publisher.published
        if note is None:
            return problem(404, "No checkpoint", "the log has published no checkpoint yet"
                           + (f": {publisher.behind}" if publisher.behind else "."))
        return Response(note.encode(), headers=checkpoint_headers())

    # The tile paths are C2SP tlog-tiles' (slashes inside one parameter, which OpenAPI
    # cannot describe): they are left out of the OpenAPI schema and specified there.
    @app.get("/tile/{path:path}", summary="A hash tile or entry bundle (C2SP tlog-tiles)",
             response_class=Response, include_in_schema=False,
             responses={200: {"content": {"application/octet-stream": {}}},
                        400: {"description": "Not a tile path"},
                        404: {"description": "The log does not have this tile yet"}})
    def tile(path: str, request: Request) -> Response:
        try:
            t = parse_tile_path("tile/" + path)
        except ValueError as exc:
            return problem(400, "Not a tile path", str(exc))
        # Entry bundles are compressed (once, when cached) for clients that accept gzip, as
        # the spec asks; hash tiles are random bytes and are sent as they are.
        zipped = accepts_gzip(t, request.headers.get("accept-encoding", ""))
        body = cache.get(t, zipped)
        if body is None:
            try:
                body = led.tile(t)
            except TileNotFound as exc:
                return problem(404, "No such tile", exc.message)
            body = cache.put(t, body, zipped)
        return Response(body, headers=tile_headers(t, zipped))


_ENVELOPE_SCHEMA = {
    "type": "object", "required": ["payload", "payloadType", "signatures"],
    "properties": {
        "payload": {"type": "string", "minLength": 1,
                    "description": "base64 of the in-toto statement"},
        "payloadType": {"type": "string", "enum": ["application/vnd.in-toto+json"]},
        "signatures": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["keyid", "sig"],
            "properties": {"keyid": {"type": "string"}, "sig": {"type": "string"}}}},
    },
}
_ADDED_SCHEMA = {"type": "object", "required": ["index", "leaf_hash"], "properties": {
    "index": {"type": "integer"}, "leaf_hash": {"type": "string"},
    "receipt": {"type": "string", "description": "C2SP tlog-proof (with ?wait=proof)"}}}
_PROBLEM = {"content": {"application/problem+json": {"schema": {"type": "object"}}}}


def _submissions(app: FastAPI, led: Ledger, sequencer: Sequencer, publisher: Publisher,
                 limit: RateLimit | None) -> None:
    async def submission(request: Request, wait_proof: bool) -> JSONResponse:
        """Answer one submission (the route below, and the fast path, call this)."""
        ctype = next((v for k, v in request.scope["headers"] if k == b"content-type"), b"")
        ctype = ctype.split(b";")[0].strip().lower().decode("latin-1")
        if ctype != "application/json":
            return problem(415, "Unsupported media type",
                           "send the DSSE envelope as application/json.")
        try:
            body = await read_body(request, MAX_ENTRY_BYTES)
        except TooLarge:
            return problem(413, "Entry too large",
                           f"a log entry is at most {MAX_ENTRY_BYTES:,} bytes; keep large "
                           "documents outside the log and name them by digest.")
        except TimeoutError:
            return problem(408, "Request timeout", f"the body did not arrive within "
                           f"{BODY_TIMEOUT_S:.0f} s.")
        signer = _first_keyid(body) if limit is not None else None
        if limit is not None and signer is not None and not limit.allows(signer):
            resp = problem(429, "Too many submissions",
                           f"signer {signer[:80]} is over this log's rate limit.")
            resp.headers["Retry-After"] = "1"
            return resp
        try:
            index, leaf = await sequencer.submit(bytes(body))
        except DuplicateStatement as exc:
            return problem(409, "Already logged", exc.message, index=exc.index)
        except AppendRefused as exc:
            if isinstance(exc.__cause__, KeyNotAuthorized):
                return problem(403, "Signer not admitted", exc.message)
            return problem(400, "Refused", exc.message)
        except ScalegateError as exc:
            return problem(503, "Log unavailable", exc.message)
        if limit is not None and signer is not None:
            limit.charge(signer)
        out: dict[str, Any] = {"index": index, "leaf_hash": leaf.hex()}
        if wait_proof:
            receipt = await _receipt(led, publisher, index)
            if receipt is None:
                return problem(503, "Not yet published", f"entry {index} is logged, but no "
                               f"published checkpoint covers it within {_PROOF_WAIT_S:.0f} s"
                               + (f": {publisher.behind}" if publisher.behind else "."),
                               index=index, leaf_hash=leaf.hex())
            out["receipt"] = receipt
        return JSONResponse(out)

    @app.post(
        "/add", summary="Submit one signed statement (a DSSE envelope)",
        response_class=JSONResponse,
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": _ENVELOPE_SCHEMA}}}},
        responses={200: {"content": {"application/json": {"schema": _ADDED_SCHEMA}}},
                   **{code: {"description": what, **_PROBLEM} for code, what in (
                       (400, "Malformed envelope or statement, or a bad signature"),
                       (403, "The signer is not admitted (unregistered, expired, revoked)"),
                       (409, "The statement is already logged"),
                       (408, "The body did not arrive in time"),
                       (413, "The entry is over 65,535 bytes"),
                       (415, "Not application/json"),
                       (429, "The signer is over the rate limit"),
                       (503, "The log cannot write or sign now"))}})
    async def add(request: Request,
                  wait: Literal["proof"] | None = Query(None, description=(
                      "`proof`: answer once a checkpoint covers the entry, with its "
                      "receipt"))) -> JSONResponse:
        return await submission(request, wait == "proof")

    app.state.submission = submission


async def _receipt(led: Ledger, publisher: Publisher, index: int) -> str | None:
    """The entry's receipt against the first published checkpoint covering it."""
    deadline = time.monotonic() + _PROOF_WAIT_S
    while publisher.published_size <= index:
        publisher.poke()
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(publisher.changed.wait(), timeout=left)
    note, size = publisher.published, publisher.published_size
    assert note is not None
    proof = await asyncio.to_thread(led.inclusion_proof, index, size)
    return format_receipt(index, proof, note)


def _first_keyid(body: bytes) -> str | None:
    """The first signature's keyid, for the rate limit (the append checks everything)."""
    from scalegate.ledger import read_canonical

    fast = read_canonical(body)
    if fast is not None:
        return fast[2][0][0] if fast[2] else None
    import json

    try:
        sigs = json.loads(body).get("signatures")
        keyid = sigs[0].get("keyid") if isinstance(sigs, list) and sigs else None
    except (ValueError, AttributeError, RecursionError):
        return None
    return keyid if isinstance(keyid, str) else None


def _errors(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail: Any = exc.errors()
        return problem(400, "Bad request", str(detail)[:500])
