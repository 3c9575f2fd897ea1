"""The auditor's trust file: the only things ``scalegate verify`` believes without checking.

An auditor trusts nothing a ledger says about itself. It is given, in a YAML file:

.. code-block:: yaml

    log:
      origin: example.org/scalegate            # the checkpoint origin line
      key: example.org/scalegate+1a2b3c4d+AU...  # the log's note verifier key
    witnesses:                                # name -> cosignature verifier key (type 0x04)
      witness.example/w1: witness.example/w1+5e6f7a8b+BA...
    witness_quorum: 1                         # cosignatures required (k of n)
    org_roots:                                # organisation -> its root verifier keys
      acme: [acme/root+0badc0de+AQ...]
    roles:                                    # optional: statement kind -> roles that may sign it
      decision: [trainer]
    timestamp_authorities:                    # optional: RFC 3161 TSAs whose tokens count
      - name: tsa.example
        ca: tsa-root.pem                      # its root CA (and intermediates): PEM, or a path
        certificate: tsa.pem                  # optional: pin its signing certificate

Rules beyond the shapes: a witness's key carries the witness's name; a root key of
organisation ``acme`` is named ``acme`` or ``acme/...`` (the registry's rule for who
manages whose keys); ``witness_quorum`` is required when witnesses are listed and
cannot exceed their number; ``roles`` names known statement kinds other than ``key``
and ``key-revocation`` (those are signed by organisation roots, always). Without a
``roles`` entry a kind may be signed by any registered key of the right organisation;
attestation and approval roles are then checked against the run's policy by replay.

A time-stamping authority's token over a checkpoint counts as time from outside the lab
(entries below the checkpoint's size existed by the token's time); paths to PEM files are
relative to the trust file. Tokens signed under no listed authority are ignored.

Every problem is reported with file, line and column (:class:`TrustFileError`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from scalegate.documents import Unreadable, YamlDocument
from scalegate.errors import KeyMaterialError, TrustFileError
from scalegate.ledger import (
    KEY_KINDS,
    PREDICATES,
    CosignatureVerifier,
    VerifierKey,
    org_of,
)
from scalegate.units import counted

__all__ = ["TimestampAuthority", "TrustFile", "TrustedLog", "load_trust", "parse_trust",
           "trust_for"]

_MAX_DEPTH = 20  # a trust file nests 3 levels


def _key_parser(cls: type[Any], what: str) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected {what} as text (name+hexid+base64key)")
        try:
            return cls.parse(value)
        except KeyMaterialError as exc:
            raise ValueError(exc.message) from None

    return parse


VerifierKeyText = Annotated[
    VerifierKey,
    BeforeValidator(_key_parser(VerifierKey, "a verifier key")),
    PlainSerializer(lambda k: k.text(), return_type=str),
]
WitnessKeyText = Annotated[
    CosignatureVerifier,
    BeforeValidator(_key_parser(CosignatureVerifier, "a witness cosignature key")),
    PlainSerializer(lambda k: k.text(), return_type=str),
]
_Text = Annotated[str, Field(min_length=1)]


def _certificates(value: Any, info: ValidationInfo) -> list[x509.Certificate]:
    """PEM certificates given inline or as a path (relative to the trust file)."""
    if isinstance(value, list) and all(isinstance(c, x509.Certificate) for c in value):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected PEM certificate text, or the path of a PEM file")
    pem = value
    if "-----BEGIN" not in value:
        base = (info.context or {}).get("base")
        path = Path(value) if base is None else Path(base) / value
        try:
            pem = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read PEM file {str(path)!r}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    try:
        certs = x509.load_pem_x509_certificates(pem.encode("utf-8"))
    except ValueError:
        raise ValueError("holds no readable PEM certificate (-----BEGIN CERTIFICATE-----)") \
            from None
    return certs


_Certificates = Annotated[
    list[x509.Certificate],
    BeforeValidator(_certificates),
    PlainSerializer(lambda cs: "".join(c.public_bytes(Encoding.PEM).decode() for c in cs),
                    return_type=str),
]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True
    )


class TrustedLog(_Strict):
    """The log under audit: its checkpoint ``origin`` and the ``key`` that signs checkpoints."""

    origin: _Text
    key: VerifierKeyText


class TimestampAuthority(_Strict):
    """An RFC 3161 time-stamping authority: its ``ca`` (root, then any intermediate
    certificates) and optionally its own signing ``certificate``, pinned."""

    name: _Text
    ca: _Certificates
    certificate: _Certificates | None = None

    def issued(self, issuer: x509.Name, serial: int) -> bool:
        """Whether a token signed by certificate ``(issuer, serial)`` claims to be this
        authority's (which then decides whether it verifies)."""
        if self.certificate is not None:
            return any(c.issuer == issuer and c.serial_number == serial
                       for c in self.certificate)
        return any(c.subject == issuer for c in self.ca)


class TrustFile(_Strict):
    """What an auditor trusts (see the module docstring for the file format)."""

    log: TrustedLog
    witnesses: dict[str, WitnessKeyText] = Field(default_factory=dict)
    witness_quorum: int | None = Field(default=None, ge=0)
    org_roots: dict[str, Annotated[list[VerifierKeyText], Field(min_length=1)]] = Field(
        min_length=1
    )
    roles: dict[str, Annotated[list[_Text], Field(min_length=1)]] = Field(default_factory=dict)
    timestamp_authorities: list[TimestampAuthority] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> TrustFile:
        problems = _cross_checks(self)
        if problems:
            # Not a ValueError, so pydantic lets it through with its paths intact.
            raise _CrossProblems(problems)
        return self

    # --- what the auditor uses -------------------------------------------------------------

    @property
    def origin(self) -> str:
        """The expected checkpoint origin."""
        return self.log.origin

    @property
    def log_verifier(self) -> VerifierKey:
        """The log's checkpoint-signing verifier key."""
        return self.log.key

    @property
    def witness_verifiers(self) -> list[CosignatureVerifier]:
        """The trusted witnesses' cosignature verifiers."""
        return list(self.witnesses.values())

    @property
    def quorum(self) -> int:
        """How many distinct trusted witnesses must cosign a checkpoint."""
        return self.witness_quorum or 0

    @property
    def roots(self) -> list[VerifierKey]:
        """Every trusted organisation root key."""
        return [k for keys in self.org_roots.values() for k in keys]

    def allowed_roles(self, kind: str) -> frozenset[str] | None:
        """Roles that may sign statements of ``kind``, or ``None`` when any role may."""
        roles = self.roles.get(kind)
        return None if roles is None else frozenset(roles)

    def to_yaml(self) -> str:
        """The trust file as YAML text (what :func:`parse_trust` reads back)."""
        data = self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
        for optional in ("roles", "timestamp_authorities"):
            if not data.get(optional):
                data.pop(optional, None)
        return yaml.safe_dump(data, sort_keys=False, width=1000)


class _CrossProblems(TrustFileError):
    def __init__(self, paths: list[tuple[tuple[Any, ...], str]]) -> None:
        listing = "; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in paths)
        super().__init__(f"the trust is inconsistent: {listing}",
                         problems=[(".".join(map(str, p)), m) for p, m in paths])
        self.paths = paths


def _cross_checks(t: TrustFile) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    for name, wkey in t.witnesses.items():
        if wkey.name != name:
            problems.append(
                (("witnesses", name), f"the key is for witness {wkey.name!r}, not {name!r}")
            )
    n = len(t.witnesses)
    if n and t.witness_quorum is None:
        problems.append(
            (("witness_quorum",), "missing required key 'witness_quorum' "
             f"({counted(n, 'witnesses')} {'is' if n == 1 else 'are'} listed: say how many "
             "must cosign)")
        )
    if t.witness_quorum is not None and t.witness_quorum > n:
        problems.append(
            (("witness_quorum",), f"a quorum of {t.witness_quorum} is impossible with "
             f"{counted(n, 'witnesses')}")
        )
    seen: dict[str, str] = {}
    for org, keys in t.org_roots.items():
        for i, key in enumerate(keys):
            if org_of(key) != org:
                problems.append(
                    (("org_roots", org, i), f"root key {key.keyid} belongs to organisation "
                     f"{org_of(key)!r} (its name's first part), not {org!r}")
                )
            if key.keyid in seen:
                problems.append(
                    (("org_roots", org, i), f"root key {key.keyid} is listed twice "
                     f"(also under {seen[key.keyid]!r})")
                )
            seen.setdefault(key.keyid, org)
    problems.extend(_authority_checks(t.timestamp_authorities))
    known = sorted(k for k in PREDICATES if k not in KEY_KINDS)
    for kind in t.roles:
        if kind in KEY_KINDS:
            problems.append(
                (("roles", kind), f"{kind!r} statements are signed by organisation roots; "
                 "they take no roles")
            )
        elif kind not in PREDICATES:
            problems.append(
                (("roles", kind), f"unknown statement kind {kind!r}; expected one of: "
                 + ", ".join(known))
            )
    return problems


def _authority_checks(tsas: list[TimestampAuthority]) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    names: set[str] = set()
    for i, a in enumerate(tsas):
        if a.name in names:
            problems.append((("timestamp_authorities", i, "name"),
                             f"authority {a.name!r} is listed twice"))
        names.add(a.name)
        if not any(c.issuer == c.subject for c in a.ca):
            problems.append((("timestamp_authorities", i, "ca"), "no root certificate (one "
                             "whose issuer is its subject) is given; tokens are verified up "
                             "to a root"))
        if a.certificate is not None and len(a.certificate) != 1:
            problems.append((("timestamp_authorities", i, "certificate"), "give exactly one "
                             "certificate: the authority's own signing certificate"))
    return problems


# --- problems, located -----------------------------------------------------------------------

_Path = tuple[Any, ...]


def _fail(doc: YamlDocument, extra: list[tuple[str, str]] | None = None) -> TrustFileError:
    problems = doc.located() + (extra or [])
    n = len(problems)
    listing = "\n".join(f"  {where}: {what}" for where, what in problems)
    # Several lines: the hint goes on a line of its own (errors.join_hint).
    return TrustFileError(
        f"{doc.source}: the trust file is invalid ({n} problem{'s' if n != 1 else ''}):\n"
        f"{listing}",
        problems=problems,
        hint="Fix each problem listed; see `scalegate verify --help` for the format.",
    )


def _too_short(loc: tuple[Any, ...]) -> str | None:
    """What an empty ``org_roots``, root key list, role list or text should have held."""
    if loc == ("org_roots",):
        return ("no organisation is listed; a trust file needs at least one organisation "
                "with its root verifier keys, e.g. 'acme: [acme/root+1a2b3c4d+AQ...]'")
    if len(loc) == 2 and loc[0] == "org_roots":
        return (f"organisation {loc[1]!r} lists no root key; give at least one of its root "
                "verifier keys (name+hexid+base64key)")
    if len(loc) == 2 and loc[0] == "roles":
        return (f"no role is listed for {loc[1]!r} statements; give at least one role, or leave "
                f"{loc[1]!r} out to let any role sign them")
    return None


def _pydantic_message(err: Any) -> str:
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
    if err["type"] == "too_short" and (why := _too_short(loc)) is not None:
        return why
    if err["type"] == "string_too_short":
        return "must not be empty"
    if err["type"] == "extra_forbidden":
        return "unknown key; expected one of: log, witnesses, witness_quorum, org_roots, " \
            "roles, timestamp_authorities" if len(err["loc"]) == 1 else "unknown key"
    if err["type"] == "missing":
        return f"missing required key {err['loc'][-1]!r}"
    given = err.get("input")
    if isinstance(given, str | int | float | bool) and not msg.startswith(("verifier", "witness")):
        shown = repr(given) if len(repr(given)) <= 60 else repr(given)[:57] + "..."
        return f"{msg} (got {shown})"
    return msg


def parse_trust(text: str, *, source: str = "<trust>", base: Path | None = None) -> TrustFile:
    """Parse and check a trust file's YAML text; raise :class:`TrustFileError` listing problems.
    ``base`` is the directory relative paths in it (PEM files) start from."""
    doc = YamlDocument(source, max_depth=_MAX_DEPTH)
    try:
        data = doc.read(text)
    except Unreadable as exc:
        if exc.kind == "character" and exc.offset is not None:
            what = exc.problem.message.removeprefix("invalid character: ")
            raise _not_yaml_text(source, text, exc.offset, what) from None
        raise _fail(doc) from None
    if doc.empty:
        doc.problem(None, (), "the trust file is empty")
        raise _fail(doc)
    if doc.problems:
        raise _fail(doc)
    if not isinstance(data, dict):
        doc.problem(doc.locate(()), (), "a trust file is a mapping with keys log, witnesses, "
                    "witness_quorum, org_roots and roles")
        raise _fail(doc)
    try:
        return TrustFile.model_validate(data, context={"base": base})
    except ValidationError as exc:
        for err in exc.errors():
            path = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
            doc.problem(doc.locate(path, key=err["type"] == "extra_forbidden"), path,
                        _pydantic_message(err))
    except _CrossProblems as exc:
        for path, message in exc.paths:
            doc.problem(doc.locate(path), path, message)
    raise _fail(doc)


def load_trust(path: str | Path) -> TrustFile:
    """Read and check a trust file (UTF-8 YAML)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TrustFileError(
            f"no trust file {str(path)!r}.",
            hint="Write one from the keys you trust: `scalegate trust init --ledger L "
            "--org-root KEY [--witness KEY] > trust.yaml` (format: `scalegate verify --help`).",
        ) from None
    except OSError as exc:
        raise TrustFileError(f"cannot read trust file {path}: {exc.strerror or exc}.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8", errors="replace")
        raise _not_yaml_text(str(path), before, len(before),
                             f"byte 0x{raw[exc.start]:02x} is not UTF-8") from None
    return parse_trust(text, source=str(path), base=path.parent)


def _not_yaml_text(source: str, text: str, position: int, what: str) -> TrustFileError:
    """A binary file (or one with bytes YAML refuses): say so, with where the first one is."""
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    where = f"{source}:{line}:{column}"
    return TrustFileError(
        f"trust file {source} is not a YAML text file: {what} (at line {line}, column {column}).",
        problems=[(where, what)],
        hint="A trust file is UTF-8 YAML text naming the log key, witnesses and organisation "
        "roots you trust; see `scalegate verify --help` for the format.",
    )


def trust_for(
    origin: str,
    log_key: VerifierKey | str,
    org_roots: Iterable[VerifierKey | str],
    *,
    witnesses: Iterable[CosignatureVerifier | str] = (),
    quorum: int | None = None,
    roles: dict[str, list[str]] | None = None,
) -> TrustFile:
    """A trust file from what an auditor chooses to trust: the log (``origin`` and its
    checkpoint key), organisation roots (grouped by the organisation their names give),
    witnesses and how many must cosign (default: one when any is listed), and optional
    ``roles`` rules. Checked as a loaded file is (:class:`TrustFileError` on a problem)."""
    by_org: dict[str, list[str]] = {}
    for root in org_roots:
        key = root if isinstance(root, VerifierKey) else VerifierKey.parse(root)
        keys = by_org.setdefault(org_of(key), [])
        if key.text() not in keys:
            keys.append(key.text())
    named: dict[str, str] = {}
    for w in witnesses:
        wkey = w if isinstance(w, CosignatureVerifier) else CosignatureVerifier.parse(w)
        if named.get(wkey.name, wkey.text()) != wkey.text():
            raise TrustFileError(f"two witness keys are named {wkey.name!r}; a trust file "
                                 "names each witness once.", hint="Give each witness's key once.")
        named[wkey.name] = wkey.text()
    if named and quorum is None:
        quorum = 1
    data: dict[str, Any] = {
        "log": {"origin": origin,
                "key": log_key.text() if isinstance(log_key, VerifierKey) else log_key},
        "witnesses": named, "org_roots": by_org, "roles": roles or {}}
    if quorum is not None:
        data["witness_quorum"] = quorum
    try:
        return TrustFile.model_validate(data)
    except ValidationError as exc:
        listing = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if not str(p).startswith('function-'))}: "
            f"{_pydantic_message(err)}" for err in exc.errors())
        raise TrustFileError(f"the trust is invalid: {listing}") from None
