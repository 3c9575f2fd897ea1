"""Where the whole-log checks report: the protocol both verdicts implement.

The ledger's own check (:class:`~scalegate.ledger._integrity.IntegrityReport`) and the
auditor's (:class:`scalegate.audit.AuditReport`) take the same findings from the same
checks; each keeps them in its own form.
"""

from __future__ import annotations

from typing import Protocol

from scalegate.ledger.statements import Ref


class Findings(Protocol):
    """Receives what the checks find and count."""

    def violation(
        self,
        kind: str,
        message: str,
        refs: list[Ref] | None = None,
        *,
        run_id: str | None = None,
        checkpoint_size: int | None = None,
    ) -> None:
        """Something the log shows is wrong: ``kind`` a stable dashed name (``leaf-hash``,
        ``bad-signature``, ...), ``message`` one sentence naming where."""

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (``entries``, ``signatures``, ``nodes``, ...)."""
