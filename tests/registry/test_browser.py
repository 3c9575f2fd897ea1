"""Verify it yourself, in a real browser: the registry's pause page has the reader's own
Chromium fetch the checkpoint and tiles from the lab's log, check the log's signature, the
witness's cosignature, the entry's inclusion and its DSSE signature, and say so; a
tampered tile or a checkpoint signed by another key fails, visibly."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scalegate.ledger import Ledger, SigningKey, sign_note
from scalegate.registry import Monitor, RegistryStore, load_config
from scalegate.registry.web import create_registry_app
from scalegate.server import publish_tiles
from server.serving import free_port

from .test_registry import _config, lab  # noqa: F401  (the module's lab fixture)

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class _Log(SimpleHTTPRequestHandler):
    """A static log host that lets any page read it (as `scalegate serve` does)."""

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def world(lab: Path, tmp_path: Path) -> Iterator[dict[str, object]]:  # noqa: F811
    """The lab's log as static files on one port, a registry following it on another."""
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    site = tmp_path / "site"
    with Ledger.open(lab / "ws" / "ledger.db") as led:
        publish_tiles(led, site)
    host = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Log, directory=str(site)))
    threading.Thread(target=host.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{host.server_address[1]}/"
    cfg = _config(tmp_path / "registry.yaml", [("acme", url, lab / "ws" / "trust.yaml")])
    store = RegistryStore(tmp_path / "registry.db")
    assert Monitor(load_config(cfg), store, tmp_path / "work").check_all() == {"acme": "verified"}
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_registry_app(store), host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        threading.Event().wait(0.05)
    run = store.log("acme").audit["runs"][0]  # type: ignore[union-attr]
    pause = run["pauses"][0]
    yield {"site": site, "page": f"http://127.0.0.1:{port}/logs/acme/runs/{run['run_id']}"
           f"/pauses/{pause['index']}", "pause": pause, "lab": lab}
    server.should_exit = True
    host.shutdown()
    store.close()


def _verify_in_browser(page_url: str, shot: Path | None = None) -> tuple[str, str]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            if shot is not None:  # the home and run pages too, as a reader sees them
                base, run = page_url.split("/logs/")[0], page_url.split("/pauses/")[0]
                for name, url in (("home", base + "/"), ("run", run)):
                    page.goto(url)
                    page.screenshot(path=str(shot.with_name(f"{name}.png")), full_page=True)
            page.goto(page_url)
            page.click("button[data-verify]")
            page.wait_for_selector("#verify-pause.verify-ok, #verify-pause.verify-failed",
                                   timeout=20_000)
            if shot is not None:
                page.screenshot(path=str(shot), full_page=True)
            out = page.locator("#verify-pause")
            if out.get_attribute("data-ms") is not None:  # verified: how the time went
                checking = float(out.get_attribute("data-ms") or 0) - float(
                    out.get_attribute("data-fetch-ms") or 0)
                assert 0 <= checking < 2000, checking
            return str(out.get_attribute("class")), out.inner_text()
        finally:
            browser.close()


def _shots() -> Path | None:
    where = os.environ.get("SCALEGATE_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
    return Path(where) if where else None


def test_an_honest_pause_verifies_in_the_browser(world: dict) -> None:
    shots = _shots()
    cls, text = _verify_in_browser(world["page"], shots / "pause.png" if shots else None)
    assert cls == "verify-ok", text
    assert "verified in your browser" in text and "witness.example/w1" in text
    assert f"entry {world['pause']['index']}" in text


def test_a_tampered_tile_fails_visibly(world: dict) -> None:
    site: Path = world["site"]
    (tile,) = [p for p in (site / "tile" / "0").rglob("*") if p.is_file()]
    data = bytearray(tile.read_bytes())
    other = 0 if world["pause"]["index"] != 0 else 1  # a sibling on the pause's path
    data[other * 32] ^= 0xFF
    tile.write_bytes(bytes(data))
    cls, text = _verify_in_browser(world["page"])
    assert cls == "verify-failed" and "not in the tree the log signed" in text, text


def test_a_checkpoint_signed_by_another_key_fails_visibly(world: dict) -> None:
    site: Path = world["site"]
    note = (site / "checkpoint").read_text()
    body = note[:note.index("\n\n") + 1]
    impostor = SigningKey.generate("demo-lab/log")  # the log's name, another key
    (site / "checkpoint").write_text(sign_note(body, [impostor]))
    cls, text = _verify_in_browser(world["page"])
    assert cls == "verify-failed" and "not signed by the log's key" in text, text


def test_every_statement_on_the_organisation_and_run_pages_verifies(world: dict) -> None:
    """Keys (signed by the organisation's root), the policy, the run: each row's button."""
    from playwright.sync_api import sync_playwright

    base, run_page = world["page"].split("/logs/")[0], world["page"].split("/pauses/")[0]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            seen = 0
            for url in (base + "/logs/acme/orgs/demo-lab", run_page):
                page.goto(url)
                buttons = page.locator("button[data-verify]")
                assert buttons.count() >= 1, url
                for i in range(buttons.count()):
                    b = buttons.nth(i)
                    b.click()
                    out = page.locator(f"#{b.get_attribute('data-output')}")
                    page.wait_for_function(
                        "el => /verify-(ok|failed)/.test(el.className)",
                        arg=out.element_handle(), timeout=20_000)
                    assert out.get_attribute("class") == "verify-ok", out.inner_text()
                    seen += 1
            assert seen >= 5  # trainer, rso, board, ciso keys; the policy; the run
        finally:
            browser.close()
