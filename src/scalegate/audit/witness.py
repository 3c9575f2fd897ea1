"""A transparency-log witness (c2sp.org/tlog-witness ``add-checkpoint``) with its own state.

A witness remembers, per log origin, the latest checkpoint it cosigned. Asked to
cosign a new one with ``old size`` and a consistency proof, it checks — in the
spec's order and with the spec's status codes (see :class:`WitnessRefused`):

1. the request is well formed (400) and the origin is a log it witnesses (404);
2. the checkpoint carries a valid signature by that log's key (403);
3. ``old size`` is at most the checkpoint's size (400) and equals the size it last
   cosigned for the log (409, :class:`WitnessConflict` with that size);
4. the checkpoint extends the one it cosigned: the consistency proof verifies (422),
   or, at equal sizes, the root hashes are identical (409).

A failure of step 4 by a log-signed checkpoint is evidence of a split view: the
request is persisted in the state file's ``evidence`` list *before* the refusal
(:class:`SplitViewDetected`). When all checks pass, the new checkpoint is recorded —
atomically with the check of step 3, under the state file's lock — and a C2SP
Ed25519 cosignature line is returned.

:func:`witness_ledger` drives a witness over a ledger it can read, and
:func:`attach_cosignatures` adds the cosignatures to the ledger's stored checkpoint
note, so receipts (``scalegate ledger prove``) carry them.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from scalegate.audit._state_file import locked_state, read_json, write_json
from scalegate.errors import (
    KeyMaterialError,
    LedgerError,
    NoteError,
    ProofError,
    SplitViewDetected,
    StoreError,
    WitnessConflict,
    WitnessRefused,
)
from scalegate.ledger import (
    Checkpoint,
    CosignatureVerifier,
    SigningKey,
    VerifierKey,
    add_signature_lines,
    cosign,
    cosignatures,
    merkle,
    open_checkpoint,
    parse_note,
    verify_note,
)

if TYPE_CHECKING:
    from scalegate.ledger import Ledger

__all__ = [
    "MAX_PROOF_LINES",
    "Witness",
    "WitnessRecord",
    "attach_cosignatures",
    "format_add_checkpoint",
    "parse_add_checkpoint",
    "witness_ledger",
]

#: A client MUST NOT send more consistency proof lines than this (c2sp.org/tlog-witness).
MAX_PROOF_LINES = 63
_MAX_EVIDENCE = 1000
_STATE_VERSION = 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _state_error(message: str) -> LedgerError:
    return LedgerError(f"witness state: {message}.")


@dataclass(frozen=True)
class WitnessRecord:
    """The latest checkpoint a witness cosigned for one log."""

    origin: str
    size: int
    root_hash: bytes
    checkpoint: str
    cosigned_at: str


# --- the add-checkpoint request body ---------------------------------------------------------


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], checkpoint_note: str) -> str:
    """The ``add-checkpoint`` request body: ``old N``, proof lines, empty line, checkpoint."""
    lines = [f"old {old_size}", *(base64.b64encode(h).decode("ascii") for h in proof)]
    return "\n".join(lines) + "\n\n" + checkpoint_note


def parse_add_checkpoint(body: str | bytes) -> tuple[int, list[bytes], str]:
    """Parse an ``add-checkpoint`` request body; :class:`WitnessRefused` (400) if malformed."""
    if isinstance(body, bytes | bytearray):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise WitnessRefused("add-checkpoint request is not UTF-8 text.") from None
    head, sep, note = body.partition("\n\n")
    if not sep:
        raise WitnessRefused(
            "add-checkpoint request has no empty line between the proof and the checkpoint."
        )
    lines = head.split("\n")
    if not lines[0].startswith("old ") or len(lines[0]) > 24 \
            or not _DECIMAL.fullmatch(lines[0][4:]):  # (at most 20 digits: below 2^64)
        raise WitnessRefused(
            f"add-checkpoint request starts with {lines[0][:40]!r}, expected 'old <size>' "
            "(decimal, no leading zeros)."
        )
    proof = []
    for i, line in enumerate(lines[1:], start=2):
        try:
            proof.append(base64.b64decode(line, validate=True))
        except (binascii.Error, ValueError):
            raise WitnessRefused(f"add-checkpoint request line {i} is not base64.") from None
    return int(lines[0][4:]), proof, note


# --- the witness -----------------------------------------------------------------------------


class Witness:
    """A witness with key ``key`` for the logs ``{origin: log verifier key}``.

    Its state (the latest cosigned checkpoint per log, and evidence of split views)
    lives in the JSON file ``state_path``, created on first use. ``now`` is the clock
    for cosignature timestamps (injectable for tests).
    """

    def __init__(
        self,
        state_path: str | os.PathLike[str],
        key: SigningKey,
        logs: Mapping[str, VerifierKey | str],
        *,
        now: Clock | None = None,
    ) -> None:
        self.state_path = Path(state_path)
        self.key = key
        self.verifier = CosignatureVerifier.from_key(key)
        self.logs: dict[str, VerifierKey] = {
            origin: v if isinstance(v, VerifierKey) else VerifierKey.parse(v)
            for origin, v in logs.items()
        }
        self._now: Clock = now or _now
        state = read_json(self.state_path, _state_error)
        if state is not None:
            self._check_owner(state)

    # --- creating and opening --------------------------------------------------------------

    @classmethod
    def create(
        cls,
        state_path: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
        logs: Mapping[str, VerifierKey | str],
        *,
        now: Clock | None = None,
    ) -> Witness:
        """Start a witness state file recording its key file and the logs it witnesses.

        Refuses to overwrite an existing state file (it holds what the witness has seen).
        """
        path = Path(state_path)
        key_path = Path(key_file).resolve()
        witness = cls(path, SigningKey.load(key_path), logs, now=now)
        with locked_state(path, _state_error):
            if path.exists():
                raise LedgerError(
                    f"witness state {path} already exists; refusing to replace what this "
                    "witness has seen.",
                    hint="Use another --state path, or delete the file only if you mean to "
                    "forget every checkpoint it cosigned.",
                )
            write_json(path, witness._fresh_state(str(key_path)), _state_error)
        return witness

    @classmethod
    def open(
        cls,
        state_path: str | os.PathLike[str],
        *,
        key: SigningKey | None = None,
        now: Clock | None = None,
    ) -> Witness:
        """Open a witness from a state file written by :meth:`create` (its key file and logs)."""
        path = Path(state_path)
        state = read_json(path, _state_error)
        if state is None:
            raise LedgerError(
                f"no witness state at {path}.",
                hint="Create one with `scalegate witness init --key FILE --log VKEY --state "
                "FILE`.",
            )
        try:
            logs = {o: str(rec["vkey"]) for o, rec in dict(state["logs"]).items()}
            key_file = state["witness"].get("key_file")
        except (KeyError, TypeError, AttributeError) as exc:
            raise _state_error(f"{path} is damaged ({exc!r})") from None
        if key is None:
            if not key_file:
                raise LedgerError(
                    f"witness state {path} records no key file; pass the witness key."
                )
            key = SigningKey.load(key_file)
        try:
            return cls(path, key, logs, now=now)
        except KeyMaterialError as exc:
            raise _state_error(f"{path} holds a bad log key ({exc.message})") from None

    def _fresh_state(self, key_file: str | None = None) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "witness": {"name": self.verifier.name, "vkey": self.verifier.text(),
                        "key_file": key_file},
            "logs": {origin: {"vkey": key.text(), "size": 0, "root_hash": None,
                              "checkpoint": None, "cosigned_at": None}
                     for origin, key in self.logs.items()},
            "evidence": [],
        }

    def _check_owner(self, state: dict[str, Any]) -> None:
        recorded = (state.get("witness") or {}).get("vkey")
        if state.get("version") != _STATE_VERSION or not isinstance(state.get("logs"), dict):
            raise _state_error(f"{self.state_path} is not a witness state file (version 1)")
        if recorded != self.verifier.text():
            raise LedgerError(
                f"witness state {self.state_path} belongs to witness {recorded!r}, not "
                f"{self.verifier.text()!r}.",
                hint="Use the state file of this witness key (each witness keeps its own).",
            )

    def _load(self) -> dict[str, Any]:
        state = read_json(self.state_path, _state_error)
        if state is None:
            return self._fresh_state()
        self._check_owner(state)
        state.setdefault("evidence", [])
        return state

    # --- queries ---------------------------------------------------------------------------

    def latest(self, origin: str) -> WitnessRecord | None:
        """The latest checkpoint cosigned for ``origin``, if any."""
        rec = self._load()["logs"].get(origin)
        if not rec or not rec.get("checkpoint"):
            return None
        return WitnessRecord(origin, int(rec["size"]), base64.b64decode(rec["root_hash"]),
                             rec["checkpoint"], rec["cosigned_at"])

    def size(self, origin: str) -> int:
        """The size of the latest checkpoint cosigned for ``origin`` (0 if none)."""
        rec = self.latest(origin)
        return 0 if rec is None else rec.size

    def evidence(self) -> list[dict[str, Any]]:
        """Every refused, log-signed checkpoint that contradicted a cosigned one
        (``conclusive``) or could not be shown consistent with it (not ``conclusive``)."""
        return list(self._load()["evidence"])

    # --- add-checkpoint --------------------------------------------------------------------

    def add_checkpoint_request(self, body: str | bytes) -> str:
        """:meth:`add_checkpoint` on an HTTP request body (see :func:`parse_add_checkpoint`)."""
        return self.add_checkpoint(*parse_add_checkpoint(body))

    def add_checkpoint(
        self, old_size: int, consistency_proof: Sequence[bytes], checkpoint_note: str | bytes
    ) -> str:
        """Verify and cosign a checkpoint; return the cosignature line(s) (the 200 response body).

        Raises :class:`WitnessRefused` (with the spec's ``status``),
        :class:`WitnessConflict` (409, ``size`` = the size this witness last cosigned) or
        :class:`SplitViewDetected` (after persisting the evidence).
        """
        if isinstance(checkpoint_note, bytes | bytearray):
            checkpoint_note = bytes(checkpoint_note).decode("utf-8", "replace")
        proof = [bytes(h) for h in consistency_proof]
        if old_size < 0:
            raise WitnessRefused(f"old size {old_size} is negative.")
        if len(proof) > MAX_PROOF_LINES:
            raise WitnessRefused(
                f"the consistency proof has {len(proof)} hashes; at most {MAX_PROOF_LINES} "
                "are allowed."
            )
        if any(len(h) != merkle.HASH_SIZE for h in proof):
            raise WitnessRefused("a consistency proof hash is not 32 bytes (SHA-256).")
        try:
            text, _ = parse_note(checkpoint_note)
            origin = Checkpoint.parse(text).origin
        except NoteError as exc:
            raise WitnessRefused(f"the checkpoint is malformed: {exc.message}") from None
        log_key = self.logs.get(origin)
        if log_key is None:
            known = ", ".join(f"{o!r} (key {k.keyid})" for o, k in sorted(self.logs.items()))
            raise WitnessRefused(
                f"this witness does not witness the log {origin!r}; it witnesses "
                f"{known or 'no log'}.", status=404,
                hint="A log is known by its checkpoint origin, which may differ from its key's "
                "name: start the witness with `scalegate witness init --log VKEY --origin "
                f"{origin}` (on a new state).",
            )
        try:
            cp, opened = open_checkpoint(checkpoint_note, log_key, origin=origin)
        except NoteError as exc:
            raise WitnessRefused(
                f"the checkpoint for {origin} has no valid signature by the log key "
                f"{log_key.keyid}: {exc.message}", status=403,
            ) from None
        if old_size > cp.size:
            raise WitnessRefused(
                f"old size {old_size} is larger than the checkpoint's size {cp.size}: a log "
                "never shrinks."
            )
        if old_size == 0 and proof:
            raise WitnessRefused("a consistency proof from old size 0 must be empty.")
        with locked_state(self.state_path, _state_error):
            state = self._load()
            rec = state["logs"].get(origin) or {}
            recorded = int(rec.get("size", 0)) if rec.get("checkpoint") else 0
            if old_size != recorded:
                raise WitnessConflict(
                    f"old size {old_size} is not the size this witness last cosigned for "
                    f"{origin} ({recorded}).", size=recorded,
                    hint=f"Resubmit with old size {recorded} and a consistency proof from it.",
                )
            self._check_consistency(state, rec, old_size, proof, cp, checkpoint_note)
            now = self._now()
            line = cosign(opened.text, self.key, int(now.timestamp()))
            state["logs"][origin] = {
                "vkey": log_key.text(),
                "size": cp.size,
                "root_hash": base64.b64encode(cp.root_hash).decode("ascii"),
                "checkpoint": checkpoint_note,
                "cosigned_at": _iso(now),
            }
            write_json(self.state_path, state, _state_error)
        return line

    def _check_consistency(
        self,
        state: dict[str, Any],
        rec: dict[str, Any],
        old_size: int,
        proof: list[bytes],
        cp: Checkpoint,
        note: str,
    ) -> None:
        """Step 4: the new checkpoint extends the recorded one, else persist evidence."""
        if old_size == 0:
            if cp.size == 0 and cp.root_hash != merkle.EMPTY_ROOT:
                raise WitnessRefused("the checkpoint is not a valid one: a tree of size 0 has "
                                     "the empty tree's root.")
            return
        recorded_root = base64.b64decode(rec["root_hash"])
        if old_size == cp.size:
            if proof:
                raise WitnessRefused("a consistency proof between equal sizes must be empty.")
            if cp.root_hash != recorded_root:
                self._split(state, rec, cp, note, proof, 409,
                            f"it has the size {cp.size} this witness cosigned but another root",
                            conclusive=True)
            return
        try:
            merkle.verify_consistency(old_size, cp.size, proof, recorded_root, cp.root_hash)
        except ProofError as exc:
            # A fork beyond the cosigned size has no proof that verifies; neither has a
            # request whose proof was damaged on its way. Kept, but as unproven.
            self._split(state, rec, cp, note, proof, 422,
                        f"the consistency proof from size {old_size} does not verify "
                        f"({exc.message})", conclusive=False)

    def _split(
        self,
        state: dict[str, Any],
        rec: dict[str, Any],
        cp: Checkpoint,
        note: str,
        proof: list[bytes],
        status: int,
        why: str,
        *,
        conclusive: bool,
    ) -> None:
        item = {
            "origin": cp.origin,
            "detected_at": _iso(self._now()),
            "reason": why,
            # Two log-signed checkpoints that cannot both hold prove a split view; a proof
            # that does not verify only shows the log (or a relay) could not prove consistency.
            "conclusive": conclusive,
            "cosigned_checkpoint": rec.get("checkpoint"),
            "submitted_checkpoint": note,
            "consistency_proof": [base64.b64encode(h).decode("ascii") for h in proof],
        }
        # Keep the first evidence and the latest: both matter, the middle can be dropped.
        evidence = [*state["evidence"], item]
        if len(evidence) > _MAX_EVIDENCE:
            evidence = evidence[:1] + evidence[-(_MAX_EVIDENCE - 1) :]
        state["evidence"] = evidence
        write_json(self.state_path, state, _state_error)
        what = ("The log signed a checkpoint inconsistent with the one this witness "
                "cosigned: a split view." if conclusive else "Not proven consistent with the "
                "checkpoint this witness cosigned: a split view, unless the log produces a "
                "consistency proof that verifies (a damaged request would look the same).")
        raise SplitViewDetected(
            f"refused to cosign {cp.origin} at size {cp.size}: {why}. {what}",
            status=status, size=int(rec.get("size", 0)),
            evidence=f"{self.state_path} (evidence #{len(evidence)})",
            hint="Keep the evidence; report the log operator if the proof came from the log.",
        )


# --- a witness over a ledger ----------------------------------------------------------------


class CosigningWitness(Protocol):
    """What :func:`witness_ledger` asks of a witness: a local :class:`Witness`, or one over
    HTTP (:class:`scalegate.server.HttpWitness`)."""

    verifier: CosignatureVerifier

    def size(self, origin: str) -> int:
        """The size it last cosigned for ``origin`` (as far as the caller knows; 0: none)."""
        ...

    def add_checkpoint(self, old_size: int, consistency_proof: Sequence[bytes],
                       checkpoint_note: str | bytes) -> str:
        """Cosign (the C2SP add-checkpoint call); raises :class:`WitnessConflict` with the
        witness's size when ``old_size`` is not it."""
        ...


def witness_ledger(ledger: Ledger, witness: CosigningWitness, *, attach: bool = True) -> str:
    """Have ``witness`` cosign ``ledger``'s latest checkpoint; return the cosigned note.

    Reads the latest stored checkpoint and a consistency proof from the size the
    witness last cosigned; with ``attach`` the cosignature is also added to the
    stored checkpoint (see :func:`attach_cosignatures`).
    """
    note = ledger.latest_checkpoint()
    if note is None:
        raise LedgerError(
            f"ledger {ledger.path} has issued no checkpoint to witness.",
            hint="Have the log operator sign one: `scalegate ledger checkpoint`.",
        )
    cp = Checkpoint.parse(parse_note(note)[0])
    lines = None
    old = witness.size(cp.origin)
    for _ in range(2):  # one retry if another client moved the witness on meanwhile
        proof = ledger.consistency_proof(old, cp.size) if 0 < old <= cp.size else []
        if old > cp.size:
            raise WitnessRefused(
                f"ledger {ledger.path}'s latest checkpoint (size {cp.size}) is older than the "
                f"one this witness cosigned (size {old}): the log lost entries or shows a "
                "stale view.",
            )
        try:
            lines = witness.add_checkpoint(old, proof, note)
            break
        except WitnessConflict as exc:
            old = exc.size
    if lines is None:
        raise WitnessRefused(f"the witness state of {cp.origin} kept changing; try again.",
                             status=409)
    cosigned = add_signature_lines(note, lines)
    if attach:
        return attach_cosignatures(ledger, cosigned, [witness.verifier])
    return cosigned


def attach_cosignatures(
    ledger: Ledger, cosigned_note: str, witnesses: Sequence[CosignatureVerifier]
) -> str:
    """Add the valid cosignatures by ``witnesses`` in ``cosigned_note`` to the stored checkpoint.

    The note must be one of the ledger's checkpoints (same text, valid log signature);
    only cosignature lines that verify under ``witnesses`` are added. Returns the stored
    note with every cosignature it now carries.
    """
    cp, opened = open_checkpoint(cosigned_note, ledger.log_vkey, origin=ledger.origin,
                                 extra_verifiers=witnesses)
    lines = [sig.line() for sig, v in opened.verified if isinstance(v, CosignatureVerifier)]
    if not lines:
        raise NoteError("the note carries no valid cosignature by the given witnesses.")
    with ledger.store.writer() as w:
        stored = w.checkpoint_note(cp.size)
        if stored is None:
            raise StoreError(f"ledger {ledger.path} stores no checkpoint of size {cp.size}.")
        if parse_note(stored)[0] != opened.text:
            raise NoteError(
                f"the cosigned checkpoint of size {cp.size} is not the one the ledger stores "
                "(different root or text); refusing to attach its cosignatures."
            )
        merged = add_signature_lines(stored, lines)
        if merged != stored:
            w.set_checkpoint_note(cp.size, merged)
    # Check the result reads back as a valid, cosigned note before returning it.
    cosignatures(verify_note(merged, [ledger.log_vkey, *witnesses]))
    return merged
