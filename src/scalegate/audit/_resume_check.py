"""Is a ``resume`` statement valid? The gate's resumption at the resume's time, plus what
the statement itself cites: its pause, its approvals (bound to that pause, making the
quorum), its decision, and the checkpoint (the one the pause recorded)."""

from __future__ import annotations

from collections.abc import Callable

from scalegate.gate import Resumption, match_quorum, resumption
from scalegate.ledger import (
    Ref,
    ResumePredicate,
)
from scalegate.policy import Policy
from scalegate.state import RunState, StatementOrRecord, same_ref

#: (kind, message, refs)
Finding = tuple[str, str, list[Ref]]


def check_resume(
    policy: Policy,
    state: RunState,
    entry: StatementOrRecord,
    is_decision: Callable[[Ref], bool],
) -> tuple[list[Finding], Resumption | None]:
    """Violations of one ``resume`` given the run's ``state`` just before it; ``is_decision``
    says whether a ref names a decision of the run. Also returns the gate's resumption."""
    p = entry.predicate
    assert isinstance(p, ResumePredicate)
    ref, where = entry.ref, f"resume #{entry.ref.index}"
    pause = next((x for x in state.pauses if same_ref(x.ref, p.pause)), None)
    if pause is None:
        return [("resume-premature", f"{where} cites entry #{p.pause.index} as its pause, but "
                 f"no pause of run {state.run_id} before it has that index and leaf hash",
                 [ref, p.pause])], None
    out: list[Finding] = []
    res = resumption(policy, state, p.pause, now=p.at)
    short = [m.message for m in res.missing if m.kind == "approval"]
    other = [m.message for m in res.missing if m.kind != "approval"]
    if short:
        out.append(("resume-without-quorum", f"{where} lifted pause #{pause.index} without "
                    f"the quorum's approval: missing {'; '.join(short)}", [ref, pause.ref]))
    if other:
        out.append(("resume-premature", f"{where} lifted pause #{pause.index} before the gate "
                    f"allowed it: missing {'; '.join(other)}", [ref, pause.ref]))
    bound = []
    for cited in p.approvals:
        rec = next((a for a in state.approvals if same_ref(a.ref, cited)), None)
        if rec is None:
            out.append(("bad-reference", f"{where} cites entry #{cited.index} as an approval, "
                        f"but it is no approval of run {state.run_id} before it", [ref, cited]))
        elif not same_ref(rec.predicate.pause, p.pause):
            out.append(("approval-wrong-pause", f"{where} of pause #{pause.index} cites "
                        f"approval #{rec.index}, which is bound to entry "
                        f"#{rec.predicate.pause.index} (leaf "
                        f"{rec.predicate.pause.leaf_hash[:12]}…), not to this pause",
                        [rec.ref, ref, pause.ref]))
        else:
            bound.append(rec)
    if not short:
        _, missing, notes = match_quorum(list(policy.governance.resumption.quorum), bound)
        if missing:
            who = "; ".join(f"{n} of {', '.join(c.any_of)}" for c, n in missing)
            why = f" ({'; '.join(notes)})" if notes else ""
            out.append(("resume-without-quorum", f"{where} cites approvals that do not make "
                        f"the quorum: missing {who}{why}", [ref, *(b.ref for b in bound)]))
    if not same_ref(p.checkpoint, pause.predicate.checkpoint):
        out.append(("resume-wrong-checkpoint", f"{where} resumes from entry "
                    f"#{p.checkpoint.index}, but pause #{pause.index} recorded checkpoint "
                    f"#{pause.predicate.checkpoint.index}",
                    [ref, pause.ref, p.checkpoint]))
    if not is_decision(p.decision):
        out.append(("bad-reference", f"{where} cites entry #{p.decision.index} as the gate's "
                    f"decision, but it is no decision of run {state.run_id}",
                    [ref, p.decision]))
    return out, res

