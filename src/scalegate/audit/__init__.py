"""The auditor: verify a ledger trusting only a trust file, witnesses, and receipts.

- :func:`audit_log` — the log-level audit (checkpoints, witnesses, tree, signatures,
  signers) producing an :class:`AuditReport`;
- :func:`audit_receipt` — one statement checked offline from its C2SP tlog-proof;
- :class:`Witness` — a C2SP tlog-witness with its own state; :func:`witness_ledger`;
- :class:`TrustFile` / :func:`load_trust` — what the auditor trusts.
"""

from scalegate.audit.logcheck import CLOCK_SKEW, AuditedEntry, audit_log, default_state_path
from scalegate.audit.receipt import audit_receipt, canonical_entry
from scalegate.audit.report import (
    EXIT_COULD_NOT_VERIFY,
    EXIT_OK,
    EXIT_VIOLATIONS,
    AuditReport,
    CheckpointSummary,
    CheckResult,
    Violation,
)
from scalegate.audit.trust import TrustedLog, TrustFile, load_trust, parse_trust
from scalegate.audit.witness import (
    Witness,
    WitnessRecord,
    attach_cosignatures,
    format_add_checkpoint,
    parse_add_checkpoint,
    witness_ledger,
)

__all__ = [
    "CLOCK_SKEW",
    "EXIT_COULD_NOT_VERIFY",
    "EXIT_OK",
    "EXIT_VIOLATIONS",
    "AuditReport",
    "AuditedEntry",
    "CheckResult",
    "CheckpointSummary",
    "TrustFile",
    "TrustedLog",
    "Violation",
    "Witness",
    "WitnessRecord",
    "attach_cosignatures",
    "audit_log",
    "audit_receipt",
    "canonical_entry",
    "default_state_path",
    "format_add_checkpoint",
    "load_trust",
    "parse_add_checkpoint",
    "parse_trust",
    "witness_ledger",
]
