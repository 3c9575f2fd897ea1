"""What supplies each thing a paused run's resumption lacks: the command or call to use.

The gate says *what* is missing (:class:`~scalegate.gate.Missing`); this says *how* a
person supplies it, for :class:`~scalegate.errors.RunPaused` and ``scalegate run status``.
"""

from __future__ import annotations

from scalegate.gate import Missing, Resumption


def remedy(missing: Missing, run_id: str) -> str:
    """The command or call that supplies ``missing`` for run ``run_id`` ("" if none)."""
    kind, item = missing.kind, missing.item
    if kind == "approval":
        roles = " or ".join(r.strip() for r in item.split("|"))
        return (f"each approver ({roles}) runs `scalegate approve {run_id} --key KEY "
                f"--rationale TEXT`")
    if kind == "attestation":
        return f"the attesting officer runs `scalegate attest {item} --key KEY`"
    if kind == "evaluation":
        return ("evaluate the paused checkpoint: load its weights from "
                f"`paused_checkpoint(ledger, {run_id!r})` and call "
                "`Supervisor.evaluate_paused(run_id, policy, ledger, key, model=model, "
                "evaluator=suite)`")
    if kind == "ceiling":
        return (f"an approver gives a higher ceiling: `scalegate approve {run_id} --key KEY "
                "--rationale TEXT --ceiling 2x`")
    if kind == "policy":
        return ("the policy does not let this run go on: its approvers publish a new version "
                "(`scalegate policy publish`) for a new run")
    return ""


def missing_lines(res: Resumption, run_id: str) -> list[str]:
    """One line per missing item: what is missing, then how to supply it."""
    out = []
    for m in res.missing:
        how = remedy(m, run_id)
        out.append(f"{m.message} — {how}" if how else m.message)
    return out


__all__ = ["missing_lines", "remedy"]
