"""What gathering reads from statements: the levels a run's gate recorded reaching, and
whose attestations are whose."""

from __future__ import annotations

from datetime import UTC, datetime

from scalegate.commitments.evidence import attestations_of, runs_of
from scalegate.ledger import (
    AttestationPredicate,
    DecisionPredicate,
    PolicyRef,
    Reason,
    Ref,
    RunPredicate,
)

T = datetime(2026, 2, 1, tzinfo=UTC)


def _ref(i: int) -> Ref:
    return Ref(index=i, leaf_hash=f"{i:064x}")


def test_the_levels_a_gate_recorded_reaching_are_read_from_its_decisions() -> None:
    run = RunPredicate(run_id="r", org="acme", model="m", started_at=T,
                       policy=PolicyRef(id="p", version="1", digest="0" * 64))
    reasons = [Reason(rule="safeguard-missing:cyber/high/sl3", message="m"),
               Reason(rule="safeguard-expired:cyber/high/sl4", message="m"),
               Reason(rule="capability-reached:bio/critical", message="m"),
               Reason(rule="capability-alert:cyber/medium", message="alert only"),
               Reason(rule="compute-threshold:t1", message="m")]
    decision = DecisionPredicate(run_id="r", step=1, effective_flop=1.0, verdict="pause",
                                 basis_size=3, at=T, reasons=reasons)
    ((org, ev),) = runs_of({"run": [(_ref(0), "k", run)],
                            "decision": [(_ref(5), "k", decision)]})
    assert org == "acme"
    assert [(lv.ref.index, lv.path) for lv in ev.levels] == [(5, "bio/critical"),
                                                             (5, "cyber/high")]


def test_attestations_belong_to_their_organisation_or_their_runs() -> None:
    org_wide = AttestationPredicate(safeguard="sl3", scope="org", org="acme", valid_from=T)
    for_run = AttestationPredicate(safeguard="sl4", scope="run", run_id="r", valid_from=T)
    stray = AttestationPredicate(safeguard="sl5", scope="run", run_id="nobody", valid_from=T)
    got = attestations_of([(_ref(1), "k", org_wide), (_ref(2), "k", for_run),
                           (_ref(3), "k", stray)], {"r": "acme"})
    assert [(a.safeguard, a.run_id) for a in got["acme"]] == [("sl3", None), ("sl4", "r")]
    assert got["acme"][1].holds(T, "r") and not got["acme"][1].holds(T, "other")
