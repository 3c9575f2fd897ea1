"""A run's statements in their places: each run-moving statement's ``seq`` against its position.

The trainer numbers the run's run/compute/checkpoint/eval/decision/pause/resume statements
in log order (the ``run`` statement is 0). A statement whose number is below its position
was signed for an earlier place — a replay, even of a statement that is not byte-identical
to another entry; one above it means statements the trainer signed are missing from the log
(withheld). Statements without a number (written before numbering existed) take their place
without being checked.
"""

from __future__ import annotations

from collections.abc import Iterable

from scalegate.ledger import (
    CheckpointPredicate,
    ComputePredicate,
    DecisionPredicate,
    EvalPredicate,
    PausePredicate,
    ResumePredicate,
    RunPredicate,
)
from scalegate.state import StatementOrRecord, in_place

__all__ = ["out_of_place"]

_SEQUENCED = (ComputePredicate, CheckpointPredicate, EvalPredicate, DecisionPredicate,
              PausePredicate, ResumePredicate)


def out_of_place(
    run_id: str, entries: Iterable[StatementOrRecord]
) -> list[tuple[str, StatementOrRecord, bool]]:
    """``(message, entry, replayed)`` for each of the run's statements out of its place.

    ``entries`` in log order; entries of other runs are skipped. A replayed statement
    (numbered for an earlier place) is left out of the run, as :func:`~scalegate.state.fold`
    leaves it out; after a gap the count goes on from the statement's own number.
    """
    found: list[tuple[str, StatementOrRecord, bool]] = []
    expected = 0
    for e in entries:
        p = e.predicate
        if isinstance(p, RunPredicate):
            if p.run_id == run_id:
                expected = max(expected, 1)
            continue
        if not isinstance(p, _SEQUENCED) or p.run_id != run_id:
            continue
        seq = p.seq
        kept, after = in_place(seq, expected)
        if not kept:
            found.append((f"{p.KIND} statement at entry {e.ref.index} was signed as the run's "
                          f"statement #{seq}, but the log holds it where #{expected} is due: a "
                          "statement replayed, or appended out of its place (left out of the "
                          "replay)", e, True))
        elif seq is not None and seq > expected:
            found.append((f"{p.KIND} statement at entry {e.ref.index} was signed as the run's "
                          f"statement #{seq}, but the log holds it where #{expected} is due: "
                          f"{seq - expected} the trainer signed before it are missing (withheld)",
                          e, False))
        expected = after
    return found
