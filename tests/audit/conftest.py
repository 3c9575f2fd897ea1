"""A small lab ledger (real keys, real signatures, a real SQLite file) for the audit tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scalegate.audit.trust import TrustFile
from scalegate.audit.witness import Witness
from scalegate.ledger.cosignature import CosignatureVerifier
from scalegate.ledger.envelope import Envelope
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import (
    ApprovalPredicate,
    CheckpointPredicate,
    ComputePredicate,
    DecisionPredicate,
    KeyPredicate,
    PausePredicate,
    PolicyRef,
    Ref,
    RunPredicate,
    sha256_hex,
    sign_statement,
)

ORIGIN = "example.org/scalegate-audit"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Clock:
    """A clock that moves one second each time it is read."""

    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


@dataclass
class Lab:
    dir: Path
    path: Path
    ledger: Ledger
    clock: Clock
    log_key: SigningKey
    root: SigningKey
    trainer: SigningKey
    rso: SigningKey
    witnesses: list[SigningKey]
    run_id: str = "run-1"
    step: int = 0
    refs: dict[str, Ref] = field(default_factory=dict)

    # --- statements ----------------------------------------------------------------------

    def register(self, key: SigningKey, roles: list[str], org: str = "acme",
                 root: SigningKey | None = None, **kw: object) -> Ref:
        env = sign_statement(KeyPredicate(vkey=key.vkey.text(), org=org, roles=roles,
                                          valid_from=T0, **kw), root or self.root)
        return self.append(env)

    def append(self, env: Envelope) -> Ref:
        index, leaf = self.ledger.append(env)
        return Ref(index=index, leaf_hash=leaf.hex())

    def start_run(self) -> Ref:
        pred = RunPredicate(run_id=self.run_id, org="acme", model="tiny",
                            policy=PolicyRef(id="demo", version="1", digest="0" * 64),
                            started_at=T0)
        return self.append(sign_statement(pred, self.trainer))

    def compute_envelope(self, step: int, key: SigningKey | None = None) -> Envelope:
        return sign_statement(ComputePredicate(
            run_id=self.run_id, step=step, tokens=1e3 * step,
            flop_by_phase={"pretraining": 1e15 * step}, effective_flop=1e15 * step,
            method="6ND", at=T0), key or self.trainer)

    def compute(self, n: int = 1, key: SigningKey | None = None) -> list[Ref]:
        envs = []
        for _ in range(n):
            self.step += 1
            envs.append(self.compute_envelope(self.step, key))
        return [Ref(index=i, leaf_hash=h.hex()) for i, h in self.ledger.append_many(envs)]

    def pause_and_approve(self, approver: SigningKey | None = None, role: str = "rso") -> Ref:
        ckpt = self.append(sign_statement(CheckpointPredicate(
            run_id=self.run_id, step=self.step, digest=sha256_hex(str(self.step)),
            effective_flop=1e15 * self.step, at=T0), self.trainer))
        dec = self.append(sign_statement(DecisionPredicate(
            run_id=self.run_id, step=self.step, effective_flop=1e15 * self.step,
            verdict="pause", basis_size=self.ledger.size, at=T0), self.trainer))
        pause = self.append(sign_statement(PausePredicate(
            run_id=self.run_id, decision=dec, checkpoint=ckpt, step=self.step,
            effective_flop=1e15 * self.step, public_statement="paused", at=T0), self.trainer))
        self.refs["pause"] = pause
        return self.append(sign_statement(ApprovalPredicate(
            run_id=self.run_id, pause=pause, role=role, rationale="safeguards attested",
            at=T0), approver or self.rso))

    # --- checkpoints and trust ------------------------------------------------------------

    def witness(self, i: int) -> Witness:
        return Witness(self.dir / f"witness{i}.json", self.witnesses[i],
                       {ORIGIN: self.log_key.vkey}, now=self.clock)

    def checkpoint(self, cosigners: tuple[int, ...] = (0, 1)) -> str:
        from scalegate.audit.witness import witness_ledger

        note = self.ledger.checkpoint()
        for i in cosigners:
            note = witness_ledger(self.ledger, self.witness(i))
        return note

    def trust(self, quorum: int = 2, roles: dict[str, list[str]] | None = None,
              roots: list[SigningKey] | None = None) -> TrustFile:
        return TrustFile.model_validate({
            "log": {"origin": ORIGIN, "key": self.log_key.vkey.text()},
            "witnesses": {w.name: CosignatureVerifier.from_key(w).text()
                          for w in self.witnesses},
            "witness_quorum": quorum,
            "org_roots": {"acme": [r.vkey.text() for r in (roots or [self.root])]},
            "roles": roles or {},
        })

    def copy(self, name: str) -> Path:
        """A copy of the ledger file (closed cleanly first, so it is one file)."""
        self.ledger.close()
        target = self.dir / name
        shutil.copyfile(self.path, target)
        self.ledger = Ledger.open(self.path, now=self.clock)
        return target


def make_lab(directory: Path, computes: int = 20) -> Lab:
    clock = Clock()
    log_key = SigningKey.generate(ORIGIN)
    key_file = directory / "log.key"
    log_key.save(key_file)
    root = SigningKey.generate("acme/root")
    trainer, rso = SigningKey.generate("acme/trainer"), SigningKey.generate("acme/rso")
    witnesses = [SigningKey.generate(f"witness.example/w{i}") for i in (1, 2)]
    path = directory / "lab.db"
    ledger = Ledger.create(path, ORIGIN, key_file, [root.vkey], now=clock)
    lab = Lab(directory, path, ledger, clock, log_key, root, trainer, rso, witnesses)
    lab.register(trainer, ["trainer"])
    lab.register(rso, ["rso"])
    lab.start_run()
    lab.compute(computes)
    return lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = make_lab(tmp_path)
    yield lab
    lab.ledger.close()


def rogue_append(lab: Lab, data: bytes, signer: str, at: datetime | None = None,
                 kind: str = "compute", run_id: str | None = "run-1") -> int:
    """Append raw entry bytes the way a dishonest log operator could: no admission checks,
    but a consistent tree (stored nodes) so that only what the entry itself is can be caught."""
    from scalegate.ledger import merkle
    from scalegate.ledger._tables import EntryRow, format_time

    store = lab.ledger.store
    with store.reader() as conn:
        compact = store.compact_range(conn, store.size_in(conn))
    with store.writer() as w:
        leaf = merkle.leaf_hash(data)
        nodes = compact.append(leaf)[1:]
        w.add([EntryRow(w.size, leaf, data, kind, run_id, signer,
                        format_time(at or lab.clock()))], nodes)
        return w.size - 1
