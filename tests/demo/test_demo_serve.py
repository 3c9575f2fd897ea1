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
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    time.sleep(1)
    with pytest.raises(OSError):  # the demo's log stopped with it
        urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/checkpoint", timeout=3)
