"""Binding an organisation to its domain: the root keys it serves over HTTPS.

An organisation publishes, at ``https://DOMAIN/.well-known/scalegate.json``::

    {
      "scalegate": 1,
      "org": "acme",
      "roots": ["acme/root+1a2b3c4d+AXX..."],
      "logs": ["https://log.acme.example/"]
    }

``org`` is its organisation id; ``roots`` its root verifier keys (each named
``ORG/...``); ``logs`` (optional) where its public logs are served. :func:`check_domain`
fetches it over HTTPS (certificate and host name checked against the system's CAs, or a
CA file given; no redirects; at most 64 KiB) and returns what it saw as a
``domain-verification`` statement, with the digest of the server's TLS certificate: the
checker signs it and logs it, and a verifier who trusts the checker's log then knows
those roots as the organisation's (:mod:`scalegate.commitments.evidence`).
"""

from __future__ import annotations

import hashlib
import http.client
import re
import ssl
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scalegate.documents import load_json
from scalegate.errors import CommitmentError, ScalegateError
from scalegate.ledger import DomainVerificationPredicate, VerifierKey, now_utc, org_of

__all__ = ["WELL_KNOWN", "WellKnown", "check_domain"]

WELL_KNOWN = "/.well-known/scalegate.json"
_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_MAX = 64 * 1024


class WellKnown(BaseModel):
    """The document an organisation serves at its domain (see the module docstring)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    scalegate: int = Field(1, ge=1, le=1)
    org: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    roots: list[str] = Field(min_length=1, max_length=32)
    logs: list[str] = Field(default_factory=list, max_length=32)


def check_domain(domain: str, *, cafile: str | Path | None = None, timeout: float = 10.0,
                 now: datetime | None = None) -> DomainVerificationPredicate:
    """Fetch and check ``DOMAIN``'s well-known document (``domain`` may carry a port);
    raise :class:`CommitmentError` saying what is wrong."""
    host, _, port = domain.partition(":")
    if not _HOST.fullmatch(host) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise CommitmentError(f"{domain!r} is not a domain (give e.g. acme.example, or "
                              "host:port)")
    url = f"https://{domain}{WELL_KNOWN}"
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    conn = http.client.HTTPSConnection(host, int(port or 443), timeout=timeout,
                                       context=context)
    try:
        conn.connect()
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        cert = sock.getpeercert(binary_form=True) or b""
        conn.request("GET", WELL_KNOWN, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read(_MAX + 1)
    except ssl.SSLError as exc:
        raise CommitmentError(f"{url}: the TLS connection did not verify ({exc.reason or exc})",
                              hint="The domain's certificate must be valid for it (a CA "
                              "file for a private CA: --ca).") from None
    except (OSError, http.client.HTTPException) as exc:
        raise CommitmentError(f"{url}: cannot fetch it ({exc})") from None
    finally:
        conn.close()
    if resp.status != 200:
        raise CommitmentError(f"{url}: the server answered {resp.status} (no redirects are "
                              "followed)", hint=f"Serve the document at {WELL_KNOWN} itself.")
    if len(body) > _MAX:
        raise CommitmentError(f"{url}: the document is over {_MAX} bytes")
    doc = _read(url, body)
    roots = _roots(url, doc)
    return DomainVerificationPredicate(
        domain=domain, org=doc.org, url=url, roots=[r.text() for r in roots],
        checked_at=now or now_utc(), tls_certificate_sha256=hashlib.sha256(cert).hexdigest())


def _read(url: str, body: bytes) -> WellKnown:
    try:
        return WellKnown.model_validate(load_json(body))
    except ValueError as exc:  # JSON and validation errors alike
        what = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()) \
            if isinstance(exc, ValidationError) else f"not JSON ({exc})"
        raise CommitmentError(f"{url}: not a scalegate well-known document: {what}") from None


def _roots(url: str, doc: WellKnown) -> list[VerifierKey]:
    out = []
    for text in doc.roots:
        try:
            key = VerifierKey.parse(text)
        except ScalegateError as exc:
            raise CommitmentError(f"{url}: a root key does not read: {exc.message}") from None
        if org_of(key) != doc.org:
            raise CommitmentError(f"{url}: root {key.keyid} is named for {org_of(key)!r}, "
                                  f"but the document is {doc.org!r}'s")
        out.append(key)
    return out
