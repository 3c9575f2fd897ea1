"""Submitting to a log served over HTTP (``POST /add``), its refusals as scalegate errors."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import NamedTuple

from scalegate.errors import AppendRefused, DuplicateStatement, LedgerError

__all__ = ["Submitted", "submit_envelope"]


class Submitted(NamedTuple):
    """Where the log put a submitted entry; with ``wait_proof``, its C2SP ``tlog-proof``
    receipt against the first published checkpoint covering it."""

    index: int  # type: ignore[assignment]  # shadows tuple.index
    leaf_hash: bytes
    receipt: str | None = None


def submit_envelope(url: str, envelope: bytes, *, wait_proof: bool = False,
                    timeout_s: float = 60.0) -> Submitted:
    """Submit one DSSE envelope to the log at ``url``; its index and leaf hash once durable
    (and, with ``wait_proof``, its receipt once a published checkpoint covers it).

    A refusal raises :class:`AppendRefused` (:class:`DuplicateStatement` for a 409) with
    the log's own explanation; an unreachable log raises :class:`LedgerError`.
    """
    target = (url if url.endswith("/") else url + "/") + "add"
    req = urllib.request.Request(target + ("?wait=proof" if wait_proof else ""),
                                 data=envelope, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            got = json.loads(resp.read(1 << 20))
            receipt = got.get("receipt")
            return Submitted(int(got["index"]), bytes.fromhex(got["leaf_hash"]),
                             receipt if isinstance(receipt, str) else None)
    except urllib.error.HTTPError as exc:
        try:
            doc = json.loads(exc.read(1 << 16))
            if not isinstance(doc, dict):
                raise ValueError("not a problem document")
            detail = str(doc.get("detail") or exc.reason)
        except (ValueError, OSError, http.client.HTTPException):
            doc, detail = {}, str(exc.reason)
        if exc.code == 409:
            index = doc.get("index")
            raise DuplicateStatement(detail, index=index if isinstance(index, int) else -1
                                     ) from None
        if exc.code in (400, 403, 413, 415, 429):
            raise AppendRefused(f"{target} refused it ({exc.code}): {detail}") from None
        raise LedgerError(f"{target} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError, AttributeError,
            http.client.HTTPException) as exc:
        raise LedgerError(f"cannot submit to {target}: {exc}.",
                          hint="Check the log's address and that it is up.") from None
