"""`ledger publish-tiles` writes a static C2SP tlog-tiles log; Python's own http.server
serves it; the tiled-log reader verifies it against the log's key alone, and a check
written here from the spec (not the project's Merkle code) agrees with it."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalegate.cli import app
from scalegate.errors import AppendRefused, NoteError, ProofError, TileNotFound
from scalegate.ledger import (
    Ledger,
    PolicyRef,
    RunPredicate,
    SigningKey,
    Tile,
    read_tiled_log,
    sign_statement,
    tiles_of,
)
from scalegate.server import publish_tiles

from .conftest import T0, Lab, make_lab


def cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.stdout


@pytest.fixture(scope="module")
def site(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "log"
    cli("ledger", "publish-tiles", str(out), "--ledger", str(lab.path))
    return out


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The directory served by Python's http.server on an ephemeral port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


# --- an independent reading, from the spec alone ----------------------------------------------


def _h(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, over leaf hashes (k: the largest power of two below n)."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _h(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:]))


def _independent_root(site: Path, size: int) -> tuple[bytes, list[bytes]]:
    """The root from the level-0 tiles, every full tile checked one level up, and the
    entries from the bundles, each against its leaf."""
    def read(level: str, n: int, width: int) -> bytes:
        digits = str(n).rjust(3 * max(1, -(-len(str(n)) // 3)), "0")
        parts = [digits[i:i + 3] for i in range(0, len(digits), 3)]
        path = "/".join(["x" + p for p in parts[:-1]] + [parts[-1]])
        return (site / "tile" / level / (path + ("" if width == 256 else f".p/{width}"))
                ).read_bytes()

    leaves: list[bytes] = []
    entries: list[bytes] = []
    for n in range(-(-size // 256)):
        width = min(256, size - 256 * n)
        tile = read("0", n, width)
        leaves += [tile[i:i + 32] for i in range(0, len(tile), 32)]
        data, pos = read("entries", n, width), 0
        while pos < len(data):
            length = int.from_bytes(data[pos:pos + 2], "big")
            entries.append(data[pos + 2:pos + 2 + length])
            pos += 2 + length
    assert [_h(b"\x00" + e) for e in entries] == leaves
    above = read("1", 0, size // 256)  # each full level-0 tile's hash, one level up
    for n in range(size // 256):
        assert _mth(leaves[256 * n:256 * (n + 1)]) == above[32 * n:32 * (n + 1)]
    return _mth(leaves), entries


def test_the_static_log_verifies_from_the_spec_alone(lab: Lab, site: Path) -> None:
    note = (site / "checkpoint").read_text()
    origin, size, root_b64 = note.split("\n")[:3]
    assert (origin, int(size)) == (lab.ledger.origin, 600)
    root, entries = _independent_root(site, 600)
    import base64

    assert base64.b64decode(root_b64) == root == lab.ledger.root(600)
    shown = [json.loads(line) for line in
             cli("ledger", "show", "--json", "--ledger", str(lab.path)).splitlines()]
    envelopes = [json.loads(e) for e in entries]
    assert envelopes == [row["envelope"] for row in shown]
    assert (site / "log.vkey").read_text().strip() == lab.log_key.vkey.text()
    assert lab.ledger.origin in (site / "index.html").read_text()


def test_the_reader_verifies_the_log_over_http(lab: Lab, served: str) -> None:
    log = read_tiled_log(served, lab.log_key.vkey)
    assert log.checkpoint.size == 600 and log.checkpoint.root_hash == lab.ledger.root(600)
    assert log.entries == [e.data for e in lab.ledger.entries()]
    assert log.tiles_fetched == len(list(tiles_of(600)))
    out = cli("ledger", "read-tiles", served, "--log-key", lab.log_key.vkey.text())
    assert "verified log.example.org/tiles: 600 entries" in " ".join(out.split())


def test_the_reader_refuses_another_key_or_origin(lab: Lab, site: Path) -> None:
    with pytest.raises(NoteError):
        read_tiled_log(str(site), SigningKey.generate(lab.ledger.origin).vkey)
    with pytest.raises(NoteError):
        read_tiled_log(str(site), lab.log_key.vkey, origin="another.example/log")


@pytest.mark.parametrize("what", ["tile/0/000", "tile/0/002.p/88", "tile/1/000.p/2",
                                  "tile/entries/001", "tile/entries/002.p/88"])
def test_any_altered_resource_is_caught(lab: Lab, site: Path, tmp_path: Path,
                                        what: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(site, copy)
    target = copy / what
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ProofError):
        read_tiled_log(str(copy), lab.log_key.vkey)
    target.unlink()
    with pytest.raises(TileNotFound):
        read_tiled_log(str(copy), lab.log_key.vkey)


def test_publishing_again_writes_only_what_is_new(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 300)
    site = tmp_path / "site"
    first = publish_tiles(lab.ledger, site)
    assert (first.size, first.kept) == (300, 0)
    lab.fill(700)
    again = publish_tiles(lab.ledger, site)
    assert again.size == 700 and again.kept == 2  # tile/0/000 and tile/entries/000 stayed
    full = site / Tile(0, 0).path()
    assert full.read_bytes() == lab.ledger.tile(Tile(0, 0))
    assert read_tiled_log(str(site), lab.log_key.vkey).entries == [
        e.data for e in lab.ledger.entries()]
    lab.ledger.close()


def test_an_entry_a_bundle_cannot_hold_is_refused_at_append(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 2)
    big = sign_statement(RunPredicate(run_id="r", org="acme", model="m" * 70_000,
                                      started_at=T0, policy=PolicyRef(
                                          id="p", version="1", digest="0" * 64)), lab.trainer)
    with pytest.raises(AppendRefused, match="at most 65,535"):
        lab.ledger.append(big)
    assert lab.ledger.size == 2
    lab.ledger.close()


def test_publishing_a_log_without_a_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    key = SigningKey.generate("log.example.org/empty")
    key.save(tmp_path / "log.key")
    Ledger.create(tmp_path / "e.db", key.name, tmp_path / "log.key",
                  [SigningKey.generate("acme/root").vkey]).close()
    res = CliRunner().invoke(app, ["ledger", "publish-tiles", str(tmp_path / "s"), "--ledger",
                                   str(tmp_path / "e.db")])
    assert res.exit_code != 0
    assert "no checkpoint" in " ".join(str(res.exception).split())


def test_publishing_where_nothing_can_be_written_says_so(lab: Lab) -> None:
    res = CliRunner().invoke(app, ["ledger", "publish-tiles", "/proc/scalegate-nope",
                                   "--ledger", str(lab.path)])
    assert res.exit_code != 0 and "cannot write the tiles" in str(res.exception)


def test_a_resource_larger_than_it_can_be_is_refused_unread(lab: Lab, site: Path,
                                                           tmp_path: Path) -> None:
    copy = tmp_path / "big"
    shutil.copytree(site, copy)
    (copy / "tile/0/000").write_bytes(b"\0" * 9000)
    with pytest.raises(ProofError, match="larger than"):
        read_tiled_log(str(copy), lab.log_key.vkey)


def test_superseded_partial_tiles_are_removed(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 100)
    site = tmp_path / "site"
    publish_tiles(lab.ledger, site)
    assert (site / "tile/0/000.p/100").is_file()
    lab.fill(300)
    publish_tiles(lab.ledger, site)
    assert (site / "tile/0/000").is_file() and not (site / "tile/0/000.p").exists()
    assert read_tiled_log(str(site), lab.log_key.vkey).checkpoint.size == 300
    lab.ledger.close()


def test_a_reader_between_two_publications_falls_back_to_the_full_tile(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, 100)
    site = tmp_path / "site"
    publish_tiles(lab.ledger, site)
    old_checkpoint = (site / "checkpoint").read_bytes()
    lab.fill(300)
    publish_tiles(lab.ledger, site)  # tile/0/000.p/100 is gone: tile/0/000 is full now
    assert not (site / "tile/0/000.p").exists()

    def fetch(path: str) -> bytes:  # the reader fetched the checkpoint just before
        if path == "checkpoint":
            return old_checkpoint
        target = site / path
        if not target.is_file():
            raise TileNotFound(path)
        return target.read_bytes()

    log = read_tiled_log(fetch, lab.log_key.vkey)
    assert log.checkpoint.size == 100
    assert log.entries == [e.data for e in lab.ledger.entries()][:100]
    lab.ledger.close()
