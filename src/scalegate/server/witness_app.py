"""A witness over HTTP: the C2SP ``tlog-witness`` ``add-checkpoint`` endpoint (FastAPI).

``POST /add-checkpoint`` takes the spec's body (``old <size>``, consistency proof lines,
an empty line, the checkpoint) and answers 200 with the witness's cosignature lines, or
the spec's refusals: 400, 403 (no valid signature by the log's key), 404 (a log this
witness does not follow), 409 with ``text/x.tlog.size`` and the size it last cosigned
(the client resends from there; also, with the evidence kept, a different tree at the
same size), 422 (the consistency proof does not verify; the evidence is kept). The
check and the update of the witness's state are one step under its lock, so several
witness processes may share one state file.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from scalegate.audit import Witness
from scalegate.errors import WitnessConflict, WitnessRefused
from scalegate.server.app import TooLarge, problem, read_body

__all__ = ["create_witness_app"]

_MAX_REQUEST = 1 << 16  # 63 proof lines and a checkpoint with its signatures fit easily


def create_witness_app(witness: Witness) -> FastAPI:
    """The ASGI application of ``witness``."""
    app = FastAPI(title=f"{witness.verifier.name} — scalegate witness", version="1",
                  docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse, summary="What this witness is")
    def index() -> HTMLResponse:
        return HTMLResponse(
            f"<!doctype html><meta charset=utf-8><title>{witness.verifier.name}</title>"
            f"<h1>{witness.verifier.name}</h1><p>A C2SP tlog-witness: POST /add-checkpoint."
            f"</p><pre>{witness.verifier.text()}</pre>")

    @app.post("/add-checkpoint", summary="Cosign a checkpoint (C2SP tlog-witness)",
              response_class=PlainTextResponse,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "text/plain": {"schema": {"type": "string"}}}}},
              responses={code: {"description": what} for code, what in (
                  (400, "Malformed request"), (403, "No valid signature by the log's key"),
                  (404, "A log this witness does not follow"),
                  (409, "Not the size last cosigned (body: that size), or another tree"),
                  (408, "The body did not arrive in time"), (413, "Request too large"),
                  (422, "The consistency proof does not verify"))})
    async def add_checkpoint(request: Request) -> Response:
        try:
            body = await read_body(request, _MAX_REQUEST)
        except TooLarge:
            return problem(413, "Request too large", "an add-checkpoint request is small.")
        except TimeoutError:
            return problem(408, "Request timeout", "the body did not arrive in time.")
        return await _cosign(witness, body)

    return app


async def _cosign(witness: Witness, body: bytes) -> Response:
    import asyncio

    try:
        lines = await asyncio.to_thread(witness.add_checkpoint_request, body)
    except WitnessConflict as exc:
        # Exactly this Content-Type (no charset): clients compare it as a whole.
        return Response(f"{exc.size}\n".encode(), status_code=409,
                        headers={"Content-Type": "text/x.tlog.size"})
    except WitnessRefused as exc:
        return problem(exc.status, "Refused", exc.message)
    return PlainTextResponse(lines if lines.endswith("\n") else lines + "\n")


