"""The registry's pages and JSON API (FastAPI, Jinja2 templates, no build step).

Every page has its JSON under ``/api/`` (the same facts, from the same records): the home
page (every followed log and its status), a log (its runs, findings, checkpoint and any
split-view evidence), a run (its charts, drawn as SVG at audit time, its pauses and
findings), a pause (what paused and why, who approved, what resumed it, whether it was
honoured), and an Atom feed of pauses, resumptions and violations (all logs, or one).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from scalegate.errors import ScalegateError
from scalegate.ledger import (
    CosignatureVerifier,
    Ledger,
    VerifierKey,
    cosignatures,
    open_checkpoint,
)
from scalegate.registry.store import Event, LogRecord, RegistryStore

__all__ = ["create_registry_app"]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {
    "description": "Nothing of that name is followed here",
    "content": {"application/problem+json": {"schema": {
        "type": "object", "required": ["title", "status", "detail"],
        "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                       "status": {"type": "integer"}, "detail": {"type": "string"}}}}}}}

_TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
#: Violation kinds that mean a pause was not honoured, or not lifted as the policy says.
PAUSE_BROKEN = ("training-during-pause", "pause-not-declared", "resume-premature",
                "resume-without-quorum", "resume-wrong-checkpoint", "approval-wrong-pause")


def create_registry_app(store: RegistryStore, workdir: Path | None = None) -> FastAPI:
    """The registry's ASGI application, reading what ``store`` holds (and, for receipts and
    checkpoint history, the monitor's mirrors in ``workdir``)."""
    app = FastAPI(title="scalegate registry", version="1", docs_url=None, redoc_url=None,
                  description="Labs' responsible-scaling logs, followed and audited.")

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        return _TEMPLATES.TemplateResponse(request, name, context)

    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request) -> HTMLResponse:
        logs = store.logs()
        return page(request, "home.html", logs=logs, events=store.events(limit=30),
                    runs={g.name: _runs(g) for g in logs}, policies_in_force=_in_force)

    @app.get("/api/logs", summary="Every followed log and its status")
    def api_logs() -> list[dict[str, Any]]:
        return [_log_json(g) for g in store.logs()]

    @app.get("/logs/{name}", response_class=HTMLResponse, include_in_schema=False)
    def log_page(request: Request, name: str) -> HTMLResponse:
        g = _log(store, name)
        return page(request, "log.html", g=g, runs=_runs(g), report=g.audit.get("report", {}),
                    splits=store.split_views(name), history=_history(g, workdir))

    @app.get("/api/logs/{name}", summary="One followed log: status, runs, findings",
             responses=_NOT_FOUND)
    def api_log(name: str) -> dict[str, Any]:
        g = _log(store, name)
        return {**_log_json(g), "runs": [_run_json(r) for r in _runs(g)],
                "violations": g.audit.get("report", {}).get("violations", []),
                "split_views": [{"found_at": s[1], "entry": s[2], "evidence": s[3]}
                                for s in store.split_views(name)]}

    @app.get("/logs/{name}/orgs/{org}", response_class=HTMLResponse, include_in_schema=False)
    def org_page(request: Request, name: str, org: str) -> HTMLResponse:
        g, o = _org(store, name, org)
        return page(request, "org.html", g=g, org=org, o=o, checks={
            x["index"]: _browser_check(g, x) for part in ("keys", "policies", "runs")
            for x in o.get(part, [])})

    @app.get("/api/logs/{name}/orgs/{org}", responses=_NOT_FOUND,
             summary="One organisation: its keys and roles, policies, runs")
    def api_org(name: str, org: str) -> dict[str, Any]:
        return {"org": org, **_org(store, name, org)[1]}

    @app.get("/logs/{name}/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(request: Request, name: str, run_id: str) -> HTMLResponse:
        g, r = _run(store, name, run_id)
        return page(request, "run.html", g=g, r=r, findings=_findings(g, run_id),
                    check=_browser_check(g, r["run"]) if r.get("run") else None)

    @app.get("/api/logs/{name}/runs/{run_id}", summary="One run: replay, pauses, findings",
             responses=_NOT_FOUND)
    def api_run(name: str, run_id: str) -> dict[str, Any]:
        g, r = _run(store, name, run_id)
        return {**_run_json(r), "findings": _findings(g, run_id)}

    @app.get("/logs/{name}/runs/{run_id}/pauses/{index}", response_class=HTMLResponse,
             include_in_schema=False)
    def pause_page(request: Request, name: str, run_id: str, index: int) -> HTMLResponse:
        g, r, p, broken = _pause(store, name, run_id, index)
        return page(request, "pause.html", g=g, r=r, p=p, findings=broken, honoured=not broken,
                    check=_browser_check(g, p), checks={
                        a["index"]: _browser_check(g, a)
                        for a in [*p["approvals"], *([p["resumed"]] if p["resumed"] else [])]})

    @app.get("/api/logs/{name}/runs/{run_id}/pauses/{index}", responses=_NOT_FOUND,
             summary="One pause: why, who approved, what resumed it, whether it was honoured")
    def api_pause(name: str, run_id: str, index: int) -> dict[str, Any]:
        _, _, p, broken = _pause(store, name, run_id, index)
        return {**p, "honoured": not broken, "findings": broken}

    @app.get("/commitments", response_class=HTMLResponse, include_in_schema=False)
    def commitments_page(request: Request) -> HTMLResponse:
        return page(request, "commitments.html", commitments=store.commitments())

    @app.get("/api/commitments", summary="Every commitment proposed in a followed log, "
             "with each party's compliance")
    def api_commitments() -> list[dict[str, Any]]:
        return store.commitments()

    @app.get("/commitments/{ident}", response_class=HTMLResponse, include_in_schema=False)
    def commitment_page(request: Request, ident: str) -> HTMLResponse:
        c = _commitment(store, ident)
        checks = {}
        for i, sig in enumerate(c.get("signatures", [])):
            g = store.log(sig.get("log", ""))
            if g is not None:
                checks[i] = _browser_check(g, {"index": sig["ref"]["index"],
                                               "leaf_hash": sig["ref"]["leaf_hash"],
                                               "signer_key": sig.get("signer_key")})
        return page(request, "commitment.html", c=c, checks=checks)

    @app.get("/api/commitments/{ident}", responses=_NOT_FOUND,
             summary="One commitment: its state, each party's compliance and signatures")
    def api_commitment(ident: str) -> dict[str, Any]:
        return _commitment(store, ident)

    @app.get("/logs/{name}/receipts/{index}", response_class=PlainTextResponse,
             responses=_NOT_FOUND, summary="A C2SP tlog-proof receipt for one entry "
             "(for `scalegate verify --receipt`)")
    def receipt(name: str, index: int) -> PlainTextResponse:
        _log(store, name)
        mirror = workdir / f"{name}.db" if workdir is not None else None
        if mirror is None or not mirror.exists() or index < 0:
            raise HTTPException(404, f"no receipt for entry {index} of {name!r} here")
        with Ledger.open(mirror, checkpoint_on_close=False) as led:
            if index >= led.size:
                raise HTTPException(404, f"{name!r} has no entry {index} (yet)")
            text = led.receipt(index)
        return PlainTextResponse(text, headers={
            "Content-Disposition": f'attachment; filename="{name}-{index}.receipt"'})

    @app.get("/feed.atom", include_in_schema=False)
    def feed() -> Response:
        return _atom("scalegate registry", "/feed.atom", store.events(limit=100))

    @app.get("/logs/{name}/feed.atom", include_in_schema=False)
    def log_feed(name: str) -> Response:
        _log(store, name)
        return _atom(f"scalegate registry: {name}", f"/logs/{name}/feed.atom",
                     store.events(name, limit=100))

    @app.exception_handler(HTTPException)
    async def not_found(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/") or "/receipts/" in request.url.path:
            return JSONResponse({"type": "about:blank", "title": "Not found",
                                 "status": exc.status_code, "detail": exc.detail},
                                status_code=exc.status_code,
                                media_type="application/problem+json")
        said = html.escape(str(exc.detail))
        return HTMLResponse(f"<!doctype html><title>not found</title><p>{said} — <a href='/'>"
                            "the registry</a></p>", status_code=exc.status_code)

    return app


def _log(store: RegistryStore, name: str) -> LogRecord:
    g = store.log(name)
    if g is None:
        raise HTTPException(404, f"no log {name!r} is followed here")
    return g


def _commitment(store: RegistryStore, ident: str) -> dict[str, Any]:
    c = store.commitment(ident)
    if c is None:
        raise HTTPException(404, f"no commitment {ident!r} is proposed in the logs followed")
    return c


def _in_force(o: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each policy id with the version its organisation published last."""
    latest: dict[str, dict[str, Any]] = {}
    for p in o.get("policies", []):
        latest[p["id"]] = p
    return sorted(latest.items())


def _org(store: RegistryStore, name: str, org: str) -> tuple[LogRecord, dict[str, Any]]:
    g = _log(store, name)
    o = g.audit.get("orgs", {}).get(org)
    if o is None:
        raise HTTPException(404, f"log {name!r} has no organisation {org!r}")
    return g, o


def _runs(g: LogRecord) -> list[dict[str, Any]]:
    return list(g.audit.get("runs", []))


def _run(store: RegistryStore, name: str, run_id: str) -> tuple[LogRecord, dict[str, Any]]:
    g = _log(store, name)
    r = next((r for r in _runs(g) if r.get("run_id") == run_id), None)
    if r is None:
        raise HTTPException(404, f"log {name!r} has no run {run_id!r}")
    return g, r


def _pause(store: RegistryStore, name: str, run_id: str, index: int
           ) -> tuple[LogRecord, dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    g, r = _run(store, name, run_id)
    p = next((p for p in r.get("pauses", []) if p["index"] == index), None)
    if p is None:
        raise HTTPException(404, f"run {run_id!r} of {name!r} has no pause at entry {index}")
    broken = [v for v in _findings(g, run_id) if v.get("kind") in PAUSE_BROKEN]
    return g, r, p, broken


def _browser_check(g: LogRecord, p: dict[str, Any]) -> dict[str, Any] | None:
    """What a page's "verify" button checks (``static/verify.js``): the entry, in the
    log at its own address, against the keys the registry trusts for it; ``None`` when a
    browser cannot reach the log (a directory of tiles) or the signer's key is unknown."""
    trust = g.audit.get("trust")
    if not g.url.startswith(("http://", "https://")) or not trust or not p.get("signer_key"):
        return None
    return {"logUrl": g.url, "index": p["index"], "leafHash": p["leaf_hash"],
            "logKey": trust["log_key"], "witnessKeys": trust["witnesses"],
            "quorum": trust["quorum"], "signerKey": p["signer_key"]}


def _history(g: LogRecord, workdir: Path | None) -> list[dict[str, Any]]:
    """The checkpoints the monitor fetched from the log, newest first, with the trusted
    witnesses' cosignatures and their times."""
    trust = g.audit.get("trust")
    mirror = workdir / f"{g.name}.db" if workdir is not None else None
    if not trust or mirror is None or not mirror.exists():
        return []
    log_key = VerifierKey.parse(trust["log_key"])
    witnesses = [CosignatureVerifier.parse(w) for w in trust["witnesses"]]
    out = []
    with Ledger.open(mirror, checkpoint_on_close=False) as led:
        for size, note in reversed(led.checkpoints()[-50:]):
            try:
                cp, opened = open_checkpoint(note, log_key, origin=trust["origin"],
                                             extra_verifiers=witnesses)
            except ScalegateError as exc:
                out.append({"size": size, "root": "", "cosigned": [], "problem": exc.message})
                continue
            out.append({"size": size, "root": cp.root_hash.hex(), "problem": None,
                        "cosigned": [(c.name, datetime.fromtimestamp(c.timestamp, UTC)
                                      .isoformat().replace("+00:00", "Z"))
                                     for c in cosignatures(opened)]})
    return out


def _findings(g: LogRecord, run_id: str) -> list[dict[str, Any]]:
    return [v for v in g.audit.get("report", {}).get("violations", [])
            if v.get("run_id") == run_id]


def _log_json(g: LogRecord) -> dict[str, Any]:
    report = g.audit.get("report", {})
    return {"name": g.name, "url": g.url, "origin": g.origin, "size": g.size,
            "root_hash": g.root_hash, "status": g.status, "problem": g.problem,
            "checked_at": g.checked_at, "verified_at": g.verified_at,
            "witnessed_at": g.witnessed_at, "checkpoint": g.checkpoint,
            "violations_total": report.get("violations_total", 0),
            "runs": len(_runs(g)),
            "paused": sum(1 for r in _runs(g) if r.get("status") == "paused")}


def _run_json(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k != "figures"}


def _atom(title: str, path: str, events: list[Event]) -> Response:
    def esc(text: object) -> str:
        return html.escape(str(text), quote=True)

    updated = events[0].at if events else "1970-01-01T00:00:00Z"
    entries = []
    for e in events:
        link = (f"/logs/{e.name}/runs/{e.run_id}/pauses/{e.entry}" if e.kind == "pause"
                and e.run_id else f"/logs/{e.name}")
        entries.append(
            f"<entry><id>tag:scalegate,{esc(e.name)}:{esc(e.kind)}:{e.entry}</id>"
            f"<title>{esc(e.name)}: {esc(e.summary[:200])}</title><updated>{esc(e.at)}"
            f"</updated><link href=\"{esc(link)}\"/><category term=\"{esc(e.kind)}\"/>"
            f"<summary>{esc(e.summary)}</summary></entry>")
    body = (f"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/"
            f"2005/Atom\"><id>tag:scalegate,registry:{esc(path)}</id><title>{esc(title)}"
            f"</title><updated>{esc(updated)}</updated><link rel=\"self\" href=\"{esc(path)}\"/>"
            + "".join(entries) + "</feed>\n")
    return Response(body, media_type="application/atom+xml")
