"""The README's integration sections show the examples verbatim, so the code a reader
copies is the code the other tests run."""

from __future__ import annotations

import re

import pytest

from .conftest import EXAMPLES, REPO

SECTIONS = {
    "## Hugging Face Trainer": "hf_trainer.py",
    "## PyTorch Lightning": "lightning_fit.py",
    "## torch.distributed": "distributed_loop.py",
}


def _section(title: str) -> str:
    for name in ("README.md", "README-integrations.md"):
        path = REPO / name
        text = path.read_text() if path.is_file() else ""
        if title in text:
            rest = text.split(title, 1)[1]
            return re.split(r"\n## ", rest, maxsplit=1)[0]
    raise AssertionError(f"no README has the section {title!r}")


@pytest.mark.parametrize(("title", "example"), SECTIONS.items())
def test_section_shows_its_example_verbatim(title: str, example: str) -> None:
    code = re.search(r"```python\n(.*?)```", _section(title), re.S)
    assert code is not None, f"{title} has no python block"
    assert code.group(1) == (EXAMPLES / example).read_text()


def test_trackers_section_names_every_reported_figure() -> None:
    from scalegate.integrations.trackers import Report

    text = _section("## Experiment trackers")
    report = Report(run_id="r", step=1, flop=1.0, effective_flop=1.0, totals={"eu": 1.0},
                    next_eval_flop=2.0, verdict="pause", scores={"e/accuracy": 0.5})
    for name in report.metrics():
        short = name.removeprefix("scalegate/").split("/")[0]
        assert f"`{short}" in text, name
