"""Start `scalegate serve` as a real process on an ephemeral 127.0.0.1 port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCALEGATE = str(Path(sys.executable).parent / "scalegate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def post(url: str, body: bytes, ctype: str = "application/json"
         ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype},
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


@contextmanager
def serving(ledger: str | Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``(base URL, process)`` of a running server; stopped (SIGTERM) afterwards."""
    port = free_port()
    proc = subprocess.Popen([SCALEGATE, "serve", "--ledger", str(ledger), "--listen",
                             f"127.0.0.1:{port}", *args], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while True:
        try:
            if get(url + "log.vkey")[0] == 200:
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("serve did not come up: "
                                   + (proc.stderr.read() if proc.stderr else "")) from None
            time.sleep(0.1)
    try:
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def witness_process(state: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([SCALEGATE, "witness", "serve", "--state", str(state), "--listen",
                             f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            if get(f"http://127.0.0.1:{port}/")[0] == 200:
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(proc.stderr.read() if proc.stderr else "") from None
            time.sleep(0.1)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def init_witness(directory: Path, name: str, log_vkey: str) -> str:
    """A new witness ``witness.example/<name>`` of the log (`scalegate witness init`): its
    key in ``<name>.key``, state in ``<name>.json``, cosignature key in ``<name>.pub``;
    returns that key."""
    from scalegate.ledger import SigningKey

    SigningKey.generate(f"witness.example/{name}").save(directory / f"{name}.key")
    out = subprocess.run([SCALEGATE, "witness", "init", "--key", str(directory / f"{name}.key"),
                          "--log", log_vkey, "--state", str(directory / f"{name}.json")],
                         capture_output=True, text=True, check=True)
    vkey = out.stdout.strip().splitlines()[-1]
    (directory / f"{name}.pub").write_text(vkey + "\n")
    return vkey
