"""`scalegate serve` as a real process on an ephemeral port: the same bytes as the static
log, the caching the spec asks for, problem+json for what is not a tile, and a running
log read back through its tiles while it grows."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scalegate.ledger import Tile, read_tiled_log, tiles_of
from scalegate.server import publish_tiles

from .conftest import Lab
from .serving import SCALEGATE, get, serving


@pytest.fixture(scope="module")
def server(lab: Lab) -> Iterator[str]:
    with serving(lab.path) as (url, _):
        yield url


def test_serve_gives_the_same_bytes_as_the_static_log(lab: Lab, server: str,
                                                      tmp_path: Path) -> None:
    publish_tiles(lab.ledger, tmp_path)
    status, headers, body = get(server + "checkpoint")
    assert status == 200 and body == (tmp_path / "checkpoint").read_bytes()
    assert headers["content-type"].startswith("text/plain")
    assert "max-age=2" in headers["cache-control"]
    size = int(body.decode().split("\n")[1])
    for tile in tiles_of(size):
        status, headers, got = get(server + tile.path(), {"Accept-Encoding": "identity"})
        assert status == 200, tile.path()
        assert got == (tmp_path / tile.path()).read_bytes(), tile.path()
        assert headers["content-type"] == "application/octet-stream"
        assert ("immutable" in headers["cache-control"]) == tile.full
    assert get(server + "log.vkey")[2].decode().strip() == lab.log_key.vkey.text()
    assert lab.ledger.origin in get(server)[2].decode()


def test_bundles_are_compressed_for_clients_that_ask(server: str) -> None:
    status, headers, body = get(server + Tile(-1, 0).path(), {"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("content-encoding") == "gzip"
    import gzip

    assert gzip.decompress(body) == get(server + Tile(-1, 0).path(),
                                         {"Accept-Encoding": "identity"})[2]


@pytest.mark.parametrize(("path", "status", "title"), [
    ("tile/0/0001", 400, "Not a tile path"),
    ("tile/0/x000/001", 400, "Not a tile path"),
    ("tile/0/999", 404, "No such tile"),
    ("tile/0/002.p/89", 404, "No such tile"),
    ("tile/3/000.p/1", 404, "No such tile"),
    ("tile/entries/x999/999", 404, "No such tile"),
    ("tile/..%2f..%2fetc/passwd", 400, "Not a tile path"),
    ("nothing-here", 404, "Not Found"),
])
def test_what_is_not_a_tile_gets_a_problem_document(server: str, path: str, status: int,
                                                    title: str) -> None:
    got, headers, body = get(server + path)
    assert got == status
    assert headers["content-type"] == "application/problem+json"
    doc = json.loads(body)
    assert doc["status"] == status and doc["title"] == title and doc["detail"]


def test_a_growing_log_is_read_through_its_tiles(lab: Lab, server: str) -> None:
    before = read_tiled_log(server, lab.log_key.vkey)
    lab.fill(lab.ledger.size + 300)  # appends and signs a new checkpoint
    deadline = time.monotonic() + 10  # the server reads the checkpoint twice a second
    while (after := read_tiled_log(server, lab.log_key.vkey)).checkpoint.size \
            == before.checkpoint.size and time.monotonic() < deadline:
        time.sleep(0.1)
    assert after.checkpoint.size == before.checkpoint.size + 300
    assert after.entries[:before.checkpoint.size] == before.entries
    assert after.checkpoint.root_hash == lab.ledger.root(after.checkpoint.size)


def test_serve_says_what_is_wrong_with_its_arguments(lab: Lab, server: str) -> None:
    port = server.rsplit(":", 1)[1].strip("/")
    for args, expect in ((["--listen", "nowhere"], "is not HOST:PORT"),
                         (["--listen", f"127.0.0.1:{port}"], "cannot listen on")):
        res = subprocess.run([SCALEGATE, "serve", "--ledger", str(lab.path), *args],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "COLUMNS": "200"})
        assert res.returncode != 0 and expect in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
