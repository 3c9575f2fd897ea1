"""Where a resumed run must start from: the checkpoint its ``resume`` statement cites.

The design binds a resumption to the checkpoint the pause recorded. Until the resumed run
has trained again, that checkpoint is the only legal starting point: a framework callback
checks that the trainer starts at its step and that its files still have the recorded digest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

from scalegate.errors import RunError
from scalegate.ledger import CheckpointPredicate
from scalegate.manifest import manifest_of
from scalegate.state import RunState

if TYPE_CHECKING:
    from scalegate.ledger import Ledger


def restart_point(state: RunState) -> CheckpointPredicate | None:
    """The checkpoint cited by the run's latest ``resume``, while no compute has been
    recorded since that resume (afterwards the run starts wherever its trainer left off)."""
    resume = state.last_resume
    if resume is None:
        return None
    latest = state.latest_compute
    if latest is not None and latest.index > resume.index:
        return None
    found = state.find(resume.predicate.checkpoint)
    # A resumption's ``checkpoint`` cites the checkpoint statement its pause recorded.
    return cast(CheckpointPredicate, found.predicate) if found is not None else None


def resume_checkpoint(ledger: Ledger | str | os.PathLike[str], run_id: str) -> str | None:
    """The checkpoint (file or directory, as recorded) a resumed run must start from, or
    ``None`` when the ledger does not dictate one (a new run, or one already resumed and
    trained). ``ledger`` is a :class:`~scalegate.ledger.log.Ledger` or its path.

    >>> start = resume_checkpoint("ledger.db", "run-1")      # doctest: +SKIP
    >>> trainer.train(resume_from_checkpoint=start)          # doctest: +SKIP
    """
    from scalegate.ledger import Ledger
    from scalegate.runs import load_state

    if isinstance(ledger, str | os.PathLike):
        with Ledger.open(ledger) as opened:
            state = load_state(opened, run_id)
    else:
        state = load_state(ledger, run_id)
    point = restart_point(state)
    return point.uri if point is not None else None


def check_restart(run_id: str, point: CheckpointPredicate, step: int) -> None:
    """Refuse to train a resumed run from anywhere but the checkpoint its pause recorded."""
    if step != point.step:
        raise RunError(
            f"run {run_id!r} was resumed from the checkpoint recorded at step {point.step} "
            f"({point.uri}), but the trainer starts at step {step}.",
            hint=f"Start from that checkpoint, e.g. trainer.train(resume_from_checkpoint="
            f"{point.uri!r}) or trainer.fit(..., ckpt_path={point.uri!r}).",
        )
    if point.uri is None or not Path(point.uri).exists():
        return  # the files live elsewhere (another node, object storage): step checked only
    digest = manifest_of(point.uri).digest
    if digest != point.digest:
        raise RunError(
            f"run {run_id!r} must resume from checkpoint {point.uri}, whose files no longer "
            f"match the digest the ledger recorded ({point.digest[:16]}…, now {digest[:16]}…).",
            hint="Restore the checkpoint exactly as it was saved at the pause.",
        )


__all__ = ["check_restart", "restart_point", "resume_checkpoint"]
