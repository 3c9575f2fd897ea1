"""`scalegate demo --serve`: the demo, then its log and a registry following it, with the
address of the pause page printed; stopping it stops the log too."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCALEGATE = str(Path(sys.executable).parent / "scalegate")


def test_demo_serve_prints_a_pause_page_that_answers(tmp_path: Path) -> None:
    from server.serving import free_port

    port = free_port()
    proc = subprocess.Popen([SCALEGATE, "demo", "--dir", str(tmp_path / "ws"), "--no-live",
                             "--serve", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pages: list[str] = []
    try:
        deadline = time.monotonic() + 240
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("pause of "):
                pages.append(line.split(": ", 1)[1].strip())
            if "pages at" in line or time.monotonic() > deadline:
                break
        assert pages, "no pause page was printed"
        time.sleep(0.5)
        with urllib.request.urlopen(pages[0], timeout=10) as r:
            page = r.read().decode()
        assert "verify it yourself" in page and "demo-lab" in page
        _every_statement_verifies_in_the_browser(pages[0])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    time.sleep(1)
    with pytest.raises(OSError):  # the demo's log stopped with it
        urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/checkpoint", timeout=3)


def _every_statement_verifies_in_the_browser(url: str) -> None:
    """The pause, each approval and the resumption: each verify button succeeds."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return  # the registry's browser tests say why they skip
    from playwright.sync_api import sync_playwright

    from registry.test_browser import FLAGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(url)
            buttons = page.locator("button[data-verify]")
            assert buttons.count() >= 4  # the pause, two approvals, the resumption
            for i in range(buttons.count()):
                buttons.nth(i).click()
            page.wait_for_function("[...document.querySelectorAll('[role=status]')].every("
                                   "e => /verify-(ok|failed)/.test(e.className))",
                                   timeout=30_000)
            results = [(e.get_attribute("class"), e.inner_text())
                       for e in page.locator("[role=status]").all()]
            assert all(c == "verify-ok" for c, _ in results), results
        finally:
            browser.close()
