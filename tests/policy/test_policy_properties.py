"""Property tests: random and mutated policy documents only ever yield a Policy or a
PolicyError whose every problem has a file:line:column location (never a crash)."""

from __future__ import annotations

import copy
import functools
import re
from datetime import date
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalegate.errors import PolicyError
from scalegate.policy import Policy, bundled_policies, bundled_text, parse_policy

LOCATED = re.compile(r"^src\.yaml:\d+:\d+(: .+)?$")
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELDS = [
    "id",
    "version",
    "kind",
    "compute",
    "regimes",
    "include",
    "effective",
    "regime",
    "multiplier",
    "source",
    "thresholds",
    "flop",
    "basis",
    "action",
    "recipient",
    "deadline",
    "window",
    "start",
    "end",
    "duration",
    "evaluation",
    "every",
    "max_interval",
    "first_at",
    "on_missing",
    "capabilities",
    "levels",
    "evaluations",
    "metric",
    "alert",
    "trigger",
    "requires",
    "on_reach",
    "safeguards",
    "attested_by",
    "max_age",
    "governance",
    "roles",
    "resumption",
    "quorum",
    "any_of",
    "all_of",
    "count",
    "policy_change",
    "disclosure",
    "training",
    "pretraining",
]
UNITS = [
    "1e25",
    "70B",
    "14d",
    "6mo",
    "4x",
    "0.5x",
    "-1",
    "1e400",
    "nan",
    ".inf",
    "2023-03-29",
    "2023-02-30",
    "pause",
    "notify",
    "reached",
    "planned",
    "rso",
    "",
    "~",
    "yes",
    "on",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(UNITS),
    st.text(max_size=12),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1)),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(min_size=1, max_size=8))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=6)
    ),
    max_leaves=40,
)


def outcome(text: str) -> Policy | PolicyError:
    try:
        return parse_policy(text, source="src.yaml")
    except PolicyError as exc:
        assert exc.problems, "a PolicyError must list problems"
        for where, what in exc.problems:
            assert LOCATED.match(where), where
            assert what, "every problem says what is wrong"
        return exc


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from(FIELDS), documents, max_size=8))
def test_random_documents(doc: dict[str, Any]) -> None:
    outcome(_dump(doc))


@SETTINGS
@given(
    text=st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"%@`#,? \n\t1e5xd.")), max_size=80)
)
def test_random_yaml_like_text(text: str) -> None:
    outcome(text)


def _mutate_text(text: str, data: st.DataObject) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "replace"]))
        i = data.draw(st.integers(0, len(lines) - 1))
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            line = lines[i]
            pos = data.draw(st.integers(0, len(line)))
            junk = data.draw(
                st.text(
                    alphabet=st.sampled_from(list(":-[]{}&*!|>'\"#, \t\nxq0")),
                    min_size=1,
                    max_size=4,
                )
            )
            cut = pos + (data.draw(st.integers(0, 3)) if op == "replace" else 0)
            lines[i] = line[:pos] + junk + line[cut:]
    return "".join(lines)


@SETTINGS
@given(name=st.sampled_from(bundled_policies()), data=st.data())
def test_mutated_bundled_text(name: str, data: st.DataObject) -> None:
    outcome(_mutate_text(bundled_text(name), data))


@functools.cache
def _bundled_data(name: str) -> Any:
    return yaml.load(bundled_text(name), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=True)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@SETTINGS
@given(name=st.sampled_from(bundled_policies()), data=st.data())
def test_mutated_bundled_data(name: str, data: st.DataObject) -> None:
    doc = copy.deepcopy(_bundled_data(name))
    path = data.draw(st.sampled_from([p for p in _paths(doc) if p]))
    parent = _parent(doc, path)
    op = data.draw(st.sampled_from(["replace", "delete", "unknown-key"]))
    if op == "replace":
        parent[path[-1]] = data.draw(documents)
    elif op == "delete":
        del parent[path[-1]]
    else:
        target = parent if isinstance(parent, dict) else None
        if target is None:
            return
        key = data.draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=10))
        if key in target:
            return
        target[key] = data.draw(scalars)
        result = outcome(_dump(doc))
        # A typo is never silently ignored.
        assert isinstance(result, PolicyError)
        # Either an unknown key, or (in a mapping of names, e.g. regimes) a problem located
        # at that key: never silently accepted.
        assert any(
            f"unknown key {key!r}" in what or where.endswith(key)
            for where, what in result.problems
        ), result.problems
        return
    outcome(_dump(doc))
