"""The Inspect AI backend, for real: a trained torch model answers Inspect tasks in-process."""

from __future__ import annotations

import asyncio
import copy
import hashlib
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
inspect_ai = pytest.importorskip("inspect_ai")

from inspect_ai import Task  # noqa: E402
from inspect_ai.dataset import MemoryDataset, Sample, json_dataset  # noqa: E402
from inspect_ai.log import read_eval_log  # noqa: E402
from inspect_ai.model import GenerateConfig, get_model  # noqa: E402
from inspect_ai.scorer import CORRECT, Score, exact, includes, match, scorer  # noqa: E402
from inspect_ai.scorer import accuracy as accuracy_metric  # noqa: E402
from inspect_ai.solver import Generate, TaskState, generate, solver  # noqa: E402

from scalegate.evals import (  # noqa: E402
    EvalContext,
    InspectEvaluation,
    Probe,
    Suite,
    TorchModelAPI,
    local_torch_model,
)

pytestmark = pytest.mark.filterwarnings(
    # raised inside inspect_ai's retry set-up (tenacity), not by scalegate
    "ignore:The 'initial' parameter is deprecated:DeprecationWarning"
)

DATA = Path(__file__).parent / "data" / "addition.json"
ALL_SUMS = [(a, b) for a in range(10) for b in range(10)]


def ctx(tmp_path: Path, **kw: object) -> EvalContext:
    base: dict[str, object] = {
        "run_id": "run-1",
        "step": 100,
        "effective_flop": 3.5e12,
        "checkpoint": "ab" * 32,
        "log_dir": tmp_path / "logs",
        "seed": 7,
    }
    base.update(kw)
    return EvalContext.model_validate(base)


def addition_task(samples: list[tuple[int, int]], scorer_fn=match) -> Task:
    return Task(
        dataset=MemoryDataset(
            [Sample(input=f"{a}+{b}=", target=str(a + b), id=f"{a}{b}") for a, b in samples]
        ),
        solver=generate(),
        scorer=scorer_fn(),
    )


def evaluation(char_model, task, **kw) -> InspectEvaluation:
    return InspectEvaluation(
        kw.pop("id", "arith"),
        "arithmetic",
        "accuracy",
        task,
        encode=char_model.encode,
        decode=char_model.decode,
        max_new_tokens=3,
        stop_seqs=["\n"],
        **kw,
    )


def only_log(context: EvalContext) -> Path:
    (path,) = [p for p in Path(context.log_dir).iterdir() if p.suffix == ".json"]
    return path


def check(kind: str, output: str, target: str) -> bool:
    """The scorers' rules, restated for digit strings (case and punctuation are moot)."""
    if kind == "match":
        return output.strip().endswith(target.strip())
    if kind == "exact":
        return output.strip() == target.strip()
    return target in output  # includes


def test_memory_dataset_accuracy_equals_independent_greedy_decoding(char_model, tmp_path):
    context = ctx(tmp_path)
    [result] = evaluation(char_model, addition_task(ALL_SUMS)).run(char_model.module, context)

    expected = {
        f"{a}{b}": check("match", char_model.greedy(f"{a}+{b}="), str(a + b)) for a, b in ALL_SUMS
    }
    independent = sum(expected.values()) / len(expected)
    assert 0.0 < independent < 1.0, "the fixture model should get some but not all sums right"
    assert result.status == "success", result.error
    assert result.value == pytest.approx(independent)
    assert result.n == len(ALL_SUMS)
    # Inspect's stderr metric for a mean of 0/1 scores (sample std / sqrt(n)).
    p = independent
    assert result.stderr == pytest.approx(
        (p * (1 - p) * len(ALL_SUMS) / (len(ALL_SUMS) - 1)) ** 0.5 / len(ALL_SUMS) ** 0.5
    )
    assert result.harness == f"inspect-ai {inspect_ai.__version__}"
    assert result.elicitation == "greedy, max_new_tokens=3"
    assert result.checkpoint == "ab" * 32
    assert (result.evaluation_id, result.capability, result.metric) == (
        "arith",
        "arithmetic",
        "accuracy",
    )

    # The digest is the SHA-256 of the log file Inspect wrote, which holds every sample.
    path = only_log(context)
    assert result.log_digest == hashlib.sha256(path.read_bytes()).hexdigest()
    log = read_eval_log(str(path))
    assert log.status == "success"
    assert log.eval.metadata["scalegate"]["run_id"] == "run-1"
    assert log.eval.metadata["scalegate"]["checkpoint"] == "ab" * 32
    per_sample = {s.id: s.scores["match"].value == CORRECT for s in log.samples}
    assert per_sample == expected
    # Token usage comes from encode() lengths, never from a downloaded tokenizer.
    usage = next(iter(log.stats.model_usage.values()))
    assert usage.input_tokens == sum(len(f"{a}+{b}=") for a, b in ALL_SUMS)
    assert 0 < usage.output_tokens <= 3 * len(ALL_SUMS)


@pytest.mark.parametrize("kind", ["exact", "includes", "match"])
def test_json_dataset_with_each_scorer(char_model, tmp_path, kind):
    scorers = {"exact": exact, "includes": includes, "match": match}
    task = Task(dataset=json_dataset(str(DATA)), solver=generate(), scorer=scorers[kind]())
    metric = "mean" if kind == "exact" else "accuracy"  # exact() reports a mean
    ev = evaluation(char_model, task, scorer_metric=metric)
    [result] = ev.run(char_model.module, ctx(tmp_path))

    import json

    records = json.loads(DATA.read_text())
    hits = [check(kind, char_model.greedy(r["input"]), r["target"]) for r in records]
    assert result.status == "success", result.error
    assert result.n == len(records)
    assert result.value == pytest.approx(sum(hits) / len(hits))
    assert result.value < 1.0  # the file holds deliberately wrong targets


def test_get_model_answers_with_the_current_weights(char_model):
    module = copy.deepcopy(char_model.module)
    model = get_model(
        "scalegate/tiny",
        memoize=False,
        module=module,
        encode=char_model.encode,
        decode=char_model.decode,
        max_new_tokens=3,
        stop_seqs=["\n"],
    )
    assert isinstance(model.api, TorchModelAPI)

    async def ask() -> str:
        out = await model.generate("3+4=")
        assert out.usage is not None and out.usage.input_tokens == 4
        return out.completion

    before = asyncio.run(ask())
    assert before == char_model.greedy("3+4=")
    with torch.no_grad():  # "train" the module in place: now it can only say 9
        module.head.bias.fill_(-1e4)
        module.head.bias[char_model.encode("9")[0]] = 1e4
    assert asyncio.run(ask()) == "999"
    assert before != "999"


def test_custom_generate_fn_and_module_mode_restored(char_model, tmp_path):
    seen: list[tuple[bool, list[int], int]] = []

    def always_seven(module, prompt_ids, max_new_tokens):
        seen.append((module.training, list(prompt_ids), max_new_tokens))
        return char_model.encode("7\n")

    samples = [(3, 4), (1, 1), (5, 2), (9, 9)]
    ev = InspectEvaluation(
        "sevens",
        "arithmetic",
        "accuracy",
        lambda: addition_task(samples),  # a task factory, called per run
        encode=char_model.encode,
        decode=char_model.decode,
        generate_fn=always_seven,
        stop_seqs=["\n"],
        max_new_tokens=5,
    )
    module = char_model.module
    module.train()
    [result] = ev.run(module, ctx(tmp_path))
    assert result.status == "success", result.error
    assert result.value == pytest.approx(2 / 4)  # 3+4 and 5+2
    assert result.elicitation == "custom generate_fn, max_new_tokens=5"
    assert len(seen) == 4 and all(not training for training, _, _ in seen)
    assert all(budget == 5 for _, _, budget in seen)
    assert module.training  # back in train mode after the evaluation


def test_sampling_is_seeded_and_leaves_global_rng_alone(char_model, tmp_path):
    task = addition_task(ALL_SUMS[:30])
    ev = evaluation(char_model, task, eval_options={"temperature": 1.5})
    assert ev.elicitation.startswith("temperature=1.5")
    state = torch.random.get_rng_state()
    first = ev.run(char_model.module, ctx(tmp_path / "a", seed=11))[0]
    second = ev.run(char_model.module, ctx(tmp_path / "b", seed=11))[0]
    assert torch.equal(state, torch.random.get_rng_state())
    assert first.status == second.status == "success"
    assert first.value == second.value


@solver
def exploding_solver():
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        raise RuntimeError("solver exploded on purpose")

    return solve


@scorer(metrics=[accuracy_metric()])
def exploding_scorer():
    async def score(state: TaskState, target) -> Score:
        raise ValueError("scorer exploded on purpose")

    return score


@pytest.mark.parametrize(
    ("solver_fn", "scorer_fn", "message"),
    [
        (exploding_solver, match, "solver exploded on purpose"),
        (generate, exploding_scorer, "scorer exploded on purpose"),
    ],
)
def test_task_that_raises_is_a_failed_result(char_model, tmp_path, solver_fn, scorer_fn, message):
    task = Task(
        dataset=MemoryDataset([Sample(input="1+2=", target="3")]),
        solver=solver_fn(),
        scorer=scorer_fn(),
    )
    context = ctx(tmp_path)
    [result] = evaluation(char_model, task).run(char_model.module, context)
    assert result.status == "failed"
    assert result.value is None
    assert message in result.error
    assert "status is 'error'" in result.error
    path = only_log(context)
    assert result.log_digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_eval_log(str(path), header_only=True).status == "error"


def test_missing_metric_and_score_name_fail_clearly(char_model, tmp_path):
    task = addition_task(ALL_SUMS[:5])
    [r1] = evaluation(char_model, task, scorer_metric="f1").run(
        char_model.module, ctx(tmp_path / "a")
    )
    assert r1.status == "failed" and "no metric 'f1'" in r1.error and "accuracy" in r1.error
    [r2] = evaluation(char_model, task, score_name="nope").run(
        char_model.module, ctx(tmp_path / "b")
    )
    assert r2.status == "failed" and "no score named 'nope'" in r2.error


def test_unusable_inputs_are_failed_results_not_crashes(char_model, tmp_path):
    task = addition_task(ALL_SUMS[:3])
    no_codec = InspectEvaluation("x", "arithmetic", "accuracy", task)
    [r] = no_codec.run(char_model.module, ctx(tmp_path / "a"))
    assert r.status == "failed" and "no encode/decode" in r.error

    sandboxed = Task(dataset=MemoryDataset([Sample(input="1+1=", target="2")]), sandbox="docker")
    [r] = evaluation(char_model, sandboxed).run(char_model.module, ctx(tmp_path / "b"))
    assert r.status == "failed" and "sandbox" in r.error

    [r] = evaluation(char_model, lambda: "not a task").run(char_model.module, ctx(tmp_path / "c"))
    assert r.status == "failed" and "not an inspect_ai Task" in r.error


def test_runs_inside_a_running_event_loop(char_model, tmp_path):
    ev = evaluation(char_model, addition_task(ALL_SUMS[:20]))

    async def main():
        awaited = await ev.run_async(char_model.module, ctx(tmp_path / "a"))
        blocking = ev.run(char_model.module, ctx(tmp_path / "b"))  # worker-thread path
        suite = await Suite([ev]).run_async(char_model.module, ctx(tmp_path / "c"))
        return awaited[0], blocking[0], suite[0]

    results = asyncio.run(main())
    assert all(r.status == "success" for r in results), [r.error for r in results]
    assert len({r.value for r in results}) == 1


def test_suite_mixes_backends_and_restores_training_state(char_model, tmp_path):
    module = char_model.module
    module.train()
    module.drop.eval()  # a submodule deliberately left in eval mode must stay so

    class Broken:
        id = "broken"
        capability = "arithmetic"
        metric = "accuracy"

        def run(self, model, context):
            raise KeyError("no such benchmark")

    def drift(model, context):
        torch.rand(10)  # draws from the global RNG: the suite must undo it
        return 0.25, 0.01, 8

    suite = Suite(
        [
            evaluation(char_model, addition_task(ALL_SUMS[:10])),
            Probe("drift", "misc", "score", drift),
            Broken(),
        ]
    )
    state = torch.random.get_rng_state()
    results = suite.run(module, ctx(tmp_path))
    assert [r.evaluation_id for r in results] == ["arith", "drift", "broken"]
    assert [r.status for r in results] == ["success", "success", "failed"]
    assert "KeyError" in results[2].error and results[2].value is None
    assert module.training and module.gru.training and not module.drop.training
    assert torch.equal(state, torch.random.get_rng_state())
    module.train()


def test_local_torch_model_is_never_memoized(char_model):
    a = local_torch_model(char_model.module, char_model.encode, char_model.decode, name="m")
    b = local_torch_model(
        copy.deepcopy(char_model.module), char_model.encode, char_model.decode, name="m"
    )
    assert a is not b and a.api.module is not b.api.module
    assert str(a) == "scalegate/m"
    assert a.api.max_tokens() == 32
    c = local_torch_model(
        char_model.module, char_model.encode, char_model.decode, config=GenerateConfig(max_tokens=2)
    )
    assert c.config.max_tokens == 2


def test_a_ready_inspect_model_can_be_evaluated(char_model, tmp_path):
    model = local_torch_model(
        char_model.module, char_model.encode, char_model.decode, max_new_tokens=3, stop_seqs=["\n"]
    )
    task = addition_task(ALL_SUMS[:6])
    ev = InspectEvaluation("ready", "arithmetic", "accuracy", task)  # no encode/decode needed
    [r] = ev.run(model, ctx(tmp_path))
    hits = [char_model.greedy(f"{a}+{b}=").endswith(str(a + b)) for a, b in ALL_SUMS[:6]]
    assert r.status == "success", r.error
    assert r.value == pytest.approx(sum(hits) / 6)
    [bad] = ev.run("not a model", ctx(tmp_path / "x"))
    assert bad.status == "failed" and "expected a torch.nn.Module" in bad.error
