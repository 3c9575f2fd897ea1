"""Every evaluation milestone the gate names is evaluated on the step that reaches it.

Property-based: random mixes of phases (some outside the effective regime, such as
recomputation and evaluation), step sizes, counting methods, reopenings of the run, an
algorithmic multiplier, and, for the distributed front, several ranks. The expected
evaluation steps come from an independent reference: effective compute summed by the
test from the phases the policy counts, the first milestone at ``first_at``, each next one
at ``every`` times the compute the last evaluation measured. The real supervisor, ledger
(SQLite) and gate run underneath; no torch.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalegate.demo.workspace import Workspace, create_workspace
from scalegate.evals import Probe, Suite
from scalegate.integrations import DistributedSupervisor
from scalegate.integrations._supervision import FrameworkSupervisor
from scalegate.policy import Policy, load_policy
from scalegate.policy.library import bundled_text
from scalegate.runs import load_state
from scalegate.supervisor import Supervisor

FIRST_AT = 1.7e10
EFFECTIVE = ("pretraining", "fine-tuning")  # in the demo's training regime
OTHER = ("recomputation", "evaluation")  # counted by no regime of the demo policy
PHASES = EFFECTIVE + OTHER
_runs = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    workspace = create_workspace(tmp_path_factory.mktemp("ws"), clock=Clock())
    yield workspace
    workspace.close()


_policies: dict[str, Policy] = {}


def policy_with(multiplier: str, tmp: Path) -> Policy:
    """The bundled demo policy with another algorithmic multiplier."""
    if multiplier not in _policies:
        doc = yaml.safe_load(bundled_text("demo"))
        doc["id"] = f"demo-x{multiplier}"
        doc["compute"]["effective"]["multiplier"] = multiplier
        path = tmp / f"demo-{multiplier}.yaml"
        path.write_text(yaml.safe_dump(doc))
        _policies[multiplier] = load_policy(path)
    return _policies[multiplier]


@dataclass
class Step:
    flop: float  # FLOP of the whole step (every rank)
    phase: str


def expected_evaluations(steps: list[Step], multiplier: float, every: float) -> list[int]:
    """The reference: the (1-based) steps at which the gate's milestones are reached."""
    out, effective, milestone = [], 0.0, FIRST_AT
    for i, s in enumerate(steps, start=1):
        if s.phase in EFFECTIVE:
            effective += s.flop * multiplier
        if effective >= milestone * (1 - 1e-9):
            out.append(i)
            milestone = effective * every
    return out


def probe(seen: list[int]) -> Suite:
    def fn(model: Any, ctx: Any) -> tuple[float, float, int]:
        seen.append(ctx.step)
        return (0.1, 0.01, 100)  # below the alert: the cadence stays at every 2x

    return Suite([Probe("cyber-demo-task", "cyber-demo", "accuracy", fn)])


def _save(tmp: Path):
    def save(step: int) -> Path:
        path = tmp / f"ck-{next(_runs)}-{step}"
        path.mkdir()
        (path / "w.bin").write_bytes(b"w")
        return path

    return save


steps_strategy = st.lists(
    st.builds(
        Step,
        flop=st.floats(FIRST_AT / 40, FIRST_AT / 2.5),
        phase=st.sampled_from(PHASES),
    ),
    min_size=5,
    max_size=60,
)
common = settings(max_examples=25, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])


def _cuts(draw_cuts: list[int], n: int) -> list[tuple[int, int]]:
    """Segments [a, b) of ``n`` steps, split where the run is closed and reopened."""
    points = sorted({c % n for c in draw_cuts if 0 < c % n < n})
    bounds = [0, *points, n]
    return list(itertools.pairwise(bounds))


@given(steps=steps_strategy, multiplier=st.sampled_from(["1x", "2.5x"]),
       cuts=st.lists(st.integers(1, 60), max_size=3),
       methods=st.lists(st.sampled_from(["declared", "architecture"]), min_size=4, max_size=4),
       compute_every=st.sampled_from([1, 7, 100]))
@common
def test_supervisor_evaluates_at_every_milestone(ws: Workspace, tmp_path: Path,
                                                 steps: list[Step], multiplier: str,
                                                 cuts: list[int], methods: list[str],
                                                 compute_every: int) -> None:
    policy = policy_with(multiplier, tmp_path)
    run_id, seen = f"plain-{next(_runs)}", []
    for (a, b), method in zip(_cuts(cuts, len(steps)), methods, strict=False):
        per_token = 1e6 if method == "architecture" else None
        sup = Supervisor.open(run_id, policy, ws.ledger, ws.key("trainer"), evaluator=probe(seen),
                              compute_every=compute_every, check_interval=1e9,
                              record_interval=0.0, clock=Clock(), flop_per_token=per_token,
                              save_checkpoint=_save(tmp_path), checkpoint_dir=tmp_path)
        with sup:
            for s in steps[a:b]:
                if per_token:
                    sup.step(tokens=s.flop / per_token, phase=s.phase)
                else:
                    sup.step(tokens=1.0, flop=s.flop, phase=s.phase)
    mult = policy.compute.effective.multiplier
    assert seen == expected_evaluations(steps, mult, policy.evaluation.every)
    last = load_state(ws.ledger, run_id).compute[-1].predicate
    assert last.effective_flop == pytest.approx(
        sum(s.flop for s in steps if s.phase in EFFECTIVE) * mult, rel=1e-9)


@given(steps=steps_strategy, multiplier=st.sampled_from(["1x", "2.5x"]),
       cuts=st.lists(st.integers(1, 60), max_size=2),
       methods=st.lists(st.sampled_from(["measured", "declared"]), min_size=3, max_size=3))
@common
def test_framework_supervisor_evaluates_at_every_milestone(ws: Workspace, tmp_path: Path,
                                                           steps: list[Step], multiplier: str,
                                                           cuts: list[int],
                                                           methods: list[str]) -> None:
    policy = policy_with(multiplier, tmp_path)
    run_id, seen = f"framework-{next(_runs)}", []
    for (a, b), method in zip(_cuts(cuts, len(steps)), methods, strict=False):
        sup = FrameworkSupervisor.open(run_id, policy, ws.ledger, ws.key("trainer"),
                                       evaluator=probe(seen), check_interval=1e9,
                                       clock=Clock(), save_checkpoint=_save(tmp_path),
                                       checkpoint_dir=tmp_path)
        with sup:
            for s in steps[a:b]:
                # The framework's main phase, with the step's FLOP filed under its own.
                sup.record({s.phase: s.flop}, tokens=1.0, steps=1, method=method)
    mult = policy.compute.effective.multiplier
    assert seen == expected_evaluations(steps, mult, policy.evaluation.every)


class ThreadCollective:
    """``world`` ranks as threads of one process, meeting at a barrier."""

    def __init__(self, world: int) -> None:
        self.world_size = world
        self._barrier = threading.Barrier(world, timeout=60)
        self._slots: list[list[float]] = [[] for _ in range(world)]
        self._local = threading.local()

    def rank_view(self, rank: int) -> ThreadCollective:
        view = object.__new__(ThreadCollective)
        view.__dict__.update(self.__dict__)
        view.rank = rank
        return view

    def sum(self, values: list[float]) -> list[float]:
        self._slots[self.rank] = list(values)
        self._barrier.wait()
        out = [sum(col) for col in zip(*self._slots, strict=True)]
        self._barrier.wait()
        return out

    def broadcast(self, values: list[float]) -> list[float]:
        if self.rank == 0:
            self._slots[0] = list(values)
        self._barrier.wait()
        out = list(self._slots[0])
        self._barrier.wait()
        return out


@given(sizes=st.lists(st.floats(FIRST_AT / 60, FIRST_AT / 5), min_size=4, max_size=40),
       shares=st.lists(st.floats(0.2, 1.0), min_size=3, max_size=3),
       phases=st.lists(st.sampled_from(PHASES), min_size=40, max_size=40),
       world=st.integers(2, 3), cut=st.integers(0, 40))
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_distributed_ranks_evaluate_at_every_milestone(ws: Workspace, tmp_path: Path,
                                                       sizes: list[float], shares: list[float],
                                                       phases: list[str], world: int,
                                                       cut: int) -> None:
    """Ranks do unequal work and sync only at planned steps. The planning bound is the
    largest step seen, so each segment (a reopening starts one) begins with its largest
    step: every later step is no larger, and no milestone may be passed between syncs."""
    policy = policy_with("1x", tmp_path)
    n = len(sizes)
    segments = [(0, n)] if not 0 < cut < n else [(0, cut), (cut, n)]
    for a, b in segments:  # the largest step of each segment first
        sizes[a:b] = sorted(sizes[a:b], reverse=True)
    steps = [Step(sizes[i], phases[i]) for i in range(n)]
    run_id, seen = f"ddp-{next(_runs)}", []
    for a, b in segments:
        collective = ThreadCollective(world)
        errors: list[BaseException] = []

        def rank(r: int, a: int = a, b: int = b, collective: ThreadCollective = collective,
                 errors: list[BaseException] = errors) -> None:
            try:
                ds = DistributedSupervisor.open(
                    run_id, policy, ws.ledger if r == 0 else None,
                    ws.key("trainer") if r == 0 else None, collective=collective.rank_view(r),
                    evaluator=probe(seen) if r == 0 else None, trackers=None,
                    check_interval=1e9, clock=Clock(), save_checkpoint=_save(tmp_path),
                    checkpoint_dir=tmp_path, compute_every=1000)
                total = sum(shares[:world])
                for s in steps[a:b]:
                    ds.step(tokens=1.0, flop=s.flop * shares[r] / total, phase=s.phase)
                ds.flush()
                ds.close()
            except BaseException as exc:  # re-raised in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
    assert seen == expected_evaluations(steps, 1.0, policy.evaluation.every)
