"""EvalResult, EvalContext, Probe and Suite: results are valid, failures never escape."""

from __future__ import annotations

import hashlib
import json
import math
import random
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from scalegate.errors import EvaluationError
from scalegate.evals import EvalContext, EvalResult, Evaluation, Probe, Suite, isolated

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DIGEST = "cd" * 32


def ctx(tmp_path: Path | None = None, **kw: object) -> EvalContext:
    base: dict[str, object] = {
        "run_id": "run-7",
        "step": 42,
        "effective_flop": 1.2e18,
        "checkpoint": "ab" * 32,
        "log_dir": tmp_path,
    }
    base.update(kw)
    return EvalContext.model_validate(base)


def ok_result(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "evaluation_id": "bio-1",
        "capability": "bio",
        "metric": "accuracy",
        "value": 0.5,
        "stderr": 0.1,
        "n": 20,
        "elicitation": "greedy, 0-shot",
        "harness": "probe",
        "checkpoint": "ab" * 32,
        "log_digest": DIGEST,
        "status": "success",
        "started_at": T0,
        "completed_at": T0 + timedelta(seconds=3),
    }
    base.update(kw)
    return base


# --- EvalResult / EvalContext ----------------------------------------------------------


def test_result_round_trips_through_json():
    r = EvalResult.model_validate(ok_result())
    again = EvalResult.model_validate_json(r.model_dump_json())
    assert again == r
    assert set(r.model_dump()) == {
        "evaluation_id", "capability", "metric", "value", "stderr", "n", "elicitation",
        "harness", "checkpoint", "log_digest", "status", "error", "started_at", "completed_at",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"value": None}, "finite value"),
        ({"value": math.nan}, "finite value"),
        ({"error": "boom"}, "must not carry an error"),
        ({"status": "failed", "error": "boom"}, "value=None"),
        ({"status": "failed", "value": None}, "what went wrong"),
        ({"log_digest": "xyz"}, "64 lowercase hex"),
        ({"started_at": datetime(2026, 3, 1, 12, 0)}, "timezone-aware"),
        ({"completed_at": T0 - timedelta(seconds=1)}, "before started_at"),
        ({"n": -1}, "greater than or equal to 0"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_inconsistent_results_are_refused(change, complaint):
    with pytest.raises(ValidationError, match=complaint):
        EvalResult.model_validate(ok_result(**change))


def test_failed_constructor_and_nan_stderr():
    r = EvalResult.failed(
        evaluation_id="x",
        capability="c",
        metric="m",
        error="it broke",
        elicitation="",
        harness="probe",
        checkpoint=None,
        log_digest=DIGEST,
        started_at=T0,
    )
    assert (r.status, r.value, r.error, r.n) == ("failed", None, "it broke", 0)
    assert r.completed_at >= r.started_at
    assert EvalResult.model_validate(ok_result(stderr=math.nan)).stderr is None


def test_context_validation():
    with pytest.raises(ValidationError):
        ctx(step=-1)
    with pytest.raises(ValidationError):
        ctx(effective_flop=math.inf)
    with pytest.raises(ValidationError):
        ctx(run_id="")


# --- Probe -----------------------------------------------------------------------------


def test_probe_value_and_triple(tmp_path):
    [a] = Probe("p1", "cyber", "pass@1", lambda m, c: 0.75).run(None, ctx(tmp_path))
    assert (a.status, a.value, a.stderr, a.n, a.harness) == ("success", 0.75, None, 1, "probe")
    assert a.checkpoint == "ab" * 32
    [b] = Probe("p2", "cyber", "pass@1", lambda m, c: (0.5, 0.05, 40)).run(None, ctx(tmp_path))
    assert (b.value, b.stderr, b.n) == (0.5, 0.05, 40)


def test_probe_sees_model_and_context(tmp_path):
    seen = []

    def fn(model, context):
        seen.append((model, context.step, context.run_id))
        return 1.0

    Probe("p", "c", "m", fn).run("the-model", ctx(tmp_path))
    assert seen == [("the-model", 42, "run-7")]


def test_probe_log_is_written_and_its_digest_recorded(tmp_path):
    context = ctx(tmp_path / "logs")
    [r] = Probe("cyber/ctf:easy", "cyber", "solve-rate", lambda m, c: (0.3, 0.1, 10)).run(
        None, context
    )
    [path] = list((tmp_path / "logs").iterdir())
    assert path.name.startswith("cyber_ctf_easy-step42-")  # id made safe for a file name
    assert r.log_digest == hashlib.sha256(path.read_bytes()).hexdigest()
    record = json.loads(path.read_text())
    assert record["value"] == 0.3 and record["context"]["run_id"] == "run-7"
    assert "log_dir" not in record["context"]


def test_probe_without_log_dir_still_has_a_digest():
    [r] = Probe("p", "c", "m", lambda m, c: 0.1).run(None, ctx(None))
    assert len(r.log_digest) == 64


@pytest.mark.parametrize(
    ("output", "complaint"),
    [
        (math.nan, "non-finite value"),
        (True, "returned value True"),
        ("0.5", "returned value '0.5'"),
        ((0.5, 0.1), "tuple of 2 items"),
        ((0.5, 0.1, -3), "n=-3"),
        ((0.5, math.inf, 3), "non-finite stderr"),
    ],
)
def test_probe_unusable_output_is_a_failed_result(tmp_path, output, complaint):
    [r] = Probe("p", "c", "m", lambda m, c: output).run(None, ctx(tmp_path))
    assert r.status == "failed" and r.value is None
    assert complaint in r.error


def test_probe_that_raises_is_a_failed_result_with_traceback_in_its_log(tmp_path):
    def broken(model, context):
        raise ZeroDivisionError("no samples")

    [r] = Probe("p", "c", "m", broken).run(None, ctx(tmp_path))
    assert r.status == "failed" and r.error == "ZeroDivisionError: no samples"
    [path] = list(tmp_path.iterdir())
    assert r.log_digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "in broken" in json.loads(path.read_text())["traceback"]


def test_probe_rejects_bad_definitions():
    with pytest.raises(EvaluationError, match="non-empty id"):
        Probe("", "c", "m", lambda m, c: 1.0)
    with pytest.raises(EvaluationError, match="callable"):
        Probe("p", "c", "m", 3)  # type: ignore[arg-type]


# --- Suite -----------------------------------------------------------------------------


class Raising:
    id = "raising"
    capability = "autonomy"
    metric = "score"

    def run(self, model, context):
        raise RuntimeError("harness crashed")


class Returns:
    capability = "autonomy"
    metric = "score"

    def __init__(self, id, out):
        self.id = id
        self.out = out

    def run(self, model, context):
        return self.out


def test_suite_converts_every_misbehaviour_into_a_failed_result(tmp_path):
    good = EvalResult.model_validate(ok_result(evaluation_id="fine"))
    suite = Suite(
        [
            Probe("first", "c", "m", lambda m, c: 0.9),
            Raising(),
            Returns("empty", []),
            Returns("none", None),
            Returns("other", [EvalResult.model_validate(ok_result(evaluation_id="someone-else"))]),
            Returns("junk", [{"value": "x"}]),
            Returns("fine", [good]),
            Returns("as-dict", [ok_result(evaluation_id="as-dict")]),
        ]
    )
    results = suite.run(None, ctx(tmp_path))
    by_id = {r.evaluation_id: r for r in results}
    assert [r.evaluation_id for r in results] == list(suite.ids)
    assert by_id["first"].status == "success"
    assert by_id["fine"] == good
    assert by_id["as-dict"].status == "success"
    for bad, says in [
        ("raising", "RuntimeError: harness crashed"),
        ("empty", "expected a non-empty list"),
        ("none", "returned NoneType"),
        ("other", "returned a result for 'someone-else'"),
        ("junk", "ValidationError"),
    ]:
        assert by_id[bad].status == "failed", bad
        assert by_id[bad].value is None
        assert says in by_id[bad].error
        assert by_id[bad].checkpoint == "ab" * 32
    # The raising evaluation's traceback is in the log its digest points to.
    logs = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in tmp_path.iterdir()}
    assert "harness crashed" in logs[by_id["raising"].log_digest].read_text()


def test_suite_refuses_bad_definitions():
    with pytest.raises(EvaluationError, match="share the id 'x'"):
        Suite([Probe("x", "c", "m", lambda m, c: 1.0), Probe("x", "c", "m", lambda m, c: 1.0)])
    with pytest.raises(EvaluationError, match="is not an evaluation"):
        Suite([object()])  # type: ignore[list-item]


def test_probe_satisfies_the_protocol():
    assert isinstance(Probe("p", "c", "m", lambda m, c: 1.0), Evaluation)
    assert isinstance(Raising(), Evaluation)
    assert not isinstance(object(), Evaluation)


def test_suite_run_async(tmp_path):
    import asyncio

    class AsyncOnly:
        id = "async"
        capability = "c"
        metric = "m"

        def run(self, model, context):  # pragma: no cover - run_async is preferred
            raise AssertionError("run_async should have been used")

        async def run_async(self, model, context):
            await asyncio.sleep(0)
            return Probe("async", "c", "m", lambda m, c: 0.4).run(model, context)

    results = asyncio.run(Suite([AsyncOnly(), Raising()]).run_async(None, ctx(tmp_path)))
    assert [(r.evaluation_id, r.status) for r in results] == [
        ("async", "success"),
        ("raising", "failed"),
    ]


def test_suite_restores_modes_and_rng_of_a_real_torch_module(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(4)
    )
    model.train()
    model[2].eval()  # frozen batch-norm
    modes_inside = []

    def probe(m, c):
        modes_inside.append([x.training for x in m.modules()])
        random.random()
        torch.rand(3)
        raise RuntimeError("after consuming randomness")

    random.seed(5)
    torch.manual_seed(5)
    expected_py, expected_torch = random.random(), torch.rand(1)
    random.seed(5)
    torch.manual_seed(5)
    [r] = Suite([Probe("p", "c", "m", probe)]).run(model, ctx(tmp_path))
    assert r.status == "failed"
    assert modes_inside == [[False, False, False, False]]
    assert [x.training for x in model.modules()] == [True, True, True, False]
    assert random.random() == expected_py
    assert torch.equal(torch.rand(1), expected_torch)


def test_isolated_leaves_non_modules_alone():
    with isolated(object()), isolated(None):
        pass


# --- boundaries ------------------------------------------------------------------------


def test_importing_evals_does_not_import_torch_or_inspect():
    code = (
        "import sys, scalegate.evals as e\n"
        "heavy = [m for m in ('torch', 'inspect_ai') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert 'TorchModelAPI' in e.__all__\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_network_tripwire_catches_attempts(no_network):
    with pytest.raises(OSError, match="network access attempted"):
        socket.create_connection(("example.org", 80), timeout=1)
    assert no_network == [("getaddrinfo", "example.org")]
    no_network.clear()  # this attempt was the point of the test
