"""Load a policy from YAML so that every error names file, line, column and field.

PyYAML's *nodes* (``yaml.compose``) keep the position of every key and value; we
build plain Python data from them ourselves so that duplicate keys, non-text keys,
merge keys, unknown tags and pathological nesting are reported rather than
silently resolved, then validate with the pydantic models in
:mod:`scalegate.policy.schema` and map each validation error back to its node.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from scalegate.errors import PolicyError
from scalegate.policy._references import dotted, reference_problems
from scalegate.policy.schema import Policy, _ReferenceProblems

# libyaml's parser when PyYAML was built with it (15x faster); same nodes, same marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAX_DEPTH = 40
_MAX_NODES = 20_000
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"

Path_ = tuple[Any, ...]


class _Position:
    """A 1-based line and column."""

    __slots__ = ("column", "line")

    def __init__(self, line: int, column: int) -> None:
        self.line = line
        self.column = column

    @classmethod
    def of(cls, mark: Any) -> _Position:
        return cls(mark.line + 1, mark.column + 1)


class _Document:
    """Data built from YAML nodes, with the position of every value and key."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[Path_, _Position] = {}
        self.keys: dict[Path_, _Position] = {}
        self.problems: list[tuple[_Position | None, Path_, str]] = []
        self._nodes = 0
        self._constructor = yaml.constructor.SafeConstructor()

    def problem(self, where: _Position | None, path: Path_, message: str) -> None:
        self.problems.append((where, path, message))

    def build(self, node: yaml.Node, path: Path_ = (), depth: int = 0) -> Any:
        where = _Position.of(node.start_mark)
        self.values[path] = where
        self._nodes += 1
        if depth > _MAX_DEPTH or self._nodes > _MAX_NODES:
            raise _TooLarge(where, path)
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                self.problem(where, path, f"YAML tag {node.tag!r} is not supported here")
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                self.problem(where, path, f"YAML tag {node.tag!r} is not supported here")
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or node.start_mark
            self.problem(_Position.of(mark), path, _yaml_message(exc))
        except Exception as exc:  # e.g. a timestamp such as 2023-02-30
            self.problem(_Position.of(node.start_mark), path, f"cannot read this value: {exc}")
        return None

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            where = _Position.of(key_node.start_mark)
            if key_node.tag == _MERGE_TAG:
                self.problem(where, path, "YAML merge keys (<<) are not supported; write keys out")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(where, path, "a key must be plain text, not a list or mapping")
                continue
            key = self._scalar(key_node, path)
            if not isinstance(key, str):
                self.problem(
                    where,
                    path,
                    f"key {key_node.value!r} was read as {type(key).__name__}; "
                    f"keys must be text (quote it: '{key_node.value}')",
                )
                continue
            kpath = (*path, key)
            if key in out:
                first = self.keys[kpath]
                self.problem(
                    where, kpath, f"duplicate key {key!r} (first at line {first.line}); remove one"
                )
                continue
            self.keys[kpath] = where
            out[key] = self.build(value_node, kpath, depth + 1)
        return out

    def locate(self, path: Path_, *, key: bool = False) -> _Position | None:
        """The position of the value (or key) at ``path``, else of its nearest ancestor."""
        if not self.values:
            return None  # data that never was YAML: only field paths are known
        if key and path in self.keys:
            return self.keys[path]
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, _Position(1, 1))


class _TooLarge(Exception):
    def __init__(self, where: _Position, path: Path_) -> None:
        self.where = where
        self.path = path


def _yaml_message(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    text = f"{context}, {problem}" if context else problem
    return f"invalid YAML: {text}"


def _where(source: str, pos: _Position | None, path: Path_) -> str:
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


def _fail(doc: _Document) -> PolicyError:
    problems = sorted(doc.problems, key=lambda p: (p[0].line, p[0].column) if p[0] else (0, 0))
    located = [(_where(doc.source, pos, path), msg) for pos, path, msg in problems]
    n = len(located)
    return PolicyError(
        f"{doc.source}: the policy is invalid ({n} problem{'s' if n != 1 else ''})",
        problems=located,
        hint="Fix each problem listed, then run `scalegate policy check` again.",
    )


def _validate(data: Any, doc: _Document) -> Policy:
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


def _schema_problems(exc: ValidationError, data: Any, doc: _Document) -> None:
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


def _reference_problems(data: Any, doc: _Document, placed: set[Path_]) -> None:
    """Place the reference problems of the document as written; one at a value that already
    has a schema problem would only repeat it."""
    for path, msg in reference_problems(data):
        if path not in placed:
            doc.problem(doc.locate(path), path, msg)


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """Parse and validate a policy from YAML text; raise :class:`PolicyError` listing every problem.

    ``source`` names the text in messages (a file name, or ``library/demo.yaml``).
    """
    doc = _Document(source)
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = _Position.of(mark) if mark is not None else _Position(1, 1)
        doc.problem(pos, (), _yaml_message(exc))
        raise _fail(doc) from None
    except yaml.reader.ReaderError as exc:
        pos = _offset_position(text, exc.position)
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        doc.problem(pos, (), f"invalid character {char!r} ({exc.reason}); a policy is UTF-8 text")
        raise _fail(doc) from None
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from a JSON "\ud800" escape
        doc.problem(_offset_position(text, exc.start), (), f"invalid character "
                    f"{text[exc.start]!r} (a lone surrogate); a policy is UTF-8 text")
        raise _fail(doc) from None
    except yaml.YAMLError as exc:
        doc.problem(_Position(1, 1), (), _yaml_message(exc))
        raise _fail(doc) from None
    if node is None:
        doc.problem(_Position(1, 1), (), "the policy is empty; start from `scalegate policy "
                    "explain demo` or a file in the bundled library")
        raise _fail(doc)
    try:
        data = doc.build(node)
    except _TooLarge as exc:
        doc.problem(exc.where, exc.path, f"the document nests deeper than {_MAX_DEPTH} levels or "
                    f"has more than {_MAX_NODES} values (recursive aliases?)")
        raise _fail(doc) from None
    return _validate(data, doc)


def _offset_position(text: str, offset: int) -> _Position:
    before = text[:offset]
    return _Position(before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


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
        pos = _offset_position(prefix, len(prefix))
        raise PolicyError(
            f"{path}: the policy is not UTF-8 text",
            problems=[(f"{path}:{pos.line}:{pos.column}", f"byte 0x{raw[exc.start]:02x} is not "
                       "valid UTF-8; save the file as UTF-8")],
        ) from None
    return parse_policy(text, source=str(path))


def policy_from_data(data: Mapping[str, Any], *, source: str = "<data>") -> Policy:
    """Validate an already-parsed mapping (no line numbers: problems name field paths)."""
    doc = _Document(source)
    return _validate(dict(data), doc)
