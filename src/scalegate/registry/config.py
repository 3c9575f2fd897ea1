"""A registry's configuration: the logs it follows and the facts it trusts for each.

.. code-block:: yaml

    logs:
      - name: acme                        # the log's short name (its pages: /logs/acme)
        url: https://log.acme.example/    # a served log, or a directory of tiles
        trust: acme-trust.yaml            # what an auditor trusts for it: a trust file
    hold_to: [eu-ai-act, ca-sb53]         # policies every run is also held to (the default)
    interval: 60s                         # how often each log is fetched
    stale_after: 1h                       # a witnessed checkpoint older than this is stale
    reaudit_after: 1h                     # a log that has not grown is audited again then
    reread_after: 24h                     # each log's every entry is read and checked again then

Each log's trust file (the one ``scalegate verify --trust`` reads: the log's key and
origin, the organisation roots, the witnesses and their quorum) is read relative to the
configuration. Every problem is reported with file, line and column.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scalegate.audit import TrustFile, load_trust
from scalegate.documents import Unreadable, YamlDocument
from scalegate.errors import RegistryError, TrustFileError
from scalegate.units import parse_duration

__all__ = ["FollowedLog", "RegistryConfig", "load_config"]

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class FollowedLog(_Strict):
    """One followed log: its short ``name``, where it is served, and its trust file."""

    name: str
    url: str
    trust: str
    trusted: TrustFile | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("a log's name is 1-63 of a-z, 0-9, '.', '_', '-' (it is part of "
                             f"its pages' addresses), not {value!r}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "/", "./", "../")) and "://" in value:
            raise ValueError(f"{value!r} is neither an http(s):// address nor a directory")
        return value.rstrip("/") + "/"


class RegistryConfig(_Strict):
    """The whole configuration (see the module docstring)."""

    logs: list[FollowedLog] = Field(min_length=1)
    #: Policies every run is also held to, whatever its lab chose (bundled names or files):
    #: by default the laws with compute thresholds.
    hold_to: list[str] = Field(default_factory=lambda: ["eu-ai-act", "ca-sb53"])
    interval: timedelta = timedelta(seconds=60)
    stale_after: timedelta = timedelta(hours=1)
    #: A log that has not grown is audited again after this long (deadlines pass).
    reaudit_after: timedelta = timedelta(hours=1)
    #: Each log is read and audited whole again after this long (the audits between read
    #: only new entries, trusting the mirror for the rest).
    reread_after: timedelta = timedelta(hours=24)

    @field_validator("interval", "stale_after", "reaudit_after", "reread_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = timedelta(seconds=value)
        got = parse_duration(value)
        if got <= timedelta(0):
            raise ValueError("must be positive")
        return got

    def log(self, name: str) -> FollowedLog | None:
        """The followed log called ``name``."""
        return next((g for g in self.logs if g.name == name), None)


def load_config(path: str | Path) -> RegistryConfig:
    """Read and check a registry configuration and every trust file it names."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"no registry configuration {source!r}.",
                            hint="Write one: see `scalegate registry --help`.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read registry configuration {source}: {exc}.") from None
    doc = YamlDocument(source)
    try:
        data = doc.read(text)
    except Unreadable:
        raise _fail(doc) from None
    if doc.problems:
        raise _fail(doc)
    if not isinstance(data, dict):
        doc.problem(doc.locate(()), (), "a registry configuration is a mapping with keys "
                    "logs, interval and stale_after")
        raise _fail(doc)
    try:
        config = RegistryConfig.model_validate(data)
    except ValidationError as exc:
        doc.invalid(exc.errors())
        raise _fail(doc) from None
    return _with_trust(config, doc, path.parent)


def _with_trust(config: RegistryConfig, doc: YamlDocument, base: Path) -> RegistryConfig:
    from scalegate.errors import PolicyError
    from scalegate.policy import load_policy

    held = []
    for i, name in enumerate(config.hold_to):  # a bundled name, or a file beside the config
        where = str(base / name) if (base / name).is_file() else name
        try:
            load_policy(where)
        except PolicyError as exc:
            doc.problem(doc.locate(("hold_to", i)), ("hold_to", i), exc.message)
        held.append(where)
    logs, seen = [], set()
    for i, g in enumerate(config.logs):
        if g.name in seen:
            doc.problem(doc.locate(("logs", i, "name")), ("logs", i, "name"),
                        f"log name {g.name!r} is used twice")
        seen.add(g.name)
        try:
            trusted = load_trust(base / g.trust)
        except TrustFileError as exc:
            doc.problem(doc.locate(("logs", i, "trust")), ("logs", i, "trust"), exc.message)
            continue
        logs.append(g.model_copy(update={"trusted": trusted}))
    if doc.problems:
        raise _fail(doc)
    return config.model_copy(update={"logs": logs, "hold_to": held})


def _fail(doc: YamlDocument) -> RegistryError:
    return RegistryError(doc.summary("the registry configuration"), problems=doc.located(),
                         hint="Fix each problem listed; see `scalegate registry --help`.")
