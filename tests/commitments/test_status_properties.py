"""Properties of a commitment's status over random evidence: claimed signatures never
count, a verified one never lowers the count, silence is never compliance, and a breach
always names a statement inside the window the party was bound in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from scalegate.commitments import Commitment, commitment_status
from scalegate.commitments.status import (
    ComputeSeen,
    Evidence,
    LogEvidence,
    RunEvidence,
    SignatureSeen,
    WithdrawalSeen,
)
from scalegate.ledger import Ref

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ORGS = ["a", "b", "c", "d"]


def _ref(i: int) -> Ref:
    return Ref(index=i, leaf_hash=f"{i:064x}")


def _commitment(at_least: int | None, immediately: bool) -> Commitment:
    activation = {"immediately": True} if immediately else {
        "parties": ORGS[:3], **({"at_least": at_least} if at_least else {})}
    return Commitment.model_validate({
        "id": "p", "title": "t", "text": "x", "scope": {"compute": {"flop": 1e25}},
        "window": {"start": "activation", "duration": "90d"}, "activation": activation,
        "withdrawal": {"notice": "10d"}})


days = st.integers(min_value=0, max_value=200)
methods = st.sampled_from(["signatory", "domain", "claimed"])


@st.composite
def evidence(draw: st.DrawFn) -> tuple[Evidence, datetime]:
    immediately = draw(st.booleans())
    c = _commitment(draw(st.sampled_from([None, 1, 2, 3])), immediately)
    n = iter(range(10, 10_000))
    sigs = [SignatureSeen(ref=_ref(next(n)), org=draw(st.sampled_from(ORGS)),
                          at=T0 + timedelta(days=draw(days)), signer="k",
                          method=draw(methods))
            for _ in range(draw(st.integers(0, 6)))]
    wds = [WithdrawalSeen(ref=_ref(next(n)), org=draw(st.sampled_from(ORGS)),
                          at=(w := T0 + timedelta(days=draw(days))),
                          effective=w + timedelta(days=draw(st.integers(0, 20))),
                          method=draw(methods))
           for _ in range(draw(st.integers(0, 2)))]
    logs = {}
    for org in ORGS:
        if draw(st.booleans()):
            computes = sorted((T0 + timedelta(days=draw(days)), draw(st.floats(0, 3e25)))
                              for _ in range(draw(st.integers(0, 4))))
            runs = [RunEvidence(run_id="r", computes=[
                ComputeSeen(ref=_ref(next(n)), at=t, flop_by_phase={"pretraining": f})
                for t, f in computes])]
            logs[org] = LogEvidence(
                status=draw(st.sampled_from(["verified", "stale", "violations", "none"])),
                witnessed_at=T0 + timedelta(days=draw(days)), runs=runs)
    e = Evidence(commitment=c, proposed=_ref(0), proposed_at=T0, signatures=sigs,
                 withdrawals=wds, logs=logs)
    return e, T0 + timedelta(days=draw(st.integers(0, 300)))


@settings(max_examples=300, deadline=None)
@given(evidence())
def test_claimed_signatures_never_count(got: tuple[Evidence, datetime]) -> None:
    e, at = got
    honest = e.model_copy(update={
        "signatures": [s for s in e.signatures if s.method != "claimed"],
        "withdrawals": [w for w in e.withdrawals if w.method != "claimed"]})
    a, b = commitment_status(e, at), commitment_status(honest, at)
    assert (a.state, a.joined, a.activated_at, a.lapsed_at) == \
        (b.state, b.joined, b.activated_at, b.lapsed_at)
    assert len(a.alerts) == sum(1 for s in e.signatures if s.method == "claimed" and s.at <= at)


@settings(max_examples=300, deadline=None)
@given(evidence())
def test_silence_is_never_compliance_and_a_breach_has_its_proof(
        got: tuple[Evidence, datetime]) -> None:
    e, at = got
    s = commitment_status(e, at)
    for p in s.parties:
        log = e.logs.get(p.org)
        if p.compliance == "compliant":  # a witness vouched for the log from the bound's end
            assert log is not None and log.status in ("verified", "stale") and p.bound
            assert log.witnessed_at is not None
            assert p.bound[1] - log.witnessed_at <= timedelta(hours=1)
        if p.compliance == "in breach":
            assert p.bound is not None and p.proof
            shown = {c.ref.index: c for r in log.runs for c in r.computes}  # type: ignore[union-attr]
            (proof,) = p.proof
            assert p.bound[0] <= shown[proof.index].at < p.bound[1]
            assert shown[proof.index].flop_by_phase["pretraining"] >= 1e25 * (1 - 1e-9)


@settings(max_examples=200, deadline=None)
@given(evidence(), st.sampled_from(ORGS), days)
def test_one_more_verified_signature_never_lowers_the_count(
        got: tuple[Evidence, datetime], org: str, day: int) -> None:
    e, at = got
    more = e.model_copy(update={"signatures": [*e.signatures, SignatureSeen(
        ref=_ref(99_999), org=org, at=T0 + timedelta(days=day), signer="k",
        method="signatory")]})
    assert commitment_status(more, at).joined >= commitment_status(e, at).joined
