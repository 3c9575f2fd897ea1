"""Cross-references inside a policy: every regime, safeguard and role named is defined.

Checked after the structure validates, and reported with the path of each offending
value so the loader can place it at its line.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalegate.policy.schema import Policy

Problem = tuple[tuple[Any, ...], str]


def dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part) or any(c.isspace() or c in '.[]"' for c in str(part)):
            out += f"[{json.dumps(str(part), ensure_ascii=False)}]"  # keep odd keys visible
        else:
            out += f".{part}" if out else str(part)
    return out or "(policy)"


def _duplicates(items: list[Any], path: tuple[Any, ...]) -> list[Problem]:
    seen: dict[str, int] = {}
    out = []
    for i, item in enumerate(items):
        if item.id in seen:
            out.append(
                ((*path, i, "id"), f"duplicate id {item.id!r} (first at index {seen[item.id]})")
            )
        seen.setdefault(item.id, i)
    return out


def reference_problems(p: Policy) -> list[Problem]:
    problems: list[Problem] = []
    regimes = sorted(p.compute.regimes)
    if p.compute.effective.regime not in p.compute.regimes:
        problems.append(
            (
                ("compute", "effective", "regime"),
                f"unknown regime {p.compute.effective.regime!r}; defined: {', '.join(regimes)}",
            )
        )
    problems += _duplicates(p.compute.thresholds, ("compute", "thresholds"))
    for i, t in enumerate(p.compute.thresholds):
        if t.regime not in p.compute.regimes:
            problems.append(
                (
                    ("compute", "thresholds", i, "regime"),
                    f"unknown regime {t.regime!r}; defined: {', '.join(regimes)}",
                )
            )
    problems += _duplicates(p.capabilities, ("capabilities",))
    problems += _duplicates(p.safeguards, ("safeguards",))
    safeguards = {s.id for s in p.safeguards}
    for ci, cap in enumerate(p.capabilities):
        problems += _duplicates(cap.levels, ("capabilities", ci, "levels"))
        for li, level in enumerate(cap.levels):
            for ri, sid in enumerate(level.requires):
                if sid not in safeguards:
                    problems.append(
                        (
                            ("capabilities", ci, "levels", li, "requires", ri),
                            f"unknown safeguard {sid!r}; defined: "
                            + (", ".join(sorted(safeguards)) or "(none; add a safeguards: list)"),
                        )
                    )
    roles = set(p.governance.roles)
    declared = ", ".join(p.governance.roles)

    def check_roles(names: list[str], path: tuple[Any, ...]) -> None:
        for i, role in enumerate(names):
            if role not in roles:
                problems.append(
                    ((*path, i), f"role {role!r} is not in governance.roles ({declared})")
                )

    for si, s in enumerate(p.safeguards):
        check_roles(s.attested_by, ("safeguards", si, "attested_by"))
    for qi, clause in enumerate(p.governance.resumption.quorum):
        check_roles(clause.any_of, ("governance", "resumption", "quorum", qi, "any_of"))
    for qi, clause in enumerate(p.governance.policy_change):
        check_roles(clause.any_of, ("governance", "policy_change", qi, "any_of"))
    return problems
