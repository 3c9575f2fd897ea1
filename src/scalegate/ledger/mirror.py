"""A verified local copy of a log served as tiles (``scalegate ledger sync URL MIRROR``).

A mirror is a ledger database (an SQLite file or a PostgreSQL URL) holding what a C2SP
``tlog-tiles`` log at ``mirror_of`` has published, each part verified before it is
written:

- the log's checkpoint is checked under the log key the mirror pinned when it was made;
- the level-0 hash tiles of the new entries, folded onto the right edge of the tree the
  mirror already holds, must make the checkpoint's signed root: so the new tree extends
  the one verified before (a consistency check that needs no proof, since the mirror
  holds every leaf), and a log that shows another history raises :class:`SplitView`;
- the entry bundles are then copied in batches (one transaction each), every entry
  checked against its leaf hash: whatever is written was verified against a signed root;
- the checkpoint note, with the witness cosignatures it carries, is stored as a ledger
  stores its own, so ``scalegate verify`` weighs it as it weighs a local ledger's.

Tiles carry no entry times, so mirrored entries have none (``appended_at`` is ``None``):
the whole-log check judges their signers at the time each statement claims, and an
auditor bounds when each was logged by the witnesses' cosignatures. A mirror refuses
appends (submit to the log itself). Interrupting a sync loses nothing: the next one
goes on from what was committed.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson
import pybase64

from scalegate.errors import KeyMaterialError, LedgerError, NoteError, ProofError, StoreError
from scalegate.ledger import merkle
from scalegate.ledger._admission import admit, prepare
from scalegate.ledger._coverage import ISSUED_KEY
from scalegate.ledger._store import LedgerStore, Writer
from scalegate.ledger._tables import EntryRow, format_time
from scalegate.ledger.checkpoint import Checkpoint, open_checkpoint
from scalegate.ledger.keys import VerifierKey
from scalegate.ledger.log import Ledger, _utc_now
from scalegate.ledger.note import add_signature_lines, parse_note
from scalegate.ledger.registry import KEY_KINDS, KeyRegistry, RegisteredKey
from scalegate.ledger.statements import kind_of
from scalegate.ledger.tiled_log import Fetch, fetch_tile, tile_fetcher
from scalegate.ledger.tiles import HASH_BYTES, TILE_WIDTH, Tile, parse_bundle

__all__ = ["SplitView", "SyncResult", "default_mirror_path", "sync_into", "sync_mirror"]

#: Entry bundles copied per transaction (256 entries each).
BUNDLES_PER_BATCH = 16
Progress = Callable[[int, int], None]  # (entries copied, entries to copy)


class SplitView(ProofError):
    """The log showed a history other than the one the mirror verified before: two signed
    checkpoints that cannot both hold. ``evidence`` is both notes, for anyone to check."""

    def __init__(self, message: str, *, ours: str, theirs: str, index: int | None) -> None:
        super().__init__(message, hint="Keep the evidence (both signed checkpoints) and "
                         "report it: a log must show everyone the same tree.")
        self.ours, self.theirs, self.index = ours, theirs, index

    @property
    def evidence(self) -> str:
        """Both signed checkpoints, as text anyone can check against the log key."""
        where = "" if self.index is None else f"first differing entry: {self.index}\n"
        return (f"# split view: two checkpoints signed by one log that cannot both hold\n"
                f"{where}\n# the checkpoint the mirror verified before\n{self.ours}\n"
                f"# the checkpoint the log serves now\n{self.theirs}")


@dataclass(frozen=True)
class SyncResult:
    """What a sync did: the mirror's size before and after, the checkpoint it verified,
    whether it made the mirror, and whether the log key was taken from the log itself
    (trusted on first use) rather than given."""

    mirror: str
    before: int
    size: int
    checkpoint: Checkpoint
    created: bool = False
    key_from_log: bool = False
    stale: bool = False  # the log served a checkpoint older than the mirror's

    @property
    def added(self) -> int:
        """Entries copied by this sync."""
        return self.size - self.before


def default_mirror_path(url: str) -> Path:
    """Where reading commands keep their mirror of ``url``: ``$SCALEGATE_MIRRORS``, else
    ``$XDG_CACHE_HOME/scalegate/mirrors`` (``~/.cache/...``), one file per log address."""
    base = os.environ.get("SCALEGATE_MIRRORS") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "scalegate", "mirrors")
    url = log_address(url)
    name = re.sub(r"[^A-Za-z0-9.-]+", "_", url.split("://", 1)[-1]).strip("_")[:80]
    return Path(base) / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:10]}.db"


def log_address(url: str) -> str:
    """``url`` as a mirror records it (with one trailing slash)."""
    return url.rstrip("/") + "/"


def sync_mirror(
    source: str, mirror: str | os.PathLike[str], *, log_key: VerifierKey | None = None,
    org_roots: Sequence[VerifierKey] | None = None, workers: int = 8,
    progress: Progress | None = None,
) -> SyncResult:
    """Bring the mirror at ``mirror`` up to the log at ``source`` (see the module docstring);
    make it first if it does not exist.

    A new mirror pins ``log_key`` (default: the key the log serves at ``log.vkey``, trusted
    on first use) and ``org_roots`` (default: the log's ``org-roots``); an existing one
    must follow ``source`` and, if ``log_key`` is given, have pinned that key.
    """
    address = log_address(source)
    fetch = tile_fetcher(address)
    led, created, key_from_log = _open_or_create(address, mirror, fetch, log_key, org_roots)
    try:
        result = sync_into(led, fetch, workers=workers, progress=progress)
    finally:
        led.close()
    return SyncResult(result.mirror, result.before, result.size, result.checkpoint, created,
                      key_from_log, result.stale)


def sync_into(led: Ledger, fetch: Fetch, *, workers: int = 8,
              progress: Progress | None = None) -> SyncResult:
    """Sync the open mirror ``led`` from ``fetch`` (the log it follows)."""
    if led.mirror_of is None:
        raise LedgerError(f"ledger {led.path} is not a mirror; only a mirror is synced.",
                          hint="Sync into a new file: `scalegate ledger sync URL mirror.db`.")
    note = _text(fetch("checkpoint"), "the log's checkpoint")
    cp, _ = open_checkpoint(note, led.log_vkey, origin=led.origin)
    before = led.size
    if cp.size <= before:
        if led.root(cp.size) != cp.root_hash:
            raise _split(led, before, note, cp, None)
        if cp.size == before:
            _store_checkpoint(led, cp, note)
        return SyncResult(led.path, before, before, cp, stale=cp.size < before)
    m, n = before, cp.size
    bundles = [Tile(-1, i, min(TILE_WIDTH, n - i * TILE_WIDTH))
               for i in range(m // TILE_WIDTH, -(-n // TILE_WIDTH))]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # The bundles start coming while the hash tiles are checked; nothing is written
        # before the new leaves make the signed root.
        ahead = _Prefetch(pool, fetch, bundles, window=2 * BUNDLES_PER_BATCH)
        leaves = _new_leaves(led, before, fetch, cp, note, pool)
        _copy(led, before, ahead, cp, leaves, progress)
    _store_checkpoint(led, cp, note)
    return SyncResult(led.path, before, led.size, cp)


class _Prefetch:
    """Tiles fetched in order, at most ``window`` ahead of the one read."""

    def __init__(self, pool: ThreadPoolExecutor, fetch: Fetch, tiles: list[Tile],
                 window: int) -> None:
        self._pool, self._fetch, self._todo = pool, fetch, collections.deque(tiles)
        self._pending: collections.deque[tuple[Tile, Future[bytes]]] = collections.deque()
        self._window = window
        self._fill()

    def _fill(self) -> None:
        while self._todo and len(self._pending) < self._window:
            tile = self._todo.popleft()
            self._pending.append((tile, self._pool.submit(fetch_tile, self._fetch, tile)))

    def __iter__(self) -> Iterator[tuple[Tile, bytes]]:
        while self._pending:
            tile, body = self._pending.popleft()
            self._fill()
            yield tile, body.result()


# --- making or opening the mirror ------------------------------------------------------------


def _open_or_create(
    address: str, mirror: str | os.PathLike[str], fetch: Fetch, log_key: VerifierKey | None,
    org_roots: Sequence[VerifierKey] | None,
) -> tuple[Ledger, bool, bool]:
    where = os.fspath(mirror)
    exists = Path(where).exists() if "://" not in where else _has_ledger(where)
    if exists:
        led = Ledger.open(where, checkpoint_on_close=False)
        try:
            _check_follows(led, address, log_key)
        except BaseException:
            led.close()
            raise
        return led, False, False
    key_from_log = log_key is None
    if log_key is None:
        log_key = _served_key(fetch, "log.vkey", address)
    roots = list(org_roots) if org_roots else _served_roots(fetch, address)
    # The origin is the checkpoint's first line, once the key has verified it.
    cp, _ = open_checkpoint(_text(fetch("checkpoint"), "the log's checkpoint"), log_key)
    meta = {"origin": cp.origin, "log_vkey": log_key.text(),
            "org_roots": json.dumps([r.text() for r in dict.fromkeys(roots)]),
            "created_at": format_time(_utc_now()), "mirror_of": address, ISSUED_KEY: "0"}
    created = _create(where, meta)
    led = Ledger.open(where, checkpoint_on_close=False)
    if not created:  # another sync made it meanwhile: it must be the same mirror
        try:
            _check_follows(led, address, None if key_from_log else log_key)
        except BaseException:
            led.close()
            raise
    return led, created, key_from_log and created


def _create(where: str, meta: dict[str, str]) -> bool:
    """Make the mirror's database; whether this call made it. A file is made aside and
    linked into place, so a concurrent sync finds either no mirror or a whole one."""
    if "://" in where:
        LedgerStore.create(where, meta).close()
        return True
    aside = f"{where}.new-{os.getpid()}"
    try:
        LedgerStore.create(aside, meta).close()
        try:
            os.link(aside, where)
        except FileExistsError:
            return False
        return True
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(aside + suffix).unlink(missing_ok=True)


def _has_ledger(url: str) -> bool:
    try:
        LedgerStore.open(url).close()
    except StoreError:
        return False
    return True


def _check_follows(led: Ledger, address: str, log_key: VerifierKey | None) -> None:
    if led.mirror_of is None:
        raise LedgerError(f"{led.path} is a ledger of its own, not a mirror; a sync would "
                          "mix another log into it.", hint="Sync into a new file.")
    if led.mirror_of != address:
        raise LedgerError(f"mirror {led.path} follows {led.mirror_of}, not {address}.",
                          hint="Name the log it follows, or sync into a new file.")
    if log_key is not None and log_key != led.log_vkey:
        raise KeyMaterialError(
            f"mirror {led.path} pinned log key {led.log_vkey.keyid} when it was made, not "
            f"{log_key.keyid}.", hint="If the log really changed its key, start a new mirror.")


def _served_key(fetch: Fetch, path: str, address: str) -> VerifierKey:
    text = _text(fetch(path), f"{address}{path}").strip()
    try:
        return VerifierKey.parse(text)
    except (KeyMaterialError, ValueError) as exc:
        raise LedgerError(f"{address}{path} is not a verifier key: {exc}",
                          hint="Pass the log's key with --log-key.") from None


def _served_roots(fetch: Fetch, address: str) -> list[VerifierKey]:
    lines = [ln.strip() for ln in _text(fetch("org-roots"), f"{address}org-roots").splitlines()]
    try:
        roots = [VerifierKey.parse(ln) for ln in lines if ln]
    except (KeyMaterialError, ValueError) as exc:
        raise LedgerError(f"{address}org-roots holds something that is not a verifier key: "
                          f"{exc}", hint="Pass the roots with --org-root.") from None
    if not roots:
        raise LedgerError(f"{address}org-roots names no organisation root.",
                          hint="Pass the roots with --org-root.")
    return roots


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError(f"{what} is not UTF-8 text.") from None


# --- verifying what is new --------------------------------------------------------------------


def _new_leaves(led: Ledger, m: int, fetch: Fetch, cp: Checkpoint, note: str,
                pool: ThreadPoolExecutor) -> list[bytes]:
    """The leaf hashes of entries ``[m, cp.size)`` (``m``: what the mirror held when the
    sync began), once they and the mirror's own leaves make the checkpoint's root."""
    n = cp.size
    first = m // TILE_WIDTH
    hashes = _level0(fetch, range(first, -(-n // TILE_WIDTH)), n, pool)
    held = first * TILE_WIDTH  # hashes[0] is leaf ``held``; the mirror holds up to m
    overlap, new = hashes[:m - held], hashes[m - held:]
    if overlap == led.leaf_hashes(held, m):
        with led.store.reader() as conn:
            compact = led.store.compact_range(conn, m)
        for h in new:
            compact.append(h)
        if compact.root() == cp.root_hash:
            return new
    raise _diagnose(led, m, fetch, cp, note, overlap + new, pool)


def _level0(fetch: Fetch, indices: range, size: int, pool: ThreadPoolExecutor) -> list[bytes]:
    """The leaf hashes the level-0 tiles ``indices`` of a tree of ``size`` list."""
    tiles = [Tile(0, i, min(TILE_WIDTH, size - i * TILE_WIDTH)) for i in indices]
    bodies = list(pool.map(lambda t: fetch_tile(fetch, t), tiles))
    hashes: list[bytes] = []
    for tile, body in zip(tiles, bodies, strict=True):
        if len(body) != tile.width * HASH_BYTES:
            raise ProofError(f"{tile.path()} is {len(body)} bytes, not {tile.width} hashes.")
        hashes.extend(body[i:i + HASH_BYTES] for i in range(0, len(body), HASH_BYTES))
    return hashes


def _diagnose(led: Ledger, m: int, fetch: Fetch, cp: Checkpoint, note: str,
              tail: list[bytes], pool: ThreadPoolExecutor) -> ProofError:
    """The log's leaves from the mirror's last partial tile on (``tail``) do not extend the
    mirror's tree to the signed root. If all the log's leaves make that root, its signed
    history differs from the mirror's (a split view); otherwise its tiles are wrong."""
    held = m // TILE_WIDTH * TILE_WIDTH
    theirs = _level0(fetch, range(m // TILE_WIDTH), held, pool) + tail
    if merkle.root(theirs) == cp.root_hash:
        ours = led.leaf_hashes(0, m)
        index = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
                     None)
        return _split(led, m, note, cp, index)
    return ProofError(f"the log's tiles do not make its checkpoint's root (size {cp.size}): "
                      "it serves tiles that are not the ones it signed.",
                      hint="Try again later; if it persists, report it to the log's operator.")


def _split(led: Ledger, m: int, note: str, cp: Checkpoint, index: int | None) -> SplitView:
    ours = led.latest_checkpoint() or "(none stored)"
    where = f" (they differ from entry {index} on)" if index is not None else ""
    return SplitView(f"the log at {led.mirror_of} now shows a tree of size {cp.size} that "
                     f"does not extend the {m} entries this mirror verified "
                     f"before{where}: a split view.", ours=ours, theirs=note, index=index)


# --- copying ----------------------------------------------------------------------------------


def _copy(led: Ledger, m: int, bundles: Iterable[tuple[Tile, bytes]], cp: Checkpoint,
          leaves: list[bytes], progress: Progress | None) -> None:
    """Copy entries ``[m, cp.size)`` whose leaf hashes are ``leaves``, a batch of bundles
    per transaction."""
    n = cp.size
    registry = led.registry(m)
    with led.store.reader() as conn:
        compact = led.store.compact_range(conn, m)
    rows: list[EntryRow] = []
    keys: dict[str, RegisteredKey] = {}  # the registry cache rows the batch changes
    for count, (tile, body) in enumerate(bundles, 1):
        for i, data in enumerate(parse_bundle(body, tile.width)):
            idx = tile.start + i
            if idx < m:
                continue  # held already (a partial bundle fetched again)
            leaf = leaves[idx - m]
            if merkle.leaf_hash(data) != leaf:
                raise ProofError(f"entry {idx} in {tile.path()} does not hash to its leaf "
                                 "in the checkpoint's tree.")
            row, reg = _row(idx, leaf, data, registry)
            rows.append(row)
            if reg is not None:
                keys[reg.keyid] = reg
        if count % BUNDLES_PER_BATCH == 0 or (rows and rows[-1].index == n - 1):
            _write(led, rows, compact, keys.values())
            rows, keys = [], {}
            if progress is not None:
                progress(led.size - m, n - m)


def _write(led: Ledger, rows: list[EntryRow], compact: merkle.CompactRange,
           keys: Iterable[RegisteredKey]) -> None:
    """Write verified ``rows`` (and the tree nodes they complete) in one transaction. Rows
    another sync of the same mirror wrote meanwhile are left as they are: they were
    verified against the same signed tree, so they are the same rows."""
    if not rows:
        return
    nodes = [compact.append(r.leaf_hash)[1:] for r in rows]  # level 0 lives in entries
    with led.store.writer() as w:
        skip = w.size - rows[0].index
        if skip < 0 or (skip and _held(w, rows[:skip]) != [r.leaf_hash for r in rows[:skip]]):
            raise LedgerError(f"mirror {led.path} changed during the sync, unlike the log; "
                              "nothing of this batch was written.",
                              hint="Run `scalegate ledger verify` on the mirror.")
        if skip < len(rows):
            w.add(rows[skip:], [n for ns in nodes[skip:] for n in ns], keys)


def _held(w: Writer, rows: list[EntryRow]) -> list[bytes]:
    """The leaf hashes the mirror holds at the indices of ``rows``."""
    held: list[bytes] = []
    for a in range(0, len(rows), 256):  # a bounded number of parameters per query
        part = rows[a:a + 256]
        found = w.store.read_hashes(w.conn, [(0, r.index) for r in part])
        held.extend(found[(0, r.index)] for r in part)
    return held


def _row(idx: int, leaf: bytes, data: bytes, registry: KeyRegistry
         ) -> tuple[EntryRow, RegisteredKey | None]:
    """The stored row of a mirrored entry (what it says, who signed it, no time) and, for
    a key statement, the registration it makes (folded into ``registry``)."""
    said = _columns(data)
    if said is None:
        return EntryRow(idx, leaf, data, "", None, "", None), None  # the auditor reports it
    kind, run_id, keyids = said
    signer = next((k for k in keyids if registry.get(k) is not None),
                  keyids[0] if keyids else "")
    reg = None
    if kind in KEY_KINDS:
        try:  # fold it, as the log admitted it (its time does not matter for a key)
            p = prepare(data, f"entry {idx}")
            vkey, reg = admit(p, idx, registry, registry.verifiers(), _utc_now())
            signer = vkey.keyid
        except LedgerError:
            pass  # not a key the roots signed: the auditor reports it
    return EntryRow(idx, leaf, data, kind, run_id, signer, None), reg


def _columns(data: bytes) -> tuple[str, str | None, list[str]] | None:
    """What a mirror indexes of an entry (kind, run, signature keyids), read quickly and
    leniently: the mirror holds exactly the bytes the log signed, and the whole-log check
    judges their form, their signatures and these columns against them."""
    try:
        env = orjson.loads(data)
        statement = orjson.loads(pybase64.b64decode(env["payload"], validate=True))
        kind = kind_of(statement["predicateType"])
        run_id = statement["predicate"].get("run_id")
        keyids = [str(sig["keyid"]) for sig in env["signatures"]]
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return kind, run_id if isinstance(run_id, str) else None, keyids


def _store_checkpoint(led: Ledger, cp: Checkpoint, note: str) -> None:
    """Keep the checkpoint (or add the cosignatures it gained since it was kept)."""
    stored = led.store.add_checkpoint(cp.size, cp.root_hash, note, format_time(_utc_now()))
    if stored == note:
        return
    try:
        (body, sigs), (kept, _) = parse_note(note), parse_note(stored)
        if body != kept:
            return  # the same tree, said otherwise: keep the first
        merged = add_signature_lines(stored, [s.line() for s in sigs])
    except NoteError:
        return
    if merged != stored:
        with led.store.writer() as w:
            w.set_checkpoint_note(cp.size, merged)
