"""Who must approve: quorum forms in the schema, and the one reading every reader shares."""

from __future__ import annotations

import pytest
import yaml

from scalegate.errors import PolicyError
from scalegate.policy import (
    QuorumClause,
    bundled_policies,
    bundled_text,
    describe_quorum,
    load_policy,
    parse_policy,
    quorum_roles,
    seat_quorum,
)

DEMO = bundled_text("demo")
QUORUM = "    quorum: {all_of: [rso, {any_of: [board]}]}\n"
CHANGE = "  policy_change: {any_of: [rso, board]}\n"


def _with(quorum: str = QUORUM, change: str = CHANGE) -> str:
    assert QUORUM in DEMO and CHANGE in DEMO
    return DEMO.replace(QUORUM, quorum).replace(CHANGE, change)


def _problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    return info.value.problems


@pytest.mark.parametrize("form", [
    "{all_of: [rso, {any_of: [board]}]}",
    "{all_of: [rso, board]}",
    "[rso, board]",  # a plain list: every item is needed
    "[{any_of: [rso]}, {any_of: [board], count: 1}]",
])
def test_every_way_of_writing_all_of_reads_the_same(form: str) -> None:
    p = parse_policy(_with(quorum=f"    quorum: {form}\n"))
    clauses = p.governance.resumption.quorum
    assert [(c.any_of, c.count) for c in clauses] == [(["rso"], 1), (["board"], 1)]
    assert p.digest() == load_policy("demo").digest()  # the meaning, not the spelling


@pytest.mark.parametrize(("form", "expect"), [
    ("{any_of: [rso, board]}", [(["rso", "board"], 1)]),
    ("{any_of: [board], count: 2}", [(["board"], 2)]),
    ("rso", [(["rso"], 1)]),
])
def test_any_of_is_one_clause(form: str, expect: list[tuple[list[str], int]]) -> None:
    p = parse_policy(_with(quorum=f"    quorum: {form}\n"))
    assert [(c.any_of, c.count) for c in p.governance.resumption.quorum] == expect


@pytest.mark.parametrize("form", ["[rso, board]", "{all_of: [rso, board]}",
                                  "{any_of: [board], count: 2}"])
def test_a_policy_change_needing_several_approvals_is_refused(form: str) -> None:
    """A policy is published by one approver's signature: a change quorum of more would be
    met by the first alone, so the policy says whose one approval it takes."""
    ((where, what),) = _problems(_with(change=f"  policy_change: {form}\n"))
    assert where.startswith("p.yaml:") and where.endswith(": governance.policy_change")
    assert "a policy is published by one approver's signature" in what
    assert "write policy_change: {any_of: [" in what


def test_quorum_problems_are_located_where_written() -> None:
    found = dict(_problems(_with(quorum="    quorum: {all_of: [rso, {any_of: [bored]}]}\n")))
    (where,) = found
    assert where.endswith(": governance.resumption.quorum.all_of[1].any_of[0]")
    assert "role 'bored' is not in governance.roles" in found[where]
    found = dict(_problems(_with(quorum="    quorum: {all_of: [rso, board], count: 2}\n")))
    (where,) = found
    assert where.endswith(": governance.resumption.quorum.count")
    assert "put the count on a clause" in found[where]
    found = dict(_problems(_with(quorum="    quorum: {any_of: [rso], count: many}\n")))
    (where,) = found
    assert where.endswith(": governance.resumption.quorum.count")
    assert "expected a whole number" in found[where]
    (where, what), = _problems(_with(quorum="    quorum: 2\n"))
    assert "{all_of: [rso, board]} (each of them)" in what


def test_describe_says_all_of_and_any_of_apart() -> None:
    def clauses(form: str) -> list[QuorumClause]:
        return list(parse_policy(_with(quorum=f"    quorum: {form}\n"))
                    .governance.resumption.quorum)

    assert describe_quorum(clauses("{all_of: [rso, board]}")) == "rso and board"
    assert describe_quorum(clauses("{any_of: [rso, board]}")) == "one of rso, board"
    assert describe_quorum(clauses("{all_of: [rso, {any_of: [board, ceo], count: 2}]}")) == (
        "rso and 2 of (board, ceo)")
    assert quorum_roles(clauses("{all_of: [rso, {any_of: [board, rso]}]}")) == ["rso", "board"]


def test_seating_needs_distinct_keys_for_every_clause() -> None:
    clauses = [QuorumClause(any_of=["rso", "board"]), QuorumClause(any_of=["rso"])]
    # Greedily, alice would take the first seat as rso and leave bob (board) no seat.
    seating = seat_quorum(clauses, {"alice": {"rso"}, "bob": {"board"}})
    assert seating.met and sorted(seating.seated) == [(0, "bob", "board"), (1, "alice", "rso")]
    seating = seat_quorum(clauses, {"alice": {"rso", "board"}})
    assert not seating.met and seating.short == [(clauses[1], 1)]
    assert seat_quorum([QuorumClause(any_of=["rso", "board"])], {"bob": {"board"}}).met


@pytest.mark.parametrize("name", sorted(bundled_policies()))
def test_bundled_policies_say_all_of_or_any_of(name: str) -> None:
    """Every bundled policy writes its quorum and policy_change in an explicit form."""
    governance = yaml.safe_load(bundled_text(name))["governance"]
    for form in (governance["resumption"]["quorum"], governance["policy_change"]):
        assert isinstance(form, dict) and ("all_of" in form or "any_of" in form), (name, form)
