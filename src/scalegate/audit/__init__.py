"""The auditor: verify a ledger trusting only a trust file, witnesses, and receipts.

- :func:`audit_ledger` — the audit: the whole log checked against a :class:`TrustFile`
  (checkpoints, witnesses, tree, signatures, signers, times) and, unless
  ``replay=False``, every run replayed under the policy it cites and held to any other
  policy (a law, the 2023 letter) given in ``held_to``; a :class:`LedgerAudit` of an
  :class:`AuditReport` (checks, :class:`Violation`\\ s, exit status), one
  :class:`RunAudit` per run and one :class:`HeldTo` per policy. :func:`write_html`
  renders it as a report with plots;
- :class:`IncrementalAudit` — audits of one log, each reading only what the last did
  not (a monitor's);
- :func:`replay_ledger` — the runs of an open ledger replayed *without* verifying the log
  (a report that says so);
- :func:`audit_receipt` — one statement checked offline from its C2SP tlog-proof;
- :class:`Witness` — a C2SP tlog-witness with its own state; :func:`witness_ledger`;
- :func:`load_trust` — what the auditor trusts, from a file.
"""

from scalegate.audit._plots import run_figures
from scalegate.audit._seen import default_state_path
from scalegate.audit.incremental import IncrementalAudit
from scalegate.audit.receipt import audit_receipt
from scalegate.audit.regulator import HeldTo, hold_runs
from scalegate.audit.report import (
    EXIT_COULD_NOT_VERIFY,
    EXIT_OK,
    EXIT_VIOLATIONS,
    AuditReport,
    Violation,
)
from scalegate.audit.report_html import render_html, write_html
from scalegate.audit.runcheck import LedgerAudit, RunAudit, audit_ledger, replay_ledger
from scalegate.audit.trust import TrustedLog, TrustFile, load_trust, parse_trust, trust_for
from scalegate.audit.witness import (
    CosigningWitness,
    Witness,
    format_add_checkpoint,
    witness_ledger,
)

__all__ = [
    "EXIT_COULD_NOT_VERIFY",
    "EXIT_OK",
    "EXIT_VIOLATIONS",
    "AuditReport",
    "CosigningWitness",
    "HeldTo",
    "IncrementalAudit",
    "LedgerAudit",
    "RunAudit",
    "TrustFile",
    "TrustedLog",
    "Violation",
    "Witness",
    "audit_ledger",
    "audit_receipt",
    "default_state_path",
    "format_add_checkpoint",
    "hold_runs",
    "load_trust",
    "parse_trust",
    "render_html",
    "replay_ledger",
    "run_figures",
    "trust_for",
    "witness_ledger",
    "write_html",
]
