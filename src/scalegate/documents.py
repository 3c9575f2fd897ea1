"""Reading YAML and JSON that someone else wrote, without letting it take the process down.

Every document the tool reads from a user or another party (policies, trust files,
envelopes and the statements in them, receipts' entries, the auditor's state file) is
read here, under limits: a document may nest at most ``max_depth`` levels, and a YAML
document may hold at most ``max_nodes`` values once its aliases are expanded (an alias
bomb — a few lines that expand to billions of values — is refused after ``max_nodes``,
in milliseconds). Nothing here raises :class:`RecursionError` or allocates without bound.

- :class:`YamlDocument` builds plain data from YAML *nodes*, keeping the line and column
  of every value and key, and records what is wrong (invalid YAML, duplicate keys, keys
  that are not text, merge keys, unknown tags, values that do not read) as
  :class:`Problem` s; each loader words its own error from them.
- :func:`load_json` is :func:`json.loads` after a depth check; a document nested too
  deeply raises :class:`JsonTooDeep`, a :class:`json.JSONDecodeError`, so every caller
  that handles invalid JSON handles it too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    import yaml

__all__ = [
    "MAX_DEPTH",
    "MAX_JSON_DEPTH",
    "MAX_NODES",
    "JsonTooDeep",
    "Position",
    "Problem",
    "Unreadable",
    "YamlDocument",
    "json_too_deep",
    "load_json",
]

#: Nesting levels a YAML document may have (policies nest about 8).
MAX_DEPTH = 40
#: Values a YAML document may hold, aliases expanded (the largest bundled policy has ~600).
MAX_NODES = 20_000
#: Nesting levels a JSON document may have (statements nest about 6).
MAX_JSON_DEPTH = 64

Path_ = tuple[Any, ...]

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column."""

    line: int
    column: int

    @classmethod
    def of(cls, mark: Any) -> Position:
        """The position of a PyYAML mark."""
        return cls(mark.line + 1, mark.column + 1)


class Problem(NamedTuple):
    """What is wrong, where: the position (``None`` if unknown) and the data path."""

    position: Position | None
    path: Path_
    message: str


class Unreadable(Exception):
    """Nothing can be read from the document; its problem is in ``YamlDocument.problems``.

    ``kind``: ``syntax`` (invalid YAML), ``character`` (a character YAML never allows, at
    ``offset`` in the text), or ``limits`` (too deep, or too many values).
    """

    def __init__(self, kind: Literal["syntax", "character", "limits"], problem: Problem,
                 offset: int | None = None) -> None:
        super().__init__(problem.message)
        self.kind = kind
        self.problem = problem
        self.offset = offset


class YamlDocument:
    """Plain data built from one YAML document, with where each value and key stood.

    :meth:`read` returns the data (``None`` for an empty document, then :attr:`empty` is
    true). Problems of single values are recorded in :attr:`problems` and reading goes
    on; a document that cannot be read at all raises :class:`Unreadable`.
    """

    def __init__(self, source: str, *, max_depth: int = MAX_DEPTH,
                 max_nodes: int = MAX_NODES) -> None:
        self.source = source
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.values: dict[Path_, Position] = {}
        self.keys: dict[Path_, Position] = {}
        self.problems: list[Problem] = []
        self.empty = False
        self._nodes = 0
        import yaml  # here: `import scalegate.ledger` needs no YAML

        self._constructor = yaml.constructor.SafeConstructor()

    def problem(self, where: Position | None, path: Path_, message: str) -> None:
        """Record a problem."""
        self.problems.append(Problem(where, path, message))

    def read(self, text: str) -> Any:
        """Compose ``text`` and build its data (see the class docstring)."""
        node = self._compose(text)
        if node is None:
            self.empty = True
            return None
        try:
            return self._build(node, (), 0)
        except _TooLarge as exc:
            raise self._unreadable("limits", exc.where, exc.path, exc.message) from None

    def located(self) -> list[tuple[str, str]]:
        """Each problem as ``(where, message)``, where is ``source:line:column: a.b.0``."""
        out = []
        for pos, path, message in self.problems:
            head = f"{self.source}:{pos.line}:{pos.column}" if pos else self.source
            dotted = ".".join(str(p) for p in path)
            out.append((head + (f": {dotted}" if dotted else ""), message))
        return out

    def invalid(self, errors: list[Any]) -> None:
        """Record each error of a pydantic ``ValidationError.errors()`` where it stands."""
        for err in errors:
            where = tuple(err["loc"])
            self.problem(self.locate(where, key=err["type"] == "extra_forbidden"), where,
                         str(err["msg"]).removeprefix("Value error, "))

    def summary(self, what: str) -> str:
        """``SOURCE: WHAT is invalid (N problems):`` and one located line per problem."""
        problems = self.located()
        n = len(problems)
        return f"{self.source}: {what} is invalid ({n} problem{'s' if n != 1 else ''}):\n" \
            + "\n".join(f"  {where}: {message}" for where, message in problems)

    def locate(self, path: Path_, *, key: bool = False) -> Position | None:
        """The position of the value (or key) at ``path``, else of its nearest ancestor."""
        if not self.values:
            return None  # data that never was YAML: only field paths are known
        if key and path in self.keys:
            return self.keys[path]
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Position(1, 1))

    # --- composing -----------------------------------------------------------------------------

    def _compose(self, text: str) -> yaml.Node | None:
        import yaml

        # libyaml's parser when PyYAML was built with it: 15x faster, and its composer
        # refuses nesting beyond 1000 levels itself; the pure-Python one recurses.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            return yaml.compose(text, Loader=loader)
        except yaml.reader.ReaderError as exc:
            # libyaml counts bytes: find the character itself, as the pure-Python reader does.
            found = yaml.reader.Reader.NON_PRINTABLE.search(text)
            offset = found.start() if found else min(exc.position, len(text))
            code = ord(found.group()) if found else exc.character
            what = (f"the character #x{code:04x} is not allowed in YAML"
                    if isinstance(code, int) else str(exc.reason))
            raise self._unreadable("character", _offset_position(text, offset), (),
                                   f"invalid character: {what}", offset=offset) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = Position.of(mark) if mark is not None else Position(1, 1)
            raise self._unreadable("syntax", where, (), yaml_message(exc)) from None
        except yaml.YAMLError as exc:
            raise self._unreadable("syntax", Position(1, 1), (), yaml_message(exc)) from None
        except RecursionError:  # the pure-Python composer on a deeply nested document
            raise self._unreadable("limits", Position(1, 1), (), self._too_deep()) from None
        except UnicodeEncodeError as exc:  # a lone surrogate (e.g. from a "\udc80" escape)
            raise self._unreadable(
                "character", _offset_position(text, exc.start), (),
                f"invalid character {text[exc.start]!r} (a lone surrogate, half a UTF-16 "
                "pair): a document is UTF-8 text", offset=exc.start) from None

    def _unreadable(self, kind: Literal["syntax", "character", "limits"], where: Position,
                    path: Path_, message: str, *, offset: int | None = None) -> Unreadable:
        problem = Problem(where, path, message)
        self.problems.append(problem)
        return Unreadable(kind, problem, offset)

    def _too_deep(self) -> str:
        return f"the document nests deeper than {self.max_depth} levels"

    # --- building ------------------------------------------------------------------------------

    def _build(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        import yaml

        where = Position.of(node.start_mark)
        self.values[path] = where
        self._nodes += 1
        if depth > self.max_depth:
            raise _TooLarge(where, path, self._too_deep() + " (a recursive alias?)")
        if self._nodes > self.max_nodes:
            raise _TooLarge(where, path, f"the document has more than {self.max_nodes} values "
                            "once its aliases are expanded (an alias bomb?)")
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                self.problem(where, path, f"YAML tag {node.tag!r} is not supported here")
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                self.problem(where, path, f"YAML tag {node.tag!r} is not supported here")
            return [self._build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        import yaml

        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:  # an unknown tag
            mark = exc.problem_mark or node.start_mark
            self.problem(Position.of(mark), path, yaml_message(exc))
        except Exception as exc:  # e.g. a timestamp such as 2023-02-30
            self.problem(Position.of(node.start_mark), path, f"cannot read this value: {exc}")
        return None

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        import yaml

        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            where = Position.of(key_node.start_mark)
            if key_node.tag == _MERGE_TAG:
                self.problem(where, path, "YAML merge keys (<<) are not supported; write keys out")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(where, path, "keys must be plain text, not a list or mapping")
                continue
            key = self._scalar(key_node, path)
            if not isinstance(key, str):
                self.problem(where, path, f"key {key_node.value!r} was read as "
                             f"{type(key).__name__}; keys must be plain text (quote it: "
                             f"'{key_node.value}')")
                continue
            kpath = (*path, key)
            if key in out:
                first = self.keys[kpath]
                self.problem(where, kpath,
                             f"duplicate key {key!r} (first at line {first.line}); remove one")
                continue
            self.keys[kpath] = where
            out[key] = self._build(value_node, kpath, depth + 1)
        return out


class _TooLarge(Exception):
    def __init__(self, where: Position, path: Path_, message: str) -> None:
        self.where = where
        self.path = path
        self.message = message


def yaml_message(exc: yaml.YAMLError) -> str:
    """``invalid YAML: ...`` from a PyYAML error, without its position (given apart)."""
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    text = f"{context}, {problem}" if context else problem
    return f"invalid YAML: {text}"


def _offset_position(text: str, offset: int) -> Position:
    before = text[:offset]
    return Position(before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


# --- JSON ---------------------------------------------------------------------------------------


class JsonTooDeep(json.JSONDecodeError):
    """A JSON document nests deeper than the reader allows (at ``pos``)."""


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_too_deep(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> int | None:
    """The offset where ``data`` first nests deeper than ``max_depth``, else ``None``.

    Cheap when the document holds few brackets (no nesting can be deeper than their
    count); otherwise one pass over the brackets outside strings.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return None
    # Blank out strings (same length, so offsets hold), then follow the brackets.
    bare = _JSON_STRING.sub(lambda m: b"_" * len(m.group()), raw)
    depth = 0
    for m in _BRACKETS.finditer(bare):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return m.start()
        else:
            depth -= 1
    return None


def load_json(
    data: bytes | str,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """:func:`json.loads` of a document nesting at most ``max_depth`` levels.

    Raises :class:`json.JSONDecodeError` (:class:`JsonTooDeep` when too deep) and
    :class:`UnicodeDecodeError` as :func:`json.loads` does.
    """
    at = json_too_deep(data, max_depth)
    if at is not None:
        doc = data if isinstance(data, str) else bytes(data).decode("utf-8", "replace")
        raise JsonTooDeep(f"it nests deeper than {max_depth} levels", doc, min(at, len(doc)))
    return json.loads(data, object_pairs_hook=object_pairs_hook)
