"""The signed transparency ledger: RFC 6962 tree, C2SP notes and checkpoints, DSSE
envelopes carrying in-toto statements, and the log that admits only registered signers."""

from scalegate.ledger._integrity import IntegrityReport
from scalegate.ledger._reader import LedgerReader
from scalegate.ledger._store import shown_location
from scalegate.ledger._verify import CLOCK_SKEW, CheckedEntry, LogSweep, PriorCheck
from scalegate.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from scalegate.ledger.envelope import Envelope, sign_envelope, verify_envelope
from scalegate.ledger.keys import SigningKey, VerifierKey
from scalegate.ledger.log import AppendResult, Ledger, LogEntry, default_ledger_path
from scalegate.ledger.merkle import (
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from scalegate.ledger.note import open_note, sign_note
from scalegate.ledger.registry import KeyRegistry, RegisteredKey
from scalegate.ledger.statements import (
    Ref,
    Statement,
    make_statement,
    parse_statement,
    sign_statement,
)

__all__ = [
    "CLOCK_SKEW",
    "AppendResult",
    "CheckedEntry",
    "Checkpoint",
    "Envelope",
    "IntegrityReport",
    "KeyRegistry",
    "Ledger",
    "LedgerReader",
    "LogEntry",
    "LogSweep",
    "PriorCheck",
    "Ref",
    "RegisteredKey",
    "SigningKey",
    "Statement",
    "VerifierKey",
    "default_ledger_path",
    "leaf_hash",
    "make_statement",
    "open_checkpoint",
    "open_note",
    "parse_statement",
    "root",
    "shown_location",
    "sign_checkpoint",
    "sign_envelope",
    "sign_note",
    "sign_statement",
    "verify_consistency",
    "verify_envelope",
    "verify_inclusion",
]
