"""Ledgers with runs in them, for the run-replay tests: an honest supervisor (the real one,
with declared FLOP and a probe whose score rises with compute) and a dishonest trainer
that writes statements directly with its valid key.

Stages of one honest run under the bundled ``demo`` policy are built once per test
module and copied (closed cleanly first, so a copy is one SQLite file):

- ``running``: registered, evaluated at the first milestones, still under the alert;
- ``paused``: the capability trigger was met without the safeguard: paused by itself;
- ``resumed``: the CISO attested, the RSO (ceiling 2x) and a board member approved, resumed;
- ``ceiling``: the resumed run paused again at its 2x ceiling.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scalegate.audit import TrustFile, Witness, witness_ledger
from scalegate.audit.runcheck import LedgerAudit, audit_ledger
from scalegate.demo.workspace import Workspace, create_workspace
from scalegate.evals import EvalResult, Suite
from scalegate.gate import resumption
from scalegate.governance import approve, attest, resume
from scalegate.ledger.cosignature import CosignatureVerifier
from scalegate.ledger.keys import SigningKey
from scalegate.ledger.log import Ledger
from scalegate.ledger.statements import (
    CheckpointPredicate,
    ComputePredicate,
    DecisionPredicate,
    EvalPredicate,
    NotificationPredicate,
    PausePredicate,
    Predicate,
    Ref,
    ResumePredicate,
    sha256_hex,
    sign_statement,
)
from scalegate.policy import parse_policy
from scalegate.runs import load_state
from scalegate.state import RunState
from scalegate.supervisor import Supervisor

RUN = "run-1"
STEP_FLOP = 1e11  # the demo policy evaluates first at 1e12, then every 2x (1.5x after alert)
T0 = datetime(2026, 3, 1, tzinfo=UTC)
SAFEGUARD = "security-level-demo"
#: The audit tests' own policy (the demo policy's mechanisms, numbers frozen here so that
#: tuning the bundled demo does not move these tests).
POLICY = parse_policy("""
id: audit-test
version: "1"
kind: custom
title: run-replay test policy
compute:
  regimes:
    training:
      include: [pretraining, fine-tuning, rl, synthetic-data, merged-weights]
  effective: {regime: training, multiplier: 1x, source: none}
  thresholds:
    - {id: demo-notify, regime: training, flop: 1e13, basis: reached, action: notify,
       recipient: demo regulator, deadline: 14d}
evaluation: {every: 2x, max_interval: 30d, first_at: 1e12, on_missing: pause}
capabilities:
  - id: cyber-demo
    name: Synthetic dangerous task
    levels:
      - id: cyber-demo-1
        evaluations:
          - {evaluation: cyber-demo-task, metric: accuracy, alert: 0.5, trigger: 0.8}
        requires: [security-level-demo]
        on_alert: {every: 1.5x}
safeguards:
  - {id: security-level-demo, kind: security, attested_by: [ciso], max_age: 30d}
governance:
  roles: [rso, ciso, board, ceo]
  resumption:
    quorum: [rso, {any_of: [board]}]
  policy_change: {any_of: [rso, board]}
""", source="tests/audit/runworld.py")


class Clock:
    """A clock that moves one second each time it is read; ``jump`` moves it further."""

    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t

    def jump(self, delta: timedelta) -> None:
        self.t += delta


def capability(flop: float) -> float:
    """0.5 (the alert) near 1e13, 0.8 (the trigger) near 2.7e13 effective FLOP."""
    return min(1.0, max(0.0, (flop / 1e12) ** 0.5 / 6.5))


class _Probe:
    """The dangerous-capability probe, on the test clock (a built-in probe stamps its results
    with the wall clock, which would put them months after the run)."""

    id, capability, metric = "cyber-demo-task", "cyber-demo", "accuracy"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def run(self, model: Any, ctx: Any) -> list[EvalResult]:
        t = self.clock()
        return [EvalResult(evaluation_id=self.id, capability=self.capability,
                           metric=self.metric, value=capability(ctx.effective_flop),
                           stderr=0.01, n=100, elicitation="none", harness="probe",
                           log_digest=sha256_hex("log"), status="success", started_at=t,
                           completed_at=t)]


@dataclass
class World:
    """A workspace (keys, ledger) with its clock, a witness, and helpers for both trainers."""

    ws: Workspace
    clock: Clock
    witness_key: SigningKey
    dir: Path

    @property
    def ledger(self) -> Ledger:
        return self.ws.ledger

    # --- the honest side ---------------------------------------------------------------------

    def supervisor(self) -> Supervisor:
        def save(step: int) -> Path:
            path = self.dir / "ck" / f"step-{step}"
            path.mkdir(parents=True, exist_ok=True)
            (path / "weights.bin").write_bytes(f"weights at {step}".encode())
            return path

        return Supervisor.open(RUN, POLICY, self.ledger, self.ws.key("trainer"),
                               evaluator=Suite([_Probe(self.clock)]), save_checkpoint=save,
                               checkpoint_dir=self.dir / "ck", compute_every=5,
                               clock=self.clock, check_interval=1e9)

    def train(self, until: Callable[[Any], bool], steps: int = 2000) -> Any:
        sup = self.supervisor()
        d = None
        for _ in range(steps):
            d = sup.step(tokens=1000, flop=STEP_FLOP)
            if until(d) or d.verdict == "pause":
                break
        sup.flush()
        return d

    def state(self) -> RunState:
        return load_state(self.ledger, RUN)

    # --- the dishonest trainer: statements written directly with a valid key --------------------

    def sign(self, pred: Predicate, who: str = "trainer") -> Ref:
        r = self.ledger.append(sign_statement(pred, self.ws.key(who)))
        return Ref(index=r.index, leaf_hash=r.leaf_hash.hex())

    def compute(self, step: int, flop: float, at: datetime | None = None) -> Ref:
        return self.sign(ComputePredicate(
            run_id=RUN, step=step, tokens=1000.0 * step, flop_by_phase={"pretraining": flop},
            effective_flop=flop, method="declared", at=at or self.clock()))

    def more_compute(self, n: int = 1, steps: int = 1) -> list[Ref]:
        """``n`` compute statements, each ``steps`` steps of STEP_FLOP past the last one."""
        last = self.state().latest_compute
        assert last is not None
        step, flop = last.predicate.step, last.predicate.flop_by_phase["pretraining"]
        out = []
        for _ in range(n):
            step, flop = step + steps, flop + steps * STEP_FLOP
            out.append(self.compute(step, flop))
        return out

    def eval(self, value: float, step: int, flop: float) -> Ref:
        return self.sign(EvalPredicate(
            run_id=RUN, evaluation_id="cyber-demo-task", capability="cyber-demo",
            metric="accuracy", value=value, stderr=0.01, n=100, step=step, effective_flop=flop,
            at=self.clock()))

    def decision(self, verdict: str = "continue", basis: int | None = None) -> Ref:
        last = self.state().latest_compute
        return self.sign(DecisionPredicate(
            run_id=RUN, step=last.predicate.step if last else 0,
            effective_flop=last.predicate.effective_flop if last else 0.0, verdict=verdict,
            basis_size=self.ledger.size if basis is None else basis, at=self.clock()))

    def checkpoint(self, step: int, flop: float) -> Ref:
        return self.sign(CheckpointPredicate(
            run_id=RUN, step=step, digest=sha256_hex(f"ck{step}"), effective_flop=flop,
            at=self.clock()))

    def pause(self, decision: Ref, checkpoint: Ref) -> Ref:
        last = self.state().latest_compute
        assert last is not None
        return self.sign(PausePredicate(
            run_id=RUN, decision=decision, checkpoint=checkpoint, step=last.predicate.step,
            effective_flop=last.predicate.effective_flop, at=self.clock()))

    def resume(self, *, approvals: list[Ref] | None = None, checkpoint: Ref | None = None,
               pause: Ref | None = None) -> Ref:
        """A resume statement for the active pause, whatever the gate says; it first records
        the gate's resumption decision, as the honest ``resume`` does."""
        state = self.state()
        active = state.active_pause
        assert active is not None
        now = self.clock()
        res = resumption(POLICY, state, now=now)
        assert res.decision is not None
        decision = self.sign(res.decision.to_predicate())
        return self.sign(ResumePredicate(
            run_id=RUN, pause=pause or active.ref,
            approvals=approvals if approvals is not None else
            [a.ref for a in state.approvals_for(active.ref)],
            decision=decision, checkpoint=checkpoint or active.predicate.checkpoint,
            ceiling_flop=res.ceiling_flop, at=now))

    def notify(self, obligation_id: str, at: datetime) -> Ref:
        decision = self.state().decisions[-1].ref
        return self.sign(NotificationPredicate(
            run_id=RUN, obligation=decision, obligation_id=obligation_id,
            recipient="demo regulator", sent_at=at, content_digest=sha256_hex("notice")))

    # --- governance (honest officers) ----------------------------------------------------------

    def attest(self, valid_for: timedelta | None = None, who: str = "ciso") -> Ref:
        return attest(self.ledger, self.ws.key(who), SAFEGUARD, policy=POLICY,
                      evidence=b"pen-test report", valid_for=valid_for, now=self.clock())

    def approve(self, who: str, ceiling: str | None = None) -> Ref:
        return approve(self.ledger, self.ws.key(who), RUN, f"{who} agrees", ceiling=ceiling,
                       now=self.clock())

    def honest_resume(self) -> Ref:
        return resume(self.ledger, self.ws.key("trainer"), RUN, now=self.clock())

    def replay(self, index: int) -> Ref:
        """Append a copy of entry ``index`` as a log operator who writes the database around
        admission would (the ledger itself refuses a statement it holds)."""
        from scalegate.ledger._tables import EntryRow, format_time

        e = self.ledger.entry(index)
        store = self.ledger.store
        with store.writer() as w:
            nodes = store.compact_range(w.conn, w.size).append(e.leaf_hash)[1:]
            row = EntryRow(w.size, e.leaf_hash, e.data, e.kind, e.run_id, e.signer,
                           format_time(self.clock()))
            w.add([row], nodes)
        self.ledger.close()
        self.ws.ledger = Ledger.open(self.ws.ledger_path, now=self.clock)  # no stale caches
        return Ref(index=row.index, leaf_hash=e.leaf_hash.hex())

    # --- auditing ------------------------------------------------------------------------------

    def trust(self) -> TrustFile:
        return TrustFile.model_validate({
            "log": {"origin": self.ledger.origin, "key": self.ws.log_key.vkey.text()},
            "witnesses": {self.witness_key.name:
                          CosignatureVerifier.from_key(self.witness_key).text()},
            "witness_quorum": 1,
            "org_roots": {self.ws.org: [self.ws.org_root.vkey.text()]},
        })

    def trust_file(self) -> Path:
        """The trust file on disk (YAML), for the command line."""
        import yaml

        path = self.dir / "trust.yaml"
        data = self.trust().model_dump(mode="json")
        path.write_text(yaml.safe_dump({k: data[k] for k in (
            "log", "witnesses", "witness_quorum", "org_roots")}))
        return path

    def witness(self, at: datetime | None = None) -> None:
        """The witness cosigns the log's latest checkpoint, by its own clock (``at``: a
        witness whose clock is not the lab's)."""
        w = Witness(self.dir / "witness.json", self.witness_key,
                    {self.ledger.origin: self.ws.log_key.vkey},
                    now=self.clock if at is None else (lambda: at))
        self.ledger.checkpoint()
        witness_ledger(self.ledger, w)

    def audit(self, now: datetime | None = None, witness_at: datetime | None = None,
              **kw: Any) -> LedgerAudit:
        self.witness(witness_at)
        return audit_ledger(self.ws.ledger_path, self.trust(), use_state=False, workers=1,
                            now=now or self.clock.t + timedelta(days=1), **kw)

    def copy(self, target: Path) -> World:
        """An independent copy of this world (same keys, its own ledger file and clock)."""
        self.ledger.close()
        shutil.copytree(self.ws.root, target / "ws")
        self.ws.ledger = Ledger.open(self.ws.ledger_path, now=self.clock)
        clock = Clock(self.clock.t)
        ws = Workspace(target / "ws", self.ws.org, Ledger.open(target / "ws" / "ledger.db",
                       now=clock), self.ws.org_root, self.ws.log_key, dict(self.ws.keys))
        return World(ws, clock, self.witness_key, target)

    def close(self) -> None:
        self.ws.close()


def new_world(directory: Path) -> World:
    clock = Clock()
    ws = create_workspace(directory / "ws", clock=clock)
    return World(ws, clock, SigningKey.generate("witness.example/w1"), directory)


def build_stages(directory: Path) -> dict[str, World]:
    """The four honest stages (see the module docstring), each its own copy."""
    w = new_world(directory / "build")
    stages: dict[str, World] = {}
    w.train(lambda d: d.verdict == "alert")  # evaluated at 1e12, 2e12, ... until the alert
    stages["running"] = w.copy(_fresh(directory / "running"))
    w.train(lambda d: False)
    assert w.state().active_pause is not None, "the trigger without the safeguard must pause"
    stages["paused"] = w.copy(_fresh(directory / "paused"))
    w.attest()
    w.approve("rso", ceiling="2x")
    w.approve("board")
    w.honest_resume()
    stages["resumed"] = w.copy(_fresh(directory / "resumed"))
    d = w.train(lambda d: False)
    assert d is not None and "ceiling" in d.rules
    stages["ceiling"] = w
    return stages


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
