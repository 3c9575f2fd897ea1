"""Cross-references inside a policy: every regime, safeguard and role named is defined.

Checked on the document as written (plain data), not on the validated models, so that the
loader can report them together with schema problems: a section that fails validation
does not hide a reference problem elsewhere. What an invalid section leaves unknown (say,
``governance.roles`` is not a list of names) is not guessed at: the checks that need it are
skipped, and the schema problem there is reported instead. Each problem carries the path of
the offending value so the loader can place it at its line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

Path = tuple[Any, ...]
Problem = tuple[Path, str]


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part) or any(c.isspace() or c in '.[]"' for c in str(part)):
            out += f"[{json.dumps(str(part), ensure_ascii=False)}]"  # keep odd keys visible
        else:
            out += f".{part}" if out else str(part)
    return out or "(policy)"


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _items(value: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """The mappings in a list, with their indexes (anything else is a schema problem)."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                yield i, item


def _names(value: Any) -> set[str] | None:
    """The ids of a list's items; ``None`` when one cannot be read (so nothing is known)."""
    if value is None:
        return set()
    if not isinstance(value, list):
        return None
    ids = [_get(item, "id") for item in value]
    return {i for i in ids if isinstance(i, str)} if all(isinstance(i, str) for i in ids) else None


def _duplicates(value: Any, path: Path) -> list[Problem]:
    seen: dict[str, int] = {}
    out = []
    for i, item in _items(value):
        ident = item.get("id")
        if not isinstance(ident, str):
            continue
        if ident in seen:
            out.append(((*path, i, "id"), f"duplicate id {ident!r} (first at index {seen[ident]})"))
        seen.setdefault(ident, i)
    return out


def _regimes(data: Any) -> list[Problem]:
    regimes = _get(data, "compute", "regimes")
    if not isinstance(regimes, Mapping):
        return []
    defined = ", ".join(sorted(str(k) for k in regimes))
    uses: list[tuple[Path, Any]] = [
        (("compute", "effective", "regime"), _get(data, "compute", "effective", "regime"))
    ]
    uses += [(("compute", "thresholds", i, "regime"), t.get("regime"))
             for i, t in _items(_get(data, "compute", "thresholds"))]
    return [(path, f"unknown regime {name!r}; defined: {defined}")
            for path, name in uses if isinstance(name, str) and name not in regimes]


def _ids(data: Any) -> list[Problem]:
    problems = _duplicates(_get(data, "compute", "thresholds"), ("compute", "thresholds"))
    problems += _duplicates(_get(data, "capabilities"), ("capabilities",))
    problems += _duplicates(_get(data, "safeguards"), ("safeguards",))
    for ci, cap in _items(_get(data, "capabilities")):
        problems += _duplicates(cap.get("levels"), ("capabilities", ci, "levels"))
    return problems


def _safeguards(data: Any) -> list[Problem]:
    defined = _names(_get(data, "safeguards"))
    if defined is None:
        return []
    listed = ", ".join(sorted(defined)) or "(none; add a safeguards: list)"
    problems = []
    for ci, cap in _items(_get(data, "capabilities")):
        for li, level in _items(cap.get("levels")):
            requires = level.get("requires")
            for ri, sid in enumerate(requires if isinstance(requires, list) else []):
                if isinstance(sid, str) and sid not in defined:
                    problems.append((("capabilities", ci, "levels", li, "requires", ri),
                                     f"unknown safeguard {sid!r}; defined: {listed}"))
    return problems


def _approvers(value: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    """The roles a quorum names, in any of the forms it may be written in."""
    if isinstance(value, Mapping) and "all_of" in value:
        value, path = value["all_of"], (*path, "all_of")
    elif isinstance(value, str | Mapping):
        yield from _clause_roles(value, path)
        return
    if isinstance(value, list):
        for i, clause in enumerate(value):
            yield from _clause_roles(clause, (*path, i))


def _clause_roles(clause: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    if isinstance(clause, str):
        yield path, clause
    elif isinstance(clause, Mapping) and isinstance(clause.get("any_of"), list):
        for i, role in enumerate(clause["any_of"]):
            yield (*path, "any_of", i), role


def _roles(data: Any) -> list[Problem]:
    roles = _get(data, "governance", "roles")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        return []
    declared = ", ".join(roles)
    uses: list[tuple[Path, Any]] = []
    for si, s in _items(_get(data, "safeguards")):
        attested = s.get("attested_by")
        uses += [(("safeguards", si, "attested_by", i), role)
                 for i, role in enumerate(attested if isinstance(attested, list) else [])]
    quorum = ("governance", "resumption", "quorum")
    uses += _approvers(_get(data, *quorum), quorum)
    uses += _approvers(_get(data, "governance", "policy_change"), ("governance", "policy_change"))
    return [(path, f"role {role!r} is not in governance.roles ({declared})")
            for path, role in uses if isinstance(role, str) and role not in roles]


def reference_problems(data: Any) -> list[Problem]:
    """Regimes, safeguards and roles a policy document names without defining them, and
    duplicate ids; each with the path of the offending value.

    ``data`` is the document as written (a mapping) or a validated policy's ``model_dump()``.
    """
    if not isinstance(data, Mapping):
        return []
    return _regimes(data) + _ids(data) + _safeguards(data) + _roles(data)
