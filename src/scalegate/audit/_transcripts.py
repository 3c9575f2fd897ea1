"""What an audit says of the runs' training transcripts: which runs recorded one, which
were spot-checked (``transcript-audit`` statements, by ``scalegate transcript verify
--record``) and with what result; a failed spot-check is a ``transcript-failed``
violation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from scalegate.audit.report import AuditReport
from scalegate.ledger import SegmentPredicate, TranscriptAuditPredicate
from scalegate.state import Recorded


def spot_checks(runs: Mapping[str, Sequence[Recorded[Any]]], report: AuditReport) -> None:
    """Which runs recorded a training transcript and which were spot-checked, with what
    result; a failed spot-check is a violation (``transcript-failed``)."""
    lines, failed = [], 0
    for run_id, own in runs.items():
        segments = sum(1 for r in own if isinstance(r.predicate, SegmentPredicate))
        audits = [r for r in own if isinstance(r.predicate, TranscriptAuditPredicate)]
        if not segments and not audits:
            continue
        for a in audits:
            p = a.predicate
            if not p.ok:
                failed += 1
                bad = [f"steps {x.start_step}..{x.end_step}: {'; '.join(x.problems)}"
                       for x in p.results if not x.ok] + p.chain
                report.violation("transcript-failed", f"run {run_id}: {a.signer or '?'} "
                                 f"re-executed {len(p.results)} of {p.segments} transcript "
                                 f"segments and found: {' | '.join(bad)[:1500]}", [a.ref],
                                 run_id=run_id)
        checked = sum(len(a.predicate.results) for a in audits)
        lines.append(f"{run_id}: {segments} segments, " + (
            f"{len(audits)} spot-check(s) of {checked} segments, "
            f"{sum(1 for a in audits if not a.predicate.ok)} failed" if audits
            else "never spot-checked"))
    if lines:
        report.check("training transcripts", failed == 0, "; ".join(lines)[:2000])
