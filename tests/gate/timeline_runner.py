"""Run a scenario file: a policy, a timeline of ledger events, and expected decisions.

Every event becomes a real statement (``scalegate.ledger.statements`` predicates) with
a real RFC 6962 leaf hash; the state is folded with ``scalegate.state.fold`` and every
expectation is checked against ``scalegate.gate.decide`` / ``resumption``.

Timeline events (each may carry ``at:``; otherwise time advances by ``tick``):

- ``compute: {phase: FLOP, ...}``    cumulative FLOP by phase (``flop: X`` = pretraining)
- ``eval: {id, value, metric?, status?, step?}`` or a list of them
- ``evaluate: {values: {id: value}, default: 0.0}``  every evaluation id of the policy
- ``attestation: {safeguard, by, valid_from?, valid_until?, scope?, org?}``
- ``decide: {}``                       record the gate's decision as a statement
- ``pause: {}``                        checkpoint + decision (if needed) + pause
- ``approval: {by, role, ceiling?, ceiling_x?, pause?}``  (``ceiling_x``: x the paused compute)
- ``resume: {force?: false}``          resume from the active pause with its quorum
- ``notification: {obligation}``
- ``wait: 30d``                        advance the clock
- ``expect: {...}`` / ``expect_resumption: {...}``  (``now:`` absolute or ``+14d``)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from scalegate.gate import Decision, Resumption, decide, resumption
from scalegate.ledger.merkle import leaf_hash
from scalegate.ledger.statements import (
    ApprovalPredicate,
    AttestationPredicate,
    CheckpointPredicate,
    ComputePredicate,
    EvalPredicate,
    NotificationPredicate,
    PausePredicate,
    PolicyRef,
    Predicate,
    Ref,
    ResumePredicate,
    RunPredicate,
    make_statement,
)
from scalegate.policy import Policy, load_policy, policy_from_data
from scalegate.state import LoggedStatement, RunState, fold
from scalegate.units import parse_duration, parse_quantity

TRAINER = "lab/trainer"


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _flop(value: Any) -> float:
    return 0.0 if value in (0, "0") else parse_quantity(value)


@dataclass
class Timeline:
    """A ledger being written by a scenario."""

    policy: Policy
    run_id: str
    keys: dict[str, tuple[str, ...]]
    now: datetime
    tick: timedelta
    entries: list[LoggedStatement] = field(default_factory=list)
    step: int = 0
    flop_by_phase: dict[str, float] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)  # every decision observed
    last_decision: Ref | None = None
    last_compute_index: int = -1

    # -- writing --

    def append(self, predicate: Predicate, signer: str = TRAINER) -> Ref:
        statement = make_statement(predicate)
        ref = Ref(index=len(self.entries), leaf_hash=leaf_hash(statement.to_payload()).hex())
        roles = self.keys.get(signer, ("trainer",) if signer == TRAINER else ())
        self.entries.append(LoggedStatement(ref=ref, statement=statement, signer=signer,
                                            roles=roles))
        return ref

    def state(self) -> RunState:
        return fold(self.entries, run_id=self.run_id)

    def decide(self, now: datetime | None = None) -> Decision:
        decision = decide(self.policy, self.state(), now or self.now)
        self.decisions.append(decision)
        return decision

    def effective(self) -> float:
        return self.policy.compute.effective_flop(self.flop_by_phase)

    # -- events --

    def compute(self, spec: dict[str, Any]) -> None:
        phases = dict(spec)
        if "flop" in phases:
            phases["pretraining"] = phases.pop("flop")
        for phase, value in phases.items():
            self.flop_by_phase[phase] = _flop(value)
        self.step += 1
        self.append(
            ComputePredicate(
                run_id=self.run_id,
                step=self.step,
                tokens=float(self.step * 1000),
                flop_by_phase=dict(self.flop_by_phase),
                totals=self.policy.compute.totals(self.flop_by_phase),
                effective_flop=self.effective(),
                method="architecture",
                at=self.now,
            )
        )
        self.last_compute_index = len(self.entries) - 1

    def eval(self, spec: dict[str, Any]) -> None:
        eid = spec["id"]
        metric = spec.get("metric") or self._metric(eid)
        self.append(
            EvalPredicate(
                run_id=self.run_id,
                evaluation_id=eid,
                capability=spec.get("capability", ""),
                metric=metric,
                value=None if spec.get("status") == "failed" else float(spec["value"]),
                n=100,
                step=int(spec.get("step", self.step)),
                effective_flop=self.effective(),
                status=spec.get("status", "success"),
                at=self.now,
            ),
            signer=spec.get("by", TRAINER),
        )

    def _metric(self, eid: str) -> str:
        for cap in self.policy.capabilities:
            for level in cap.levels:
                for trig in level.evaluations:
                    if trig.evaluation == eid:
                        return trig.metric
        return "score"

    def evaluate(self, spec: dict[str, Any]) -> None:
        values = spec.get("values", {})
        ids = self.policy.evaluation_ids() or ["any"]
        for eid in ids:
            self.eval({"id": eid, "value": values.get(eid, spec.get("default", 0.0))})

    def attestation(self, spec: dict[str, Any]) -> None:
        valid_from = _time(spec["valid_from"]) if "valid_from" in spec else self.now
        until = spec.get("valid_until")
        self.append(
            AttestationPredicate(
                safeguard=spec["safeguard"],
                scope=spec.get("scope", "org"),
                org=spec.get("org"),
                run_id=self.run_id if spec.get("scope") == "run" else None,
                valid_from=valid_from,
                valid_until=_time(until) if until else None,
            ),
            signer=spec["by"],
        )

    def record_decision(self) -> Ref:
        decision = self.decide()
        self.last_decision = self.append(decision.to_predicate())
        return self.last_decision

    def pause(self, spec: dict[str, Any]) -> None:
        if self.last_decision is None or self.last_decision.index < self.last_compute_index:
            self.record_decision()
        assert self.last_decision is not None
        checkpoint = self.append(
            CheckpointPredicate(
                run_id=self.run_id,
                step=self.step,
                digest=hashlib.sha256(f"ckpt-{self.step}".encode()).hexdigest(),
                effective_flop=self.effective(),
                at=self.now,
            )
        )
        self.append(
            PausePredicate(
                run_id=self.run_id,
                decision=self.last_decision,
                checkpoint=checkpoint,
                step=self.step,
                effective_flop=self.effective(),
                public_statement=spec.get("statement", ""),
                at=self.now,
            )
        )

    def _pause_ref(self) -> Any:
        state = self.state()
        assert state.pauses, "no pause to approve or resume"
        return state.pauses[-1]

    def approval(self, spec: dict[str, Any]) -> None:
        pause = self._pause_ref()
        ceiling = spec.get("ceiling")
        if "ceiling_x" in spec:
            ceiling = float(spec["ceiling_x"]) * pause.predicate.effective_flop
        self.append(
            ApprovalPredicate(
                run_id=self.run_id,
                pause=pause.ref,
                role=spec["role"],
                rationale=spec.get("rationale", "safeguards verified"),
                ceiling_flop=_flop(ceiling) if ceiling is not None else None,
                at=self.now,
            ),
            signer=spec["by"],
        )

    def resume(self, spec: dict[str, Any]) -> None:
        state = self.state()
        res = resumption(self.policy, state, now=self.now)
        if not spec.get("force"):
            assert res.may_resume, f"resume refused: {res.missing_messages()}"
        pause = state.active_pause
        assert pause is not None
        approvals = res.approvals or [a.ref for a in state.approvals_for(pause.ref)]
        decision_ref = self.append(res.decision.to_predicate()) if res.decision else None
        self.append(
            ResumePredicate(
                run_id=self.run_id,
                pause=pause.ref,
                approvals=approvals or [pause.ref],
                decision=decision_ref or pause.predicate.decision,
                checkpoint=pause.predicate.checkpoint,
                ceiling_flop=res.ceiling_flop,
                at=self.now,
            )
        )

    def notification(self, spec: dict[str, Any]) -> None:
        assert self.last_decision is not None, "record a decision before notifying"
        self.append(
            NotificationPredicate(
                run_id=self.run_id,
                obligation=self.last_decision,
                obligation_id=spec["obligation"],
                recipient=spec.get("recipient", "regulator"),
                sent_at=self.now,
                content_digest=hashlib.sha256(b"notice").hexdigest(),
            )
        )


def _matches_rule(expected: str, actual: str) -> bool:
    return actual == expected or actual.startswith((expected + ":", expected + "/"))


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def _when(timeline: Timeline, value: Any) -> datetime:
    if value is None:
        return timeline.now
    if isinstance(value, str) and value.startswith("+"):
        return timeline.now + parse_duration(value[1:])
    return _time(value)


def check_decision(d: Decision, exp: dict[str, Any], where: str) -> None:
    """Assert that decision ``d`` matches the expectation mapping ``exp``."""
    ids = [o.id for o in d.obligations]
    info = f"{where}: verdict {d.verdict}, rules {d.rules}, obligations {ids}"
    if "verdict" in exp:
        assert d.verdict == exp["verdict"], info
    for rule in exp.get("rules", []):
        assert any(_matches_rule(rule, r) for r in d.rules), f"missing rule {rule!r}; {info}"
    for rule in exp.get("no_rules", []):
        assert not any(_matches_rule(rule, r) for r in d.rules), f"unexpected {rule!r}; {info}"
    if "obligations" in exp:
        expected = exp["obligations"]
        if expected == []:
            assert d.obligations == [], info
        for ob in expected:
            found = [o for o in d.obligations if o.id == ob["id"]]
            assert found, f"missing obligation {ob['id']!r}; {info}"
            o = found[0]
            if "recipient" in ob:
                assert o.recipient == ob["recipient"], info
            if "deadline" in ob:
                want = None if ob["deadline"] is None else _time(ob["deadline"])
                assert o.deadline == want, f"deadline {o.deadline} != {want}; {info}"
            if "rule" in ob:
                assert _matches_rule(ob["rule"], o.rule), info
            if "message_contains" in ob:
                assert ob["message_contains"] in o.message, o.message
    for oid in exp.get("no_obligations", []):
        assert all(o.id != oid for o in d.obligations), f"unexpected obligation {oid}; {info}"
    for key in ("next_eval_at_flop", "ceiling_flop", "effective_flop"):
        if key in exp:
            want = None if exp[key] is None else _flop(exp[key])
            assert _close(getattr(d, key), want), f"{key} {getattr(d, key)} != {want}; {info}"
    if "evaluations_due" in exp:
        assert sorted(d.evaluations_due) == sorted(exp["evaluations_due"]), info
    if "totals" in exp:
        for regime, value in exp["totals"].items():
            assert _close(d.totals[regime], _flop(value)), f"{regime}: {d.totals}; {info}"
    for text in exp.get("message_contains", []):
        assert any(text in r.message for r in d.reasons), f"no reason mentions {text!r}; {info}"


def check_resumption(r: Resumption, exp: dict[str, Any], where: str) -> None:
    """Assert that resumption ``r`` matches ``exp``."""
    info = f"{where}: may_resume {r.may_resume}, missing {[(m.kind, m.item) for m in r.missing]}"
    if "may_resume" in exp:
        assert r.may_resume == exp["may_resume"], info
    for item in exp.get("missing", []):
        hits = [
            m
            for m in r.missing
            if m.kind == item["kind"] and ("item" not in item or item["item"] in m.item)
        ]
        assert hits, f"missing {item} not reported; {info}"
        if "message_contains" in item:
            assert any(item["message_contains"] in m.message for m in hits), info
    for kind in exp.get("not_missing", []):
        assert all(m.kind != kind for m in r.missing), f"unexpected missing {kind}; {info}"
    if "approvals" in exp:
        assert len(r.approvals) == exp["approvals"], info
    if "ceiling_flop" in exp:
        want = None if exp["ceiling_flop"] is None else _flop(exp["ceiling_flop"])
        assert _close(r.ceiling_flop, want), info


def load_scenario(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def scenario_policy(scenario: dict[str, Any]) -> Policy:
    spec = scenario["policy"]
    if isinstance(spec, str):
        return load_policy(spec)
    return policy_from_data(spec, source="inline")


def run_scenario(scenario: dict[str, Any], name: str = "scenario") -> Timeline:
    """Play a scenario's timeline, checking every expectation; return the timeline."""
    policy = scenario_policy(scenario)
    run = scenario.get("run", {})
    start = _time(scenario.get("start", "2026-01-01T00:00:00Z"))
    keys = {k: tuple(v) for k, v in scenario.get("keys", {}).items()}
    t = Timeline(
        policy=policy,
        run_id=run.get("run_id", "run-1"),
        keys=keys,
        now=start,
        tick=parse_duration(scenario.get("tick", "1h")),
    )
    planned = run.get("planned_flop")
    t.append(
        RunPredicate(
            run_id=t.run_id,
            org=run.get("org", "lab"),
            model=run.get("model", "model"),
            policy=PolicyRef(id=policy.id, version=policy.version, digest=policy.digest()),
            planned_flop=_flop(planned) if planned is not None else None,
            started_at=_time(run["started_at"]) if "started_at" in run else start,
        )
    )
    for n, event in enumerate(scenario["timeline"]):
        where = f"{name} event {n}"
        event = dict(event)
        at = event.pop("at", None)
        if "wait" in event:
            t.now += parse_duration(event["wait"])
            continue
        if "expect" in event:
            exp = event["expect"] or {}
            check_decision(t.decide(_when(t, exp.get("now"))), exp, where)
            continue
        if "expect_resumption" in event:
            exp = event["expect_resumption"] or {}
            res = resumption(t.policy, t.state(), now=_when(t, exp.get("now")))
            if res.decision is not None:
                t.decisions.append(res.decision)
            check_resumption(res, exp, where)
            continue
        t.now = _time(at) if at is not None else t.now + t.tick
        ((kind, spec),) = event.items()
        if kind == "eval" and isinstance(spec, list):
            for item in spec:
                t.eval(item)
        elif kind == "decide":
            t.record_decision()
        else:
            getattr(t, kind)(spec or {})
    return t
