"""Load a policy from YAML so that every error names file, line, column and field.

The YAML is read by :class:`scalegate.documents.YamlDocument`, which keeps the position
of every key and value and reports duplicate keys, non-text keys, merge keys, unknown
tags, pathological nesting and alias bombs rather than silently resolving them; we then
validate with the pydantic models in
:mod:`scalegate.policy.schema` and map each validation error back to its node.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from scalegate.documents import Position, Unreadable, YamlDocument
from scalegate.errors import PolicyError
from scalegate.policy._references import dotted, reference_problems
from scalegate.policy.schema import Policy, _ReferenceProblems

Path_ = tuple[Any, ...]


def _where(source: str, pos: Position | None, path: Path_) -> str:
    where = dotted(path) if path else ""
    head = f"{source}:{pos.line}:{pos.column}" if pos else source
    return head + (f": {where}" if where else "")


# --- pydantic errors -> located problems ----------------------------------------------------


def _resolve(loc: tuple[Any, ...], data: Any) -> Path_:
    """Map a pydantic error location onto the data (dropping union/validator tags)."""
    out: list[Any] = []
    cur = data
    for i, part in enumerate(loc):
        in_dict = isinstance(cur, dict) and isinstance(part, str) and part in cur
        in_list = isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        if in_dict or in_list:
            out.append(part)
            cur = cur[part]
        elif i == len(loc) - 1 and isinstance(part, str) and "[" not in part:
            out.append(part)  # a missing or unknown key
    return tuple(out)


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else next(
                (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), args[0]
            )
        else:
            return tp


def _model_at(path: Path_) -> type[BaseModel] | None:
    tp: Any = Policy
    for part in path:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp = field.annotation
        elif origin is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# The validation library's wording for the commonest mistakes, said as a person would.
_PLAIN = {
    "float_parsing": "expected a number (e.g. 1e25, 0.5)",
    "float_type": "expected a number (e.g. 1e25, 0.5)",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected text",
    "list_type": "expected a list (e.g. [a, b], or one '- item' a line)",
    "dict_type": "expected a mapping (key: value lines)",
    "model_type": "expected a mapping (key: value lines)",
    "model_attributes_type": "expected a mapping (key: value lines)",
}


def _plain(kind: str, ctx: dict[str, Any]) -> str | None:
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"needs at least {least} items"
    if kind == "literal_error" and ctx.get("expected"):
        return f"expected one of {ctx['expected']}"
    return _PLAIN.get(kind)


def _message(err: Any, path: Path_) -> str:
    kind = err["type"]
    given = err.get("input")
    if kind == "extra_forbidden":
        model = _model_at(path[:-1])
        allowed = sorted(model.model_fields) if model else []
        key = str(path[-1]) if path else "?"
        text = f"unknown key {key!r}"
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            text += f" (did you mean {close[0]!r}?)"
        return text + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        return f"missing required key {path[-1]!r}" if path else "missing required key"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    msg = _plain(kind, err.get("ctx") or {}) or msg
    if kind == "string_type" and isinstance(given, int | float) and not isinstance(given, bool):
        return f"expected text, got the number {given!r}; quote it: '{given}'"
    if isinstance(given, str | int | float | bool) or given is None:
        return f"{msg} (got {_short(given)})"
    if isinstance(given, list):
        return f"{msg} (got a list)"
    if isinstance(given, dict):
        return f"{msg} (got a mapping)"
    return msg


def _fail(doc: YamlDocument) -> PolicyError:
    problems = sorted(doc.problems, key=lambda p: (p[0].line, p[0].column) if p[0] else (0, 0))
    located = [(_where(doc.source, pos, path), msg) for pos, path, msg in problems]
    n = len(located)
    return PolicyError(
        f"{doc.source}: the policy is invalid ({n} problem{'s' if n != 1 else ''})",
        problems=located,
        hint="Fix each problem listed, then run `scalegate policy check` again.",
    )


def _validate(data: Any, doc: YamlDocument) -> Policy:
    if not isinstance(data, dict):
        got = "an empty document" if data is None else f"a {type(data).__name__}"
        doc.problem(doc.locate(()), (), f"a policy must be a mapping of keys (id, version, ...), "
                    f"got {got}")
        raise _fail(doc)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        _schema_problems(exc, data, doc)
    except _ReferenceProblems:
        _reference_problems(data, doc, set())
    else:
        if doc.problems:
            raise _fail(doc)
        return policy
    raise _fail(doc)


def _schema_problems(exc: ValidationError, data: Any, doc: YamlDocument) -> None:
    """Place each validation error, then the reference problems elsewhere in the document
    (pydantic checks references only on a valid policy; one pass should report both)."""
    placed: set[Path_] = set()
    for err in exc.errors():
        path = _resolve(tuple(err["loc"]), data)
        if err["type"] == "missing":
            pos = doc.locate(path[:-1])
        else:
            pos = doc.locate(path, key=err["type"] == "extra_forbidden")
        doc.problem(pos, path, _message(err, path))
        placed.add(path)
    _reference_problems(data, doc, placed)


def _reference_problems(data: Any, doc: YamlDocument, placed: set[Path_]) -> None:
    """Place the reference problems of the document as written; one at a value that already
    has a schema problem would only repeat it."""
    for path, msg in reference_problems(data):
        if path not in placed:
            doc.problem(doc.locate(path), path, msg)


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """Parse and validate a policy from YAML text; raise :class:`PolicyError` listing every problem.

    ``source`` names the text in messages (a file name, or ``library/demo.yaml``).
    """
    doc = YamlDocument(source)
    try:
        data = doc.read(text)
    except Unreadable:
        raise _fail(doc) from None
    if doc.empty:
        doc.problem(Position(1, 1), (), "the policy is empty; start from `scalegate policy "
                    "explain demo` or a file in the bundled library")
        raise _fail(doc)
    return _validate(data, doc)


def load_policy_file(path: str | Path) -> Policy:
    """Read and validate a policy file (UTF-8 YAML)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(
            f"no policy file {str(path)!r}",
            hint="Give a path to a YAML file or a bundled name (`scalegate policy list`).",
        ) from None
    except IsADirectoryError:
        raise PolicyError(f"{str(path)!r} is a directory, not a policy file") from None
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {str(path)!r}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = raw[: exc.start].decode("utf-8", errors="replace")
        pos = Position(prefix.count("\n") + 1, len(prefix) - (prefix.rfind("\n") + 1) + 1)
        raise PolicyError(
            f"{path}: the policy is not UTF-8 text",
            problems=[(f"{path}:{pos.line}:{pos.column}", f"byte 0x{raw[exc.start]:02x} is not "
                       "valid UTF-8; save the file as UTF-8")],
        ) from None
    return parse_policy(text, source=str(path))


def policy_from_data(data: Mapping[str, Any], *, source: str = "<data>") -> Policy:
    """Validate an already-parsed mapping (no line numbers: problems name field paths)."""
    doc = YamlDocument(source)
    return _validate(dict(data), doc)
