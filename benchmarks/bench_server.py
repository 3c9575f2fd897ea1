"""The log over HTTP: tile reads and submissions per second, side by side in one run.

    .venv/bin/python benchmarks/bench_server.py                 # ~1 min
    .venv/bin/python benchmarks/bench_server.py --entries 20000 --seconds 10 --clients 64

Builds a real ledger (``--entries`` signed compute statements and a checkpoint), then,
each for ``--seconds``:

- tile and checkpoint reads from ``scalegate serve`` (a real process on 127.0.0.1), and,
  as the reference, the same files from ``publish-tiles`` served by a static server
  (Python's ``http.server``, threaded): requests per second with ``--clients`` keep-alive
  connections fetching random full tiles, bundles and the checkpoint;
- submissions: ``--clients`` concurrent clients each POSTing fresh signed envelopes
  (signed before the clock starts) to ``/add``: entries per second, p50/p99 time to
  acknowledgement; then ``?wait=proof`` submissions: p50/p99 time to a receipt;
- publication through two witnesses (``scalegate witness serve`` processes): the time
  from an acknowledged entry to a published checkpoint covering it, cosigned by both;
- with ``--large LEDGER`` (e.g. the 10^6-entry one ``bench_verify.py --sizes 1000000
  --workdir DIR`` keeps), the server's resident memory while clients read ``--reads``
  random tiles and bundles spread over the whole log: it must stay flat.

The load comes from this process (asyncio, raw HTTP/1.1 keep-alive), on the same two
cores as the server: the figures are what one machine does serving and loading itself.
Prints a Markdown table. Not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from scalegate.ledger import (
    ComputePredicate,
    KeyPredicate,
    Ledger,
    SigningKey,
    sign_statement,
    tiles_of,
)
from scalegate.server import publish_tiles

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server.serving import free_port, get, init_witness, post, serving, witness_process

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def build(work: Path, n: int) -> tuple[Path, SigningKey]:
    log = SigningKey.generate("bench.example/log")
    log.save(work / "log.key")
    root, trainer = SigningKey.generate("bench/root"), SigningKey.generate("bench/trainer")
    led = Ledger.create(work / "lab.db", log.name, work / "log.key", [root.vkey],
                        now=lambda: T0 + timedelta(days=1))
    led.append(sign_statement(KeyPredicate(vkey=trainer.vkey.text(), org="bench",
                                           roles=["trainer"], valid_from=T0), root))
    step = 0
    while led.size < n:
        batch = []
        for _ in range(min(1000, n - led.size)):
            step += 1
            batch.append(_compute(trainer, step))
        led.append_many(batch)
    led.checkpoint()
    publish_tiles(led, work / "site")
    led.close()
    return work / "lab.db", trainer


def _compute(key: SigningKey, step: int) -> bytes:
    return sign_statement(ComputePredicate(
        run_id="bench", step=step, tokens=1.0, flop_by_phase={"pretraining": 1.0},
        effective_flop=1.0, method="6ND", at=T0), key).to_bytes()


# --- a small keep-alive HTTP/1.1 client ------------------------------------------------------


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str,
                   path: str, body: bytes = b"") -> tuple[int, bytes]:
    head = (f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: identity\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    writer.write(head.encode() + body)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("the server closed the connection")
    status = int(status_line.split()[1])
    length, chunked = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding" and "chunked" in value:
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    data = b""
    while (size := int((await reader.readline()).strip(), 16)) > 0:
        data += await reader.readexactly(size + 2)
    await reader.readline()
    return status, data


async def _load(port: int, clients: int, seconds: float, make: object) -> tuple[int, list[float],
                                                                                int]:
    """``clients`` connections sending ``make()`` -> (method, path, body) until time is up:
    (successes, latencies, failures)."""
    done, lat, bad = 0, [], 0
    stop = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done, bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            method, path, body = make()  # type: ignore[operator]
            if method is None:
                break
            t = time.perf_counter()
            try:
                status, _ = await _request(reader, writer, method, path, body)
            except (ConnectionError, asyncio.IncompleteReadError):
                bad += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            lat.append(time.perf_counter() - t)
            if status == 200:
                done += 1
            else:
                bad += 1
        writer.close()

    await asyncio.gather(*(one() for _ in range(clients)))
    return done, lat, bad


def _reads(port: int, size: int, clients: int, seconds: float) -> tuple[float, int]:
    paths = ["/" + t.path() for t in tiles_of(size) if t.full] + ["/checkpoint"]
    rng = random.Random(1)
    t = time.perf_counter()
    ok, _, bad = asyncio.run(_load(port, clients, seconds,
                                   lambda: ("GET", rng.choice(paths), b"")))
    return ok / (time.perf_counter() - t), bad


class _StaticFiles(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients use it

    def log_message(self, *args: object) -> None:
        pass


def _static(site: Path) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_StaticFiles, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def _witnessed(work: Path, db: Path, trainer: SigningKey, rounds: int = 10) -> tuple[str, str]:
    """Seconds from an acknowledged entry to a published checkpoint covering it, through
    two witnesses (the server asks every second)."""
    from contextlib import ExitStack

    log_vkey = Ledger.open(db).log_vkey.text()
    args, ports = [], []
    for name in ("w1", "w2"):
        init_witness(work, name, log_vkey)
        ports.append(free_port())
        args += ["--witness", f"http://127.0.0.1:{ports[-1]}/={work / (name + '.pub')}"]
    took = []
    with ExitStack() as stack:
        for name, port in zip(("w1", "w2"), ports, strict=True):
            stack.enter_context(witness_process(work / f"{name}.json", port))
        url, _ = stack.enter_context(serving(db, "--checkpoint-interval", "1s", *args))
        for _ in range(rounds):
            _, _, body = post(url + "add", _compute(trainer, 10**8 + len(took)))
            index = int(body.split(b'"index":')[1].split(b",")[0])
            t = time.perf_counter()
            while True:
                got = get(url + "checkpoint")[2].split(b"\n")
                if len(got) > 1 and int(got[1]) > index:
                    break
                time.sleep(0.02)
            took.append(time.perf_counter() - t)
    return ("from an acknowledged entry to a published checkpoint cosigned by 2 witnesses "
            "(checkpoints every 1 s)", f"median {statistics.median(took):.2f} s, max "
                                       f"{max(took):.2f} s ({rounds} entries)")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _memory(ledger: Path, reads: int, clients: int) -> tuple[str, str]:
    """The server's RSS while ``reads`` random tiles of a large log are fetched."""
    led = Ledger.open(ledger)
    size = led.size
    led.close()
    tiles = [t for t in tiles_of(size) if t.full]
    rng = random.Random(7)
    samples = []
    with serving(ledger) as (url, proc):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        samples.append(_rss_mb(proc.pid))
        for _ in range(4):
            def one(left: Iterator[int] = iter(range(reads // 4))
                    ) -> tuple[str | None, str, bytes]:
                if next(left, None) is None:
                    return None, "", b""
                return "GET", "/" + rng.choice(tiles).path(), b""

            asyncio.run(_load(port, clients, 600.0, one))
            samples.append(_rss_mb(proc.pid))
    shown = " → ".join(f"{m:.0f}" for m in samples)
    return (f"`scalegate serve` resident memory over a {size:,}-entry log while {reads:,} "
            f"random full tiles and bundles are read ({len(tiles):,} exist)",
            f"{shown} MB (start, then after each quarter)")


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--large", type=Path, default=None, help="a large ledger to serve")
    ap.add_argument("--reads", type=int, default=6000)
    args = ap.parse_args()
    if args.large is not None:
        print("| what | measured |\n| --- | --- |")
        print("| " + " | ".join(_memory(args.large, args.reads, args.clients)) + " |")
        return
    work = Path(tempfile.mkdtemp(prefix="scalegate-bench-server-"))
    print(f"building a {args.entries:,}-entry ledger in {work}", file=sys.stderr)
    db, trainer = build(work, args.entries)
    rows: list[tuple[str, str]] = []
    static, sport = _static(work / "site")
    with serving(db, "--checkpoint-interval", "1s") as (url, _):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        served, bad = _reads(port, args.entries, args.clients, args.seconds)
        reference, sbad = _reads(sport, args.entries, args.clients, args.seconds)
        rows.append((f"tile and checkpoint reads, `scalegate serve`, {args.clients} "
                     f"keep-alive clients", f"**{served:,.0f} requests/s** ({bad} failed)"))
        rows.append(("the same files from a static server (Python's threaded http.server)",
                     f"{reference:,.0f} requests/s ({sbad} failed); serve / static = "
                     f"{served / reference:.2f}"))
        step = iter(range(10**6, 10**7))
        envs = [_compute(trainer, next(step)) for _ in range(40_000)]
        pool = iter(envs)

        def submission() -> tuple[str | None, str, bytes]:
            body = next(pool, None)
            return ("POST", "/add", body) if body is not None else (None, "", b"")

        t = time.perf_counter()
        ok, lat, bad = asyncio.run(_load(port, args.clients, args.seconds, submission))
        rate = ok / (time.perf_counter() - t)
        rows.append((f"submissions over HTTP, {args.clients} concurrent clients, each a fresh "
                     "signed envelope", f"**{rate:,.0f} entries/s** ({bad} refused); "
                     f"acknowledged in p50 {_pct(lat, 0.5):.1f} ms, p99 {_pct(lat, 0.99):.1f} ms"))

        def proof() -> tuple[str | None, str, bytes]:
            body = next(pool, None)
            return ("POST", "/add?wait=proof", body) if body else (None, "", b"")

        ok, lat, bad = asyncio.run(_load(port, 8, min(args.seconds, 5.0), proof))
        rows.append(("time to a receipt (`?wait=proof`, 8 clients)",
                     f"p50 {_pct(lat, 0.5):.1f} ms, p99 {_pct(lat, 0.99):.1f} ms ({ok} receipts)"))
    static.shutdown()
    rows.append(_witnessed(work, db, trainer))
    print("| what | measured |\n| --- | --- |")
    for what, got in rows:
        print(f"| {what} | {got} |")
    subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
