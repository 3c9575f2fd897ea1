"""A small lab ledger for the fuzz tests (real keys, real signatures, a real SQLite file), and
one valid statement of every kind."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scalegate.audit.trust import TrustFile
from scalegate.ledger.checkpoint import Checkpoint
from scalegate.ledger.cosignature import CosignatureVerifier, cosign
from scalegate.ledger.envelope import Envelope
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.note import parse_note
from scalegate.ledger.statements import (
    PREDICATES,
    KeyPredicate,
    Predicate,
    Ref,
    Statement,
    make_statement,
    sign_statement,
)
from scalegate.ledger.tlog_proof import format_receipt, parse_receipt

ORIGIN = "example.org/fuzz"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
H = "ab" * 32
REF = Ref(index=1, leaf_hash=H)

#: One valid predicate of every kind (the fields as JSON would give them).
EXAMPLES: dict[str, dict[str, Any]] = {
    "key": {"vkey": "acme/alice+01234567+AQ==", "org": "acme", "roles": ["rso"],
            "valid_from": T0},
    "key-revocation": {"vkey": "acme/alice+01234567+AQ==", "reason": "lost", "revoked_at": T0},
    "policy": {"policy_id": "demo", "version": "1", "digest": H, "document": "id: demo\n"},
    "run": {"run_id": "r1", "org": "acme", "model": "tiny", "started_at": T0,
            "policy": {"id": "demo", "version": "1", "digest": H}, "planned_flop": 1e24},
    "compute": {"run_id": "r1", "step": 5, "tokens": 1e6, "flop_by_phase": {"pretraining": 6e12},
                "totals": {"eu": 6e12}, "effective_flop": 6e12, "method": "measured", "at": T0,
                "seq": 1},
    "checkpoint": {"run_id": "r1", "step": 5, "digest": H, "effective_flop": 1.0, "at": T0,
                   "manifest": {"model.bin": H}, "seq": 2},
    "eval": {"run_id": "r1", "evaluation_id": "cipher", "capability": "cyber",
             "metric": "accuracy", "value": 0.5, "n": 64, "step": 5, "effective_flop": 1.0,
             "at": T0, "checkpoint": REF, "seq": 3},
    "attestation": {"safeguard": "sl3", "valid_from": T0, "valid_until": T0 + timedelta(days=1)},
    "decision": {"run_id": "r1", "step": 5, "effective_flop": 1.0, "verdict": "pause",
                 "basis_size": 9,
                 "reasons": [{"rule": "capability", "message": "m", "refs": [REF],
                              "threshold": 0.4, "observed": "0.5"}],
                 "obligations": [{"id": "o", "recipient": "AI Office", "rule": "notify",
                                  "deadline": T0}],
                 "at": T0, "seq": 4},
    "pause": {"run_id": "r1", "decision": REF, "checkpoint": REF, "step": 5,
              "effective_flop": 1.0, "at": T0, "seq": 5},
    "approval": {"run_id": "r1", "pause": REF, "role": "rso", "rationale": "ok", "at": T0},
    "resume": {"run_id": "r1", "pause": REF, "approvals": [REF], "decision": REF,
               "checkpoint": REF, "at": T0, "seq": 6},
    "notification": {"obligation": REF, "obligation_id": "o", "recipient": "AI Office",
                     "sent_at": T0, "content_digest": H},
    "commitment": {"commitment_id": "c", "digest": H, "document": "id: c", "org": "lab",
                   "at": T0},
    "endorsement": {"commitment_id": "c", "digest": H, "org": "lab", "at": T0},
    "withdrawal": {"commitment_id": "c", "digest": H, "org": "lab", "at": T0, "effective": T0},
    "domain-verification": {"domain": "lab.example", "org": "lab", "url": "https://lab.example/",
                            "roots": [], "checked_at": T0, "tls_certificate_sha256": H},
    "transcript-audit": {"run_id": "r1", "segments": 3, "seed": H, "seed_source": "seed",
                         "results": [{"segment": {"index": 1, "leaf_hash": H}, "start_step": 0,
                                      "end_step": 9, "ok": True}], "ok": True, "at": T0},
    "segment": {"run_id": "r1", "start_step": 0, "end_step": 9, "digest": H},
}


def example_statement(kind: str, **changes: Any) -> Statement:
    """The example statement of ``kind`` (with ``changes`` to its predicate's fields)."""
    predicate: Predicate = PREDICATES[kind].model_validate({**EXAMPLES[kind], **changes})
    return make_statement(predicate)


@dataclass
class Lab:
    """A ledger with a registered trainer and a statement of most kinds, and what an auditor
    holds: receipts (cosigned by a witness) for its entries, and a trust file."""

    path: Path
    log_key: SigningKey
    root: SigningKey
    trainer: SigningKey
    witness: SigningKey
    entries: list[bytes]
    receipts: list[str]
    trust: TrustFile

    def open(self) -> Ledger:
        return Ledger.open(self.path, log_key=self.log_key)

    def fresh(self, n: int) -> list[Envelope]:
        """``n`` statements the trainer signed that are not in the log yet."""
        return [sign_statement(example_statement("compute", run_id="fresh", step=i, seq=None),
                               self.trainer) for i in range(n)]


def seeded(name: str, n: int) -> SigningKey:
    return SigningKey.from_seed(name, bytes([n]) * 32)


def build_lab(directory: Path) -> Lab:
    log_key, root = seeded("example.org/fuzz-log", 1), seeded("acme/root", 2)
    trainer, witness = seeded("acme/trainer", 3), seeded("witness.example/w1", 4)
    path = directory / "lab.db"
    with Ledger.create(path, ORIGIN, log_key, [root.vkey], now=lambda: T0) as led:
        led.append(sign_statement(KeyPredicate(vkey=trainer.vkey.text(), org="acme",
                                               roles=["trainer", "rso"], valid_from=T0), root))
        for kind in ("run", "compute", "checkpoint", "eval", "decision", "pause", "approval",
                     "segment"):
            led.append(sign_statement(example_statement(kind), trainer))
        entries = [e.data for e in led.entries()]
        receipts = [_cosigned(led.receipt(i), witness) for i in range(led.size)]
    trust = TrustFile.model_validate({
        "log": {"origin": ORIGIN, "key": log_key.vkey.text()},
        "witnesses": {witness.name: CosignatureVerifier.from_key(witness).text()},
        "witness_quorum": 1,
        "org_roots": {"acme": [root.vkey.text()]},
        "roles": {"decision": ["trainer"]},
    })
    return Lab(path, log_key, root, trainer, witness, entries, receipts, trust)


def _cosigned(receipt: str, witness: SigningKey) -> str:
    r = parse_receipt(receipt)
    body = Checkpoint.parse(parse_note(r.checkpoint)[0]).body()
    return format_receipt(r.index, r.proof, r.checkpoint + cosign(body, witness, 1_772_000_000))
