"""The auditor: verify a ledger trusting only a trust file, witnesses, and receipts.

- :func:`audit_log` — the log-level audit (checkpoints, witnesses, tree, signatures,
  signers) producing an :class:`AuditReport`;
- :func:`audit_ledger` — that audit plus every run replayed under the policy the log
  publishes (:func:`replay_run`), as a :class:`LedgerAudit`; :func:`render_html` /
  :func:`write_html` — the audit as an HTML report with plots;
- :func:`hold_runs` — every run also held to a policy it did not choose (a law, the
  2023 letter): thresholds, notifications owed and met, moratoria (:class:`HeldTo`);
- :func:`audit_receipt` — one statement checked offline from its C2SP tlog-proof;
- :class:`Witness` — a C2SP tlog-witness with its own state; :func:`witness_ledger`;
- :class:`TrustFile` / :func:`load_trust` — what the auditor trusts.
"""

from scalegate.audit._seen import default_state_path
from scalegate.audit.logcheck import audit_log
from scalegate.audit.receipt import audit_receipt, canonical_entry
from scalegate.audit.regulator import HELD_VIOLATION_KINDS, HeldTo, PolicyFinding, hold_runs
from scalegate.audit.replay import (
    RUN_VIOLATION_KINDS,
    ReplayedDecision,
    RunReplay,
    replay_decisions,
    replay_run,
)
from scalegate.audit.report import (
    EXIT_COULD_NOT_VERIFY,
    EXIT_OK,
    EXIT_VIOLATIONS,
    AuditReport,
    CheckpointSummary,
    CheckResult,
    Violation,
)
from scalegate.audit.report_html import render_html, write_html
from scalegate.audit.runcheck import (
    RUN_AUDIT_KINDS,
    SETUP_VIOLATION_KINDS,
    LedgerAudit,
    RunAudit,
    RunCollector,
    audit_ledger,
    audit_runs,
    replay_ledger,
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
    "EXIT_COULD_NOT_VERIFY",
    "EXIT_OK",
    "EXIT_VIOLATIONS",
    "HELD_VIOLATION_KINDS",
    "RUN_AUDIT_KINDS",
    "RUN_VIOLATION_KINDS",
    "SETUP_VIOLATION_KINDS",
    "AuditReport",
    "CheckResult",
    "CheckpointSummary",
    "HeldTo",
    "LedgerAudit",
    "PolicyFinding",
    "ReplayedDecision",
    "RunAudit",
    "RunCollector",
    "RunReplay",
    "TrustFile",
    "TrustedLog",
    "Violation",
    "Witness",
    "WitnessRecord",
    "attach_cosignatures",
    "audit_ledger",
    "audit_log",
    "audit_receipt",
    "audit_runs",
    "canonical_entry",
    "default_state_path",
    "format_add_checkpoint",
    "hold_runs",
    "load_trust",
    "parse_add_checkpoint",
    "parse_trust",
    "render_html",
    "replay_decisions",
    "replay_ledger",
    "replay_run",
    "witness_ledger",
    "write_html",
]
