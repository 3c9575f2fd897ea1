"""The signed transparency ledger: RFC 6962 tree, C2SP notes and checkpoints, DSSE
envelopes carrying in-toto statements, and the log that admits only registered signers.

What other packages use, by concern:

- the log: :class:`Ledger` (open, append, prove, :meth:`Ledger.verify` →
  :class:`IntegrityReport`), :class:`LogEntry`, :class:`AppendResult`;
- statements: :class:`Statement`, one ``*Predicate`` per kind (``PREDICATES``),
  :func:`make_statement`, :func:`sign_statement`, :func:`parse_statement`, :class:`Ref`;
- keys and who may sign: :class:`SigningKey`, :class:`VerifierKey`, :class:`KeyRegistry`;
- formats: DSSE :class:`Envelope`, C2SP notes, checkpoints and cosignatures, tlog-proof
  receipts, RFC 3161 time-stamps, the RFC 6962 hashes and proofs (:mod:`.merkle`);
- served logs: :class:`RemoteLedger` (what ``Ledger.open(url)`` returns), a verified
  local mirror (:func:`sync_mirror`, :class:`SplitView`), :func:`read_tiled_log`,
  :func:`submit_envelope`;
- the whole-log check an outside auditor runs on raw rows: :class:`LedgerReader`,
  :class:`LogSweep` (→ :class:`CheckedEntry` per entry), :class:`PriorCheck`,
  :class:`SweepState` (a sweep to go on from).

Storage (``_store``, ``_tables``) and the checks behind them are private.
"""

from scalegate.ledger._integrity import IntegrityReport
from scalegate.ledger._reader import LedgerReader
from scalegate.ledger._store import shown_location
from scalegate.ledger._verify import CLOCK_SKEW, CheckedEntry, LogSweep, PriorCheck, SweepState
from scalegate.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from scalegate.ledger.cosignature import CosignatureVerifier, cosign, cosignatures
from scalegate.ledger.envelope import Envelope, read_canonical, sign_envelope, verify_envelope
from scalegate.ledger.keys import SigningKey, VerifierKey, verifier_key_in
from scalegate.ledger.log import AppendResult, Ledger, LogEntry, default_ledger_path
from scalegate.ledger.merkle import leaf_hash, root, verify_consistency, verify_inclusion
from scalegate.ledger.mirror import SplitView, SyncResult, default_mirror_path, sync_mirror
from scalegate.ledger.note import (
    NoteSignature,
    Verifier,
    add_signature_lines,
    open_note,
    parse_note,
    sign_note,
    verify_note,
)
from scalegate.ledger.registry import KEY_KINDS, KeyRegistry, RegisteredKey, org_of
from scalegate.ledger.remote import RemoteLedger
from scalegate.ledger.statements import (
    PREDICATES,
    VERDICT_ORDER,
    ApprovalPredicate,
    AttestationPredicate,
    CheckpointPredicate,
    CommitmentPredicate,
    ComputePredicate,
    DecisionPredicate,
    DomainVerificationPredicate,
    EndorsementPredicate,
    EvalPredicate,
    KeyPredicate,
    KeyRevocationPredicate,
    NotificationPredicate,
    Obligation,
    PausePredicate,
    PolicyPredicate,
    PolicyRef,
    Predicate,
    Reason,
    Ref,
    ResumePredicate,
    RunPredicate,
    SegmentPredicate,
    SegmentResult,
    Signatory,
    Statement,
    TranscriptAuditPredicate,
    Verdict,
    WithdrawalPredicate,
    make_statement,
    now_utc,
    parse_statement,
    sign_statement,
)
from scalegate.ledger.submission import Submitted, submit_envelope
from scalegate.ledger.tiled_log import TiledLog, read_tiled_log, tile_fetcher
from scalegate.ledger.tiles import MAX_ENTRY_BYTES, Tile, parse_bundle, parse_tile_path, tiles_of
from scalegate.ledger.timestamp import (
    TimestampInvalid,
    request_timestamp,
    require_rfc3161,
    signed_checkpoint,
    token_signer,
    verify_timestamp,
)
from scalegate.ledger.tlog_proof import format_receipt, parse_receipt

__all__ = [
    "CLOCK_SKEW",
    "KEY_KINDS",
    "MAX_ENTRY_BYTES",
    "PREDICATES",
    "VERDICT_ORDER",
    "AppendResult",
    "ApprovalPredicate",
    "AttestationPredicate",
    "CheckedEntry",
    "Checkpoint",
    "CheckpointPredicate",
    "CommitmentPredicate",
    "ComputePredicate",
    "CosignatureVerifier",
    "DecisionPredicate",
    "DomainVerificationPredicate",
    "EndorsementPredicate",
    "Envelope",
    "EvalPredicate",
    "IntegrityReport",
    "KeyPredicate",
    "KeyRegistry",
    "KeyRevocationPredicate",
    "Ledger",
    "LedgerReader",
    "LogEntry",
    "LogSweep",
    "NoteSignature",
    "NotificationPredicate",
    "Obligation",
    "PausePredicate",
    "PolicyPredicate",
    "PolicyRef",
    "Predicate",
    "PriorCheck",
    "Reason",
    "Ref",
    "RegisteredKey",
    "RemoteLedger",
    "ResumePredicate",
    "RunPredicate",
    "SegmentPredicate",
    "SegmentResult",
    "Signatory",
    "SigningKey",
    "SplitView",
    "Statement",
    "Submitted",
    "SweepState",
    "SyncResult",
    "Tile",
    "TiledLog",
    "TimestampInvalid",
    "TranscriptAuditPredicate",
    "Verdict",
    "Verifier",
    "VerifierKey",
    "WithdrawalPredicate",
    "add_signature_lines",
    "cosign",
    "cosignatures",
    "default_ledger_path",
    "default_mirror_path",
    "format_receipt",
    "leaf_hash",
    "make_statement",
    "now_utc",
    "open_checkpoint",
    "open_note",
    "org_of",
    "parse_bundle",
    "parse_note",
    "parse_receipt",
    "parse_statement",
    "parse_tile_path",
    "read_canonical",
    "read_tiled_log",
    "request_timestamp",
    "require_rfc3161",
    "root",
    "shown_location",
    "sign_checkpoint",
    "sign_envelope",
    "sign_note",
    "sign_statement",
    "signed_checkpoint",
    "submit_envelope",
    "sync_mirror",
    "tile_fetcher",
    "tiles_of",
    "token_signer",
    "verifier_key_in",
    "verify_consistency",
    "verify_envelope",
    "verify_inclusion",
    "verify_note",
    "verify_timestamp",
]
