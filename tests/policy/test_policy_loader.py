"""The YAML loader: every error names file, line, column and field; units; digest stability."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from scalegate.errors import PolicyError
from scalegate.policy import (
    Policy,
    bundled_text,
    load_policy,
    load_policy_file,
    parse_policy,
    policy_from_data,
)

MINIMAL = """\
id: tiny
version: "1"
compute:
  regimes:
    training:
      include: [pretraining, fine-tuning]
  effective:
    regime: training
    source: test
  thresholds:
    - id: line
      regime: training
      flop: 1e25
      action: notify
      recipient: regulator
      deadline: 14d
governance:
  roles: [rso, board]
  resumption:
    quorum: [rso, {any_of: [board]}]
  policy_change: [board]
"""


def problems(text: str, source: str = "p.yaml") -> list[tuple[str, str]]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source=source)
    assert info.value.problems, "a PolicyError must list its problems"
    return info.value.problems


def only(text: str) -> tuple[str, str]:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def test_minimal_policy_loads_with_units_normalised() -> None:
    p = parse_policy(MINIMAL)
    t = p.compute.thresholds[0]
    assert t.flop == 1e25 and t.deadline == timedelta(days=14)
    assert t.basis == "reached" and p.kind == "custom"
    assert p.governance.resumption.quorum[0].any_of == ["rso"]
    assert p.compute.effective.multiplier == 1.0
    assert p.compute.regimes["training"].exclude[:2] == ["rl", "synthetic-data"]


def test_unknown_key_is_an_error_with_suggestion_and_position() -> None:
    where, what = only(
        MINIMAL.replace("      flop: 1e25\n", "      flop: 1e25\n      flops: 2e25\n")
    )
    assert where == "p.yaml:14:7: compute.thresholds[0].flops"
    assert "unknown key 'flops'" in what and "did you mean 'flop'" in what
    assert "expected one of:" in what and "recipient" in what


def test_typo_at_top_level_is_caught() -> None:
    where, what = only(MINIMAL + "evalution:\n  every: 4x\n")
    assert where.startswith("p.yaml:22:1: evalution")
    assert "did you mean 'evaluation'" in what


def test_missing_key_points_at_the_enclosing_mapping() -> None:
    where, what = only(MINIMAL.replace("      flop: 1e25\n", ""))
    assert where == "p.yaml:11:7: compute.thresholds[0].flop"
    assert what == "missing required key 'flop'"


@pytest.mark.parametrize(
    ("old", "new", "field", "expect"),
    [
        (
            "flop: 1e25",
            "flop: lots",
            "compute.thresholds[0].flop",
            "expected a number such as 1e25",
        ),
        (
            "flop: 1e25",
            "flop: -1e25",
            "compute.thresholds[0].flop",
            "expected a number such as 1e25",
        ),
        ("deadline: 14d", "deadline: 14", "compute.thresholds[0].deadline", "expected a duration"),
        ("deadline: 14d", "deadline: 2 weeks", "compute.thresholds[0].deadline", "got '2 weeks'"),
        (
            "action: notify",
            "action: stop",
            "compute.thresholds[0].action",
            "'notify', 'evaluate' or 'pause'",
        ),
        ('version: "1"', "version: 1.10", "version", "quote it"),
        (
            "[pretraining, fine-tuning]",
            "[pretraining, finetuning]",
            "compute.regimes.training.include[1]",
            "'fine-tuning'",
        ),
    ],
)
def test_bad_values_name_field_and_expectation(old: str, new: str, field: str, expect: str) -> None:
    where, what = only(MINIMAL.replace(old, new))
    assert re.fullmatch(rf"p\.yaml:\d+:\d+: {re.escape(field)}", where), where
    assert expect in what, what


def test_every_problem_is_listed_at_once_in_line_order() -> None:
    text = MINIMAL.replace("flop: 1e25", "flop: x").replace("deadline: 14d", "deadline: soon")
    text = text.replace("    source: test\n", "    source: test\n    sauce: 1\n")
    found = problems(text)
    lines = [int(w.split(":")[1]) for w, _ in found]
    assert len(found) == 3 and lines == sorted(lines)


def test_duplicate_keys_are_errors_not_last_wins() -> None:
    where, what = only(
        MINIMAL.replace("      deadline: 14d\n", "      deadline: 14d\n      deadline: 7d\n")
    )
    assert where == "p.yaml:17:7: compute.thresholds[0].deadline"
    assert "duplicate key 'deadline' (first at line 16)" in what


def test_non_text_keys_are_errors() -> None:
    where, what = only(MINIMAL + "on: true\n")
    assert where.startswith("p.yaml:22:1")
    assert "read as bool" in what and "quote it" in what


def test_cross_references_are_located() -> None:
    text = MINIMAL.replace("    regime: training\n    source", "    regime: train\n    source")
    text = text.replace("quorum: [rso, {any_of: [board]}]", "quorum: [rso, {any_of: [bored]}]")
    found = dict(problems(text))
    assert (
        "unknown regime 'train'; defined: training"
        in found["p.yaml:8:13: compute.effective.regime"]
    )
    assert (
        "'bored' is not in governance.roles"
        in found["p.yaml:20:29: governance.resumption.quorum[1].any_of[0]"]
    )


def test_level_requiring_an_undefined_safeguard() -> None:
    text = MINIMAL + (
        "capabilities:\n  - id: cyber\n    levels:\n      - id: l1\n        evaluations:\n"
        "          - {evaluation: ctf, metric: acc, trigger: 0.5}\n        requires: [sl3]\n"
    )
    where, what = only(text)
    assert where == "p.yaml:28:20: capabilities[0].levels[0].requires[0]"
    assert "unknown safeguard 'sl3'" in what


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("", "the policy is empty"),
        ("- a\n- b\n", "must be a mapping"),
        ("id: [\n", "invalid YAML"),
        ("id: x\n  bad: indent\n", "invalid YAML"),
        ("a: &x 1\nb: *y\n", "invalid YAML"),
        ("base: &b {id: x}\nother:\n  <<: *b\n", "merge keys"),
        ("id: !custom x\n", "invalid YAML"),
        ("when: 2023-02-30\n", "cannot read this value"),
        ("x: &a [*a]\n", "nests deeper"),
        ("id: x\n---\nid: y\n", "invalid YAML"),
        ("id: \x07\n", "invalid character"),
    ],
)
def test_malformed_documents_are_located(text: str, expect: str) -> None:
    found = problems(text)
    assert any(expect in what for _, what in found), found
    assert all(re.match(r"p\.yaml:\d+:\d+", where) for where, _ in found), found


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    _, what = problems("\n".join(lines) + "\n")[0]
    assert "more than" in what


def test_window_duration_and_end_are_equivalent() -> None:
    def with_window(spec: str) -> Policy:
        return parse_policy(
            MINIMAL.replace("      deadline: 14d\n", f"      deadline: 14d\n      window: {spec}\n")
        )

    a = with_window("{start: 2026-01-01, duration: 10d}")
    b = with_window("{start: 2026-01-01T00:00:00Z, end: 2026-01-11}")
    window = a.compute.thresholds[0].window
    assert window is not None and window.end == datetime(2026, 1, 11, tzinfo=UTC)
    assert a.digest() == b.digest()
    _, what = only(
        MINIMAL.replace(
            "      deadline: 14d\n", "      deadline: 14d\n      window: {start: 2026-01-01}\n"
        )
    )
    assert "needs an end or a duration" in what


def test_digest_is_stable_across_formatting_key_order_and_spelling() -> None:
    data = yaml.safe_load(MINIMAL)
    reordered = dict(reversed(list(data.items())))
    reordered["compute"]["thresholds"][0]["flop"] = "10000000000000000000000000"
    reordered["compute"]["thresholds"][0]["deadline"] = "2w"
    text = "# a comment\n" + yaml.safe_dump(reordered, default_flow_style=True, width=40)
    base = parse_policy(MINIMAL)
    assert parse_policy(text).digest() == base.digest()
    assert re.fullmatch(r"[0-9a-f]{64}", base.digest())
    # Spelling out a default does not change the digest; changing a value does.
    explicit = MINIMAL.replace(
        "      action: notify\n", "      action: notify\n      basis: reached\n"
    )
    assert parse_policy(explicit).digest() == base.digest()
    assert parse_policy(MINIMAL.replace("14d", "15d")).digest() != base.digest()


def test_policy_from_data_names_paths_without_lines() -> None:
    data = yaml.safe_load(MINIMAL)
    data["compute"]["thresholds"][0]["flop"] = "x"
    with pytest.raises(PolicyError) as info:
        policy_from_data(data, source="inline")
    assert info.value.problems[0][0] == "inline: compute.thresholds[0].flop"


def test_files_errors_and_bundled_names(tmp_path: Path) -> None:
    good = tmp_path / "mine.yaml"
    good.write_text(MINIMAL, encoding="utf-8")
    assert load_policy(good).id == "tiny"
    assert load_policy(str(good)).id == "tiny"
    assert load_policy_file(good).digest() == parse_policy(MINIMAL).digest()
    with pytest.raises(PolicyError, match="no policy file"):
        load_policy(tmp_path / "absent.yaml")
    with pytest.raises(PolicyError, match="is a directory"):
        load_policy_file(tmp_path)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(MINIMAL.encode() + b"title: caf\xe9\n")
    with pytest.raises(PolicyError) as info:
        load_policy(latin)
    assert info.value.problems[0][0] == f"{latin}:22:11"
    with pytest.raises(PolicyError, match="no bundled policy named 'rsp'") as info:
        load_policy("rsp")
    assert "anthropic-rsp-2.2" in str(info.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("flop: 1e25", "flop: big"), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(bad)
    assert info.value.problems[0][0] == f"{bad}:13:13: compute.thresholds[0].flop"


def test_bundled_text_round_trips() -> None:
    assert parse_policy(bundled_text("demo")).digest() == load_policy("demo").digest()


LEVEL = (
    "capabilities:\n  - id: cyber\n    levels:\n      - id: l1\n        evaluations:\n"
    "          - {evaluation: ctf, metric: acc, alert: 0.2, trigger: 0.5}\n"
)
SAFEGUARD = "safeguards:\n  - {id: sl3, kind: security, attested_by: [rso]}\n"


def test_a_level_with_a_trigger_must_say_what_reaching_it_means() -> None:
    where, what = only(MINIMAL + LEVEL)
    assert where == "p.yaml:25:9: capabilities[0].levels[0]"
    assert "level l1 has a trigger but does not say what reaching it means" in what
    assert "requires:" in what and "on_reach: pause" in what and "on_reach: continue" in what
    for said in ("        requires: [sl3]\n", "        on_reach: pause\n",
                 "        on_reach: continue\n"):
        level = parse_policy(MINIMAL + LEVEL + said + SAFEGUARD).capabilities[0].levels[0]
        assert level.requires or level.on_reach
    # A level that can only be alerted is never reached: nothing to say.
    parse_policy(MINIMAL + LEVEL.replace(", trigger: 0.5", ""))


def test_on_reach_beside_requires_is_a_contradiction() -> None:
    text = MINIMAL + LEVEL + "        requires: [sl3]\n        on_reach: continue\n" + SAFEGUARD
    where, what = only(text)
    assert where == "p.yaml:29:19: capabilities[0].levels[0].on_reach"
    assert "on_reach: continue contradicts requires" in what and "keep one of them" in what
    _, what = only(MINIMAL + LEVEL + "        on_reach: stop\n")
    assert "expected one of 'pause' or 'continue'" in what


def test_schema_and_reference_problems_are_reported_in_one_pass() -> None:
    """A reference problem is not held back until unrelated schema problems are fixed."""
    text = MINIMAL.replace("flop: 1e25", "flop: lots") + LEVEL + (
        "        requires: [sl4]\n"  # no such safeguard
        "safeguards:\n  - {id: sl3, kind: securty, attested_by: [cso]}\n"  # bad kind; no role
    )
    found = dict(problems(text))
    assert "expected a number" in found["p.yaml:13:13: compute.thresholds[0].flop"]
    assert "unknown safeguard 'sl4'; defined: sl3" in found[
        "p.yaml:28:20: capabilities[0].levels[0].requires[0]"]
    assert "expected one of 'security'" in found["p.yaml:30:21: safeguards[0].kind"]
    assert "role 'cso' is not in governance.roles (rso, board)" in found[
        "p.yaml:30:44: safeguards[0].attested_by[0]"]
    assert len(found) == 4


def test_references_an_invalid_section_leaves_unknown_are_not_guessed() -> None:
    # governance.roles is no list of names: which roles exist is unknown, so no role is
    # reported as undefined; the schema problem is.
    where, what = only(MINIMAL.replace("roles: [rso, board]", "roles: rso"))
    assert where.endswith("governance.roles") and "expected a list" in what
    # A value with a schema problem is not reported again as a reference problem.
    found = problems(MINIMAL.replace("[rso, {any_of: [board]}]", "[rso, {any_of: [Board]}]"))
    assert len(found) == 1 and "Board" in found[0][1]
