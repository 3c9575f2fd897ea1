"""The bundled policies in ``policy/library/``, loadable by name (``demo``, ``eu-ai-act``, ...)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from scalegate.errors import PolicyError
from scalegate.policy.loader import load_policy_file, parse_policy
from scalegate.policy.schema import Policy

_SUFFIX = ".yaml"


def _library() -> resources.abc.Traversable:
    return resources.files("scalegate.policy").joinpath("library")


def bundled_policies() -> list[str]:
    """The names of the bundled policies, sorted."""
    return sorted(
        entry.name[: -len(_SUFFIX)]
        for entry in _library().iterdir()
        if entry.name.endswith(_SUFFIX) and not entry.name.startswith((".", "_"))
    )


def bundled_text(name: str) -> str:
    """The YAML text of a bundled policy."""
    if name not in bundled_policies():
        raise _unknown(name)
    return _library().joinpath(name + _SUFFIX).read_text(encoding="utf-8")


@lru_cache(maxsize=32)
def _load_bundled(name: str) -> Policy:
    return parse_policy(bundled_text(name), source=f"library/{name}{_SUFFIX}")


def _unknown(name: str) -> PolicyError:
    return PolicyError(
        f"no bundled policy named {name!r} and no such file",
        hint="Bundled policies: "
        + ", ".join(bundled_policies())
        + ". Or give a path to a YAML file.",
    )


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith((".yaml", ".yml"))


def load_policy(name_or_path: str | Path) -> Policy:
    """Load a bundled policy by name, or a policy file by path; raise :class:`PolicyError`.

    A string with a path separator or a ``.yaml``/``.yml`` suffix is a path; otherwise a
    bundled name is tried first, then a file of that name.
    """
    if isinstance(name_or_path, Path):
        return load_policy_file(name_or_path)
    text = str(name_or_path)
    if _looks_like_path(text):
        return load_policy_file(text)
    if text in bundled_policies():
        return _load_bundled(text)
    if Path(text).is_file():
        return load_policy_file(text)
    raise _unknown(text)
